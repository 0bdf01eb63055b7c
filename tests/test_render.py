"""The timeline PNG and the overlay MP4 of ``afwpipe analyze`` (afwpipe.timeline, afwpipe.overlay), on the real
sample clips with the real face boxes of ``faces.zarr`` and smooth synthetic predictions in the analyze table
schema. Every overlay is compared with its source decoded independently by PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import zarr

from afwpipe.errors import AfwpipeError, RenderError, VideoError
from afwpipe.labels import AU_NAMES, EXPR_NAMES
from afwpipe.overlay import write_overlay
from afwpipe.timeline import NO_FACE_GID, plot_timeline, timeline_figure

from conftest import REPO

ROTATED = REPO / "tests" / "data" / "rotated_90.mp4"


def make_table(boxes, present, times, tracks=("au", "expr", "va"), seed=0) -> pd.DataFrame:
    """A per-frame table in analyze's schema: the given boxes, present mask and times, and smooth synthetic
    predictions (sinusoids of time) for the tracks asked for."""
    t = np.asarray(times, np.float64)
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 32)

    def wave(k, f=0.5):
        return 0.5 + 0.5 * np.sin(2 * np.pi * f * (1 + k % 3) * t / 3 + phase[k])

    df = {"frame": np.arange(len(t), dtype=np.int64), "time": t, "present": np.asarray(present, bool)}
    for j, c in enumerate(("x1", "y1", "x2", "y2")):
        df[c] = np.asarray(boxes, np.float32)[:, j]
    if "au" in tracks:
        for k, a in enumerate(AU_NAMES):
            df[f"{a}_prob"] = wave(k).astype(np.float32)
            df[a] = (df[f"{a}_prob"] >= 0.5).astype(np.int8)
    if "expr" in tracks:
        logits = np.stack([3 * wave(k + 12) for k in range(len(EXPR_NAMES))], axis=1)
        prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        for k, c in enumerate(EXPR_NAMES):
            df[f"{c}_prob"] = prob[:, k].astype(np.float32)
        df["expr"] = np.array(EXPR_NAMES, dtype=object)[prob.argmax(axis=1)]
        df["expr_index"] = prob.argmax(axis=1).astype(np.int8)
    if "va" in tracks:
        df["valence"] = (2 * wave(30) - 1).astype(np.float32)
        df["arousal"] = (2 * wave(31, 0.3) - 1).astype(np.float32)
    return pd.DataFrame(df)


def sample_table(ws, name: str, tracks=("au", "expr", "va")) -> pd.DataFrame:
    g = zarr.open_group(str(ws.faces), mode="r")[name]
    return make_table(g["boxes"][...], g["present"][...], g["times"][...], tracks)


def decode(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Every frame of ``path`` (RGB, as stored: the sample clips carry no rotation) and its times, by PyAV."""
    with av.open(str(path)) as c:
        frames = [(f.to_ndarray(format="rgb24"), f.time) for f in c.decode(video=0)]
    return [f for f, _ in frames], np.array([t for _, t in frames])


def runs_of_false(present: np.ndarray) -> list[tuple[int, int]]:
    """``[(first, last + 1), ...]`` of each run of False, by a plain loop."""
    out, start = [], None
    for i, p in enumerate(list(present) + [True]):
        if not p and start is None:
            start = i
        elif p and start is not None:
            out.append((start, i))
            start = None
    return out


def shaded_spans(ax) -> list[tuple[float, float]]:
    """``[(start_s, end_s), ...]`` of the grey no-face spans (``axvspan`` rectangles) drawn on ``ax``."""
    return sorted((p.get_x(), p.get_x() + p.get_width()) for p in ax.patches if p.get_gid() == NO_FACE_GID)


# ---------------------------------------------------------------- timeline


@pytest.mark.sample
def test_timeline_panels_and_no_face_spans(sample_workspace, tmp_path):
    table = sample_table(sample_workspace, "face_noface")  # face in frames 0..71, none after
    png = plot_timeline(table, tmp_path / "out" / "face_noface.png", title="face_noface")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[0] > 400
    fig = timeline_figure(table, "face_noface")
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert len(fig.axes) == 4, titles
    assert [t.split()[0] for t in titles] == ["AU", "AU", "EXPR", "valence"]
    times, present = table["time"].to_numpy(), table["present"].to_numpy()
    runs = runs_of_false(present)
    assert runs == [(72, 169)]
    last = times[-1] + np.median(np.diff(times))
    want = [(times[a], times[b] if b < len(times) else last) for a, b in runs]
    for ax in fig.axes:
        np.testing.assert_allclose(shaded_spans(ax), want, atol=1e-9)
    # the AU strip holds the table's probabilities (AU x frame), the EXPR line the chosen classes
    mesh = fig.axes[0].collections[0]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(len(AU_NAMES), -1),
                               np.stack([table[f"{a}_prob"] for a in AU_NAMES]), rtol=1e-6)
    decisions = np.asarray(fig.axes[1].collections[0].get_array()).reshape(len(AU_NAMES), -1)
    assert (decisions == np.stack([table[a] for a in AU_NAMES])).all()
    # x axis in seconds: from 0 to the end of the last frame
    assert fig.axes[-1].get_xlim() == pytest.approx((0.0, last))


@pytest.mark.sample
@pytest.mark.parametrize("tracks, titles", [(("au",), ["AU probabilities", "AU decisions"]),
                                            (("expr",), ["EXPR"]), (("va",), ["valence"]),
                                            (("expr", "va"), ["EXPR", "valence"])])
def test_timeline_draws_only_the_tracks_present(sample_workspace, tmp_path, tracks, titles):
    table = sample_table(sample_workspace, "noface_face", tracks)  # face in frames 96..167
    fig = timeline_figure(table)
    got = [ax.get_title(loc="left") for ax in fig.axes]
    assert len(got) == len(titles) and all(g.startswith(w) for g, w in zip(got, titles)), got
    runs = runs_of_false(table["present"].to_numpy())
    assert runs[0] == (0, 96) and all(len(shaded_spans(ax)) == len(runs) for ax in fig.axes)
    assert plot_timeline(table, tmp_path / "t.png").is_file()


def test_timeline_of_an_empty_or_prediction_free_table_raises():
    with pytest.raises(RenderError, match="no rows"):
        timeline_figure(make_table(np.zeros((0, 4)), [], []), "clip")
    with pytest.raises(RenderError, match="clip: .*no AU, EXPR or VA"):
        timeline_figure(make_table(np.zeros((3, 4)), [True] * 3, [0, 0.04, 0.08], tracks=()), "clip")


# ---------------------------------------------------------------- overlay


def box_border_and_far(box, shape, m=1):
    """Pixel masks of a frame of ``shape``: on the left, right and bottom edges of ``box`` (within ``m``
    px), and far from it (outside the box grown by a third of the frame: room for the label)."""
    h, w = shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    border = np.zeros((h, w), bool)
    border[y1 + 10:y2 - 10, x1 - m:x1 + m + 1] = True
    border[y1 + 10:y2 - 10, x2 - m:x2 + m + 1] = True
    border[y2 - m:y2 + m + 1, x1 + 10:x2 - 10] = True
    far = np.ones((h, w), bool)
    far[max(0, y1 - h // 3):y2 + h // 3, max(0, x1 - w // 3):x2 + w // 3] = False
    return border, far


@pytest.mark.sample
def test_overlay_keeps_frames_times_audio_and_draws_the_box(sample_workspace, sample_videos, tmp_path):
    src = sample_videos["face_noface"]  # HEVC, variable frame rate, AAC audio (copied)
    table = sample_table(sample_workspace, "face_noface")
    out = tmp_path / "face_noface.mp4"
    n = write_overlay(src, table, out)
    frames, times = decode(out)
    src_frames, src_times = decode(src)
    assert n == len(frames) == len(src_frames) == len(table) == 169
    np.testing.assert_allclose(times - times[0], src_times - src_times[0], atol=1e-3)
    with av.open(str(out)) as c, av.open(str(src)) as s:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
        assert float(c.streams.audio[0].duration * c.streams.audio[0].time_base) == pytest.approx(
            float(s.streams.audio[0].duration * s.streams.audio[0].time_base), abs=0.05)
    for i in (0, 40, 71):  # face frames: a box edge changes, far pixels do not (beyond compression)
        border, far = box_border_and_far(table.loc[i, ["x1", "y1", "x2", "y2"]], frames[i].shape)
        diff = np.abs(frames[i].astype(int) - src_frames[i].astype(int)).mean(axis=2)
        assert diff[border].mean() > 40, (i, diff[border].mean())
        assert (frames[i][border][:, 1] > 150).mean() > 0.9  # drawn in green
        assert diff[far].mean() < 3 and np.percentile(diff[far], 99) < 20, (i, diff[far].mean())
    for i in (72, 168):  # no face: no box, a "no face" label in the top-left corner, the rest unchanged
        diff = np.abs(frames[i].astype(int) - src_frames[i].astype(int)).mean(axis=2)
        assert diff[:20, :60].mean() > 20
        assert diff[60:, 200:].mean() < 3 and np.percentile(diff[60:, 200:], 99) < 20


@pytest.mark.sample
def test_overlay_of_an_au_only_table_reencodes_mp3_audio(sample_workspace, sample_videos, tmp_path):
    src = sample_videos["single_face"]  # MP3 audio: re-encoded to AAC
    table = sample_table(sample_workspace, "single_face", tracks=("au",))
    out = tmp_path / "single_face.mp4"
    assert write_overlay(src, table, out) == 72
    frames, times = decode(out)
    src_frames, src_times = decode(src)
    assert len(frames) == len(src_frames) == 72
    np.testing.assert_allclose(times - times[0], src_times - src_times[0], atol=1e-3)
    with av.open(str(out)) as c, av.open(str(src)) as s:
        assert s.streams.audio[0].codec_context.name != "aac"
        assert c.streams.audio[0].codec_context.name == "aac"
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
        assert np.abs(audio).max() > 0.01  # sound, not silence
    assert timeline_figure(table).axes[0].get_title(loc="left") == "AU probabilities"


def test_overlay_of_rotated_video_draws_in_upright_coordinates(tmp_path):
    """The phone clip is stored 180x320 and shown 320x180: the output is upright and the box lands at its
    upright place."""
    box = np.array([[200, 60, 300, 170]] * 6, np.float32)
    table = make_table(box, [True] * 6, np.arange(6) / 30, tracks=("va",))
    out = tmp_path / "rot.mp4"
    assert write_overlay(ROTATED, table, out) == 6
    frames, _ = decode(out)
    assert len(frames) == 6 and frames[0].shape == (180, 320, 3)
    assert (frames[3][100:150, 199:202, 1] > 150).all() and (frames[3][100:150, 299:302, 1] > 150).all()


@pytest.mark.sample
@pytest.mark.parametrize("rows", [168, 170])
def test_overlay_of_a_table_of_the_wrong_length_raises_and_leaves_no_file(sample_workspace, sample_videos,
                                                                          tmp_path, rows):
    table = sample_table(sample_workspace, "noface_face")
    if rows < len(table):
        table = table.iloc[:rows]
    else:
        table = pd.concat([table, table.iloc[-1:]], ignore_index=True)
    out = tmp_path / "o.mp4"
    with pytest.raises(RenderError, match=f"noface_face.mov: the per-frame table has {rows} rows"):
        write_overlay(sample_videos["noface_face"], table, out)
    assert list(tmp_path.iterdir()) == []


def test_overlay_of_an_unreadable_video_raises_naming_it(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    table = make_table(np.zeros((3, 4)), [True] * 3, [0, 0.04, 0.08])
    with pytest.raises(VideoError, match="broken.mp4") as e:
        write_overlay(bad, table, tmp_path / "o.mp4")
    assert isinstance(e.value, AfwpipeError)
    assert not (tmp_path / "o.mp4").exists()
