"""``afwpipe analyze`` on the real sample: tiny mtl heads trained on the session's sample workspace, then
analyze on sample clips, a video that is not in the sample (single_face re-encoded twice over with PyAV) and
an unreadable file. Checked against independent references: PyAV's decoded frame count and timestamps,
faces.zarr, and the post-processed outputs of the training workspace (postprocess on the same video)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch

from afwpipe import store
from afwpipe.analyze import AnalyzeConfig, encoder_workers, read_table, resolve_model, run_analyze
from afwpipe.errors import ConfigError, EncoderError, WeightsError
from afwpipe.labels import AU_NAMES, EXPR_NAMES
from afwpipe.postprocess import PostConfig, run_postprocess
from afwpipe.predict import PredictConfig, run_predict
from afwpipe.readers import read_post
from afwpipe.train import TrainConfig, train

#: the documented columns, written out by hand (docs/guide/analyze.md, module docstring)
COLUMNS = (["frame", "time", "present", "x1", "y1", "x2", "y2"]
           + [c for au in AU_NAMES for c in (f"{au}_prob", au)]
           + [f"{c}_prob" for c in EXPR_NAMES] + ["expr", "expr_index", "valence", "arousal"])
SOURCES = {"au": "mtl", "expr": "mtl", "va": "mtl"}


def decoded(path: Path) -> np.ndarray:
    """PyAV's decoded frame times (s, from the first frame): the independent reference of ``time`` and rows."""
    with av.open(str(path)) as c:
        t = np.array([f.time for f in c.decode(video=0)], np.float64)
    return t - t[0]


@pytest.fixture(scope="module")
def trained(sample_workspace, tmp_path_factory):
    """A training workspace sharing the session's stores (symlinks), with mtl tmf heads of 1 epoch on the
    official split and folds 0 and 1, predicted and post-processed."""
    ws = store.Workspace(tmp_path_factory.mktemp("trained") / "sample")
    ws.root.mkdir(parents=True)
    for p in ("index.json", "labels.zarr", "faces.zarr", "audio.zarr", "features"):
        os.symlink(sample_workspace.root / p, ws.root / p)
    for fold in ("official", 0, 1):
        train(ws, TrainConfig(task="mtl", head="tmf", fold=fold, epochs=1, patience=0, device="cpu",
                              head_kwargs={"d_model": 32, "n_layers": 1}), progress=False)
    run_predict(ws, PredictConfig(head="tmf", tasks=["mtl"], folds=["official", 0, 1], device="cpu"), progress=False)
    run_postprocess(ws, PostConfig(sources=SOURCES), progress=False)
    return ws


@pytest.fixture(scope="module")
def new_video(sample_videos, tmp_path_factory) -> Path:
    """single_face decoded and re-encoded twice in a row (H.264 at 25 fps): a video that is not in the sample."""
    out = tmp_path_factory.mktemp("new") / "twice_single.mp4"
    with av.open(str(sample_videos["single_face"])) as src:
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    with av.open(str(out), "w") as dst:
        vs = dst.add_stream("libx264", rate=25)
        vs.pix_fmt = "yuv420p"
        vs.height, vs.width = frames[0].shape[:2]
        for i, rgb in enumerate(frames + frames):
            img = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            img.pts, img.time_base = i, Fraction(1, 25)
            for pkt in vs.encode(img):
                dst.mux(pkt)
        for pkt in vs.encode():
            dst.mux(pkt)
    return out


@pytest.fixture(scope="module")
def inputs(sample_videos, new_video, tmp_path_factory) -> list[Path]:
    bad = tmp_path_factory.mktemp("bad") / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    return [sample_videos["single_face"], sample_videos["no_face"], new_video, bad]


@pytest.fixture(scope="module")
def analyzed(trained, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze")
    plan = resolve_model("ensemble", trained)
    summary = run_analyze(inputs, plan, AnalyzeConfig(device="cpu"), out, progress=False)
    return out, summary


@pytest.mark.sample
def test_one_table_per_video_one_row_per_decoded_frame_with_the_documented_columns(analyzed, inputs):
    out, summary = analyzed
    for path in inputs[:3]:
        table = read_table(out / f"{path.stem}.csv")
        assert list(table.columns) == COLUMNS
        assert len(table) == len(decoded(path))
        assert (table["frame"].to_numpy() == np.arange(len(table))).all()
        assert table["expr"].tolist() == [EXPR_NAMES[i] for i in table["expr_index"]]
        assert table[[f"{c}_prob" for c in EXPR_NAMES]].sum(axis=1).between(0.99, 1.01).all()
        assert table[["valence", "arousal"]].abs().max().max() <= 1.0
        assert set(np.unique(table[list(AU_NAMES)])) <= {0, 1}
    assert len(read_table(out / "twice_single.csv")) == 2 * len(decoded(inputs[0]))


@pytest.mark.sample
def test_times_are_monotonic_and_equal_to_the_face_store_and_pyav(analyzed, inputs):
    out, _ = analyzed
    faces = store.open_store(out / ".work" / "faces.zarr", "r")
    for path in inputs[:3]:
        t = read_table(out / f"{path.stem}.csv")["time"].to_numpy()
        assert (np.diff(t) > 0).all()
        np.testing.assert_array_equal(t, faces[f"{path.stem}/times"][...])
        np.testing.assert_allclose(t, decoded(path), atol=1e-9)


@pytest.mark.sample
def test_a_video_without_faces_gives_present_false_rows_and_a_note(analyzed):
    out, summary = analyzed
    table = read_table(out / "no_face.csv")
    assert len(table) == 95 and not table["present"].any()
    assert table[["x1", "y1", "x2", "y2"]].isna().all().all()
    (v,) = [v for v in summary.videos if v.name == "no_face"]
    assert not v.error and any("no face" in n for n in v.notes)
    face = read_table(out / "single_face.csv")
    assert face["present"].all() and np.isfinite(face[["x1", "y1", "x2", "y2"]].to_numpy()).all()
    assert (face["x2"] > face["x1"]).all() and (face["y2"] > face["y1"]).all()


@pytest.mark.sample
def test_an_unreadable_file_is_reported_by_name_and_the_others_are_done(analyzed):
    out, summary = analyzed
    assert [v.name for v in summary.failures] == ["broken"]
    assert "broken.mp4" in summary.failures[0].error
    assert not (out / "broken.csv").exists()
    assert sorted(v.name for v in summary.videos if not v.error) == ["no_face", "single_face", "twice_single"]


@pytest.mark.sample
def test_tables_equal_the_training_workspaces_postprocessed_outputs(analyzed, trained):
    """single_face and no_face were predicted and post-processed in the training workspace: analyze, from
    the video, must give the ensemble's processed probabilities and decisions of post/<track>-ensemble.npz."""
    out, _ = analyzed
    for name in ("single_face", "no_face"):
        table = read_table(out / f"{name}.csv")
        au, expr, va = (read_post(trained, f"{t}-ensemble", name) for t in ("au", "expr", "va"))
        np.testing.assert_allclose(table[[f"{a}_prob" for a in AU_NAMES]], au["prob"], atol=1e-3)
        assert (table[list(AU_NAMES)].to_numpy() == au["after"]).mean() > 0.99
        np.testing.assert_allclose(table[[f"{c}_prob" for c in EXPR_NAMES]], expr["prob"], atol=1e-3)
        assert (table["expr_index"].to_numpy() == expr["after"]).mean() > 0.99
        np.testing.assert_allclose(table[["valence", "arousal"]], va["after"], atol=1e-3)


@pytest.mark.sample
def test_a_rerun_does_nothing(analyzed, trained, inputs):
    out, _ = analyzed
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    summary = run_analyze(inputs, resolve_model("ensemble", trained), AnalyzeConfig(device="cpu"), out,
                          progress=False)
    assert sorted(v.name for v in summary.videos if v.skipped) == ["no_face", "single_face", "twice_single"]
    assert [v.name for v in summary.failures] == ["broken"]
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.sample
def test_a_model_folder_gives_its_tracks_as_parquet_with_the_documented_dtypes(trained, sample_videos, tmp_path):
    model = trained.models / "mtl-tmf-0"
    plan = resolve_model(str(model), trained)
    assert [m.model for p in plan.tracks.values() for m in p.members] == [model] * 3
    np.testing.assert_array_equal(plan.tracks["au"].members[0].thresholds,
                                  read_post_thresholds(trained, "au-0"))
    run_analyze([sample_videos["single_face"]], plan, AnalyzeConfig(format="parquet", timeline=False,
                                                                    device="cpu"), tmp_path, progress=False)
    table = pd.read_parquet(tmp_path / "single_face.parquet")
    assert list(table.columns) == COLUMNS
    want = {"frame": "int64", "time": "float64", "present": "bool", "x1": "float32", "AU1_prob": "float32",
            "AU1": "int8", "Neutral_prob": "float32", "expr_index": "int8", "valence": "float32"}
    assert {c: str(table[c].dtype) for c in want} == want
    assert pd.api.types.is_string_dtype(table["expr"])  # pandas 2: object, pandas 3: str
    post = read_post(trained, "va-0", "single_face")
    np.testing.assert_allclose(table[["valence", "arousal"]], post["after"], atol=1e-3)


def read_post_thresholds(ws, system):
    import json

    return np.asarray(json.loads(ws.post_systems.read_text())["systems"][system]["thresholds"])


@pytest.mark.sample
def test_render_outputs_when_the_render_modules_are_there(analyzed):
    pytest.importorskip("afwpipe.timeline")
    out, _ = analyzed
    png = out / "single_face.timeline.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.sample
def test_encoders_must_match_the_checkpoint_and_missing_weights_say_which(trained, tmp_path, monkeypatch):
    src = trained.models / "mtl-tmf-official"
    ws = store.Workspace(tmp_path / "t")
    ckpt = torch.load(src / "model.pt", weights_only=True)
    for name, edit in (("mtl-tmf-0", lambda e: e["encoder_config"].update(weights="sha256:other")),
                       ("mtl-tmf-1", lambda e: e.update(name="mae", encoder_config={"name": "mae"}))):
        (ws.models / name).mkdir(parents=True)
        c = {**ckpt, "encoders": [dict(e, encoder_config=dict(e["encoder_config"])) for e in ckpt["encoders"]]}
        edit(c["encoders"][0])
        torch.save(c, ws.models / name / "model.pt")
    with pytest.raises(EncoderError, match="mtl-tmf-0 was trained on mini_xception with weights='sha256:other'"):
        encoder_workers(ws, resolve_model(str(ws.models / "mtl-tmf-0"), ws), {}, "cpu", False)
    monkeypatch.setenv("AFWPIPE_OFFLINE", "1")
    if (Path.home() / ".cache" / "huggingface" / "hub" / "models--timm--vit_base_patch16_224.mae").exists():
        pytest.skip("mae weights are cached on this machine")
    with pytest.raises(WeightsError, match="(?s)model mtl-tmf-1 needs encoder mae.*To get them"):
        encoder_workers(ws, resolve_model(str(ws.models / "mtl-tmf-1"), ws), {}, "cpu", False)


@pytest.mark.sample
def test_an_unknown_system_lists_the_known_ones(trained):
    with pytest.raises(ConfigError, match="systems: 0, 1, ensemble, official"):
        resolve_model("7", trained)


# -- fast, synthetic: the table's schema and the per-track decisions ---------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_frame_table_schema_round_trips_and_leaves_out_tracks_not_predicted(tmp_path, fmt):
    from afwpipe.analyze import Member, TrackPlan, frame_table, track_outputs, write_table

    T = 6
    present = np.array([True, True, False, False, True, True])
    boxes = np.where(present[:, None], np.arange(4, dtype=np.float32) + 10, np.nan).astype(np.float32)
    prob = np.tile(np.linspace(0.2, 0.8, 12), (T, 1))
    plan = TrackPlan("au", "au-0", [Member(Path("m"), "0", np.full(12, 0.5))])
    post = PostConfig(smooth={"au": {"method": "none"}})
    outputs = {"au": track_outputs(plan, {Path("m"): prob}, present, post)}
    table = frame_table(np.arange(T) / 25.0, present, boxes, outputs)
    assert list(table.columns) == COLUMNS[:7 + 24]  # no EXPR / VA columns
    # AU decisions: prob >= 0.5 by hand (AU j has probability 0.2 + 0.6 j / 11)
    assert table[list(AU_NAMES)].iloc[0].tolist() == [int(0.2 + 0.6 * j / 11 >= 0.5) for j in range(12)]
    back = read_table(write_table(table, tmp_path / f"v.{fmt}"))
    pd.testing.assert_frame_equal(back, table)
    assert back[["x1", "y1", "x2", "y2"]].isna().sum().tolist() == [2, 2, 2, 2]


def test_ensemble_votes_the_folds_decisions_with_each_folds_thresholds():
    from afwpipe.analyze import Member, TrackPlan, track_outputs

    T = 4
    present = np.ones(T, bool)
    post = PostConfig(smooth={t: {"method": "none"} for t in ("au", "expr")})
    # AU1 probability 0.4 in all three folds: fold thresholds 0.3, 0.35, 0.5 -> votes 1, 1, 0 -> 1
    raw = {Path(f"m{i}"): np.full((T, 12), 0.4) for i in range(3)}
    members = [Member(Path(f"m{i}"), str(i), np.full(12, th)) for i, th in enumerate((0.3, 0.35, 0.5))]
    prob, dec = track_outputs(TrackPlan("au", "au-ensemble", members, ensemble=True), raw, present, post)
    assert (dec == 1).all() and np.allclose(prob, 0.4)
    members = [Member(Path(f"m{i}"), str(i), np.full(12, th)) for i, th in enumerate((0.3, 0.5, 0.5))]
    _, dec = track_outputs(TrackPlan("au", "au-ensemble", members, ensemble=True), raw, present, post)
    assert (dec == 0).all()
    # EXPR: classes 2, 2, 5 by argmax -> majority 2
    expr = {}
    for i, c in enumerate((2, 2, 5)):
        p = np.full((T, 8), 0.05)
        p[:, c] = 0.65
        expr[Path(f"m{i}")] = p
    members = [Member(Path(f"m{i}"), str(i)) for i in range(3)]
    _, dec = track_outputs(TrackPlan("expr", "expr-ensemble", members, ensemble=True), expr, present, post)
    assert (dec == 2).all()


def test_another_file_under_a_known_name_drops_that_names_stored_groups(tmp_path):
    from afwpipe.analyze import index_videos

    ws = store.Workspace(tmp_path / "work")
    clip = Path(__file__).parent / "data" / "rotated_90.mp4"
    a = tmp_path / "a" / "clip.mp4"
    a.parent.mkdir()
    a.write_bytes(clip.read_bytes())
    (rec,), failed = index_videos(ws, [a])
    assert not failed and rec.n_frames == len(decoded(a)) and rec.name == "clip"
    for path in (ws.faces / "clip", ws.features("logmel") / "clip", ws.faces / "other"):
        path.mkdir(parents=True)
    mtime = ws.index.stat().st_mtime_ns
    assert index_videos(ws, [a])[0] == [rec] and ws.index.stat().st_mtime_ns == mtime  # same file: nothing
    assert (ws.faces / "clip").is_dir()
    b = tmp_path / "b" / "clip.mp4"
    b.parent.mkdir()
    b.write_bytes(clip.read_bytes())
    index_videos(ws, [b])
    assert not (ws.faces / "clip").exists() and not (ws.features("logmel") / "clip").exists()
    assert (ws.faces / "other").is_dir()
    recs, failed = index_videos(ws, [b, a])
    assert len(recs) == 1 and [f.name for f in failed] == ["clip"] and "a second video named clip" in failed[0].error


@pytest.mark.parametrize("same_size_and_mtime", [False, True])
def test_a_file_rewritten_in_place_under_the_same_path_drops_its_stored_groups(tmp_path, same_size_and_mtime):
    from afwpipe.analyze import index_videos
    from synth import make_video

    ws = store.Workspace(tmp_path / "work")
    old = (Path(__file__).parent / "data" / "rotated_90.mp4").read_bytes()
    new = make_video(tmp_path / "other.mp4", 5, size=(32, 24)).read_bytes()
    if same_size_and_mtime:  # MP4 readers ignore trailing bytes: the same size, another video
        new += b"\0" * (len(old) - len(new))
        assert len(new) == len(old)
    a = tmp_path / "in" / "clip.mp4"
    a.parent.mkdir()
    a.write_bytes(old)
    (rec,), _ = index_videos(ws, [a])
    assert rec.n_frames == len(decoded(a)) == 6
    (ws.faces / "clip").mkdir(parents=True)
    st = a.stat()
    with open(a, "r+b") as f:  # rewritten in place: same path, same inode
        f.write(new)
        f.truncate()
    if same_size_and_mtime:  # e.g. `cp -p` / `rsync -t` / a checkout that sets the old time back
        os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert a.stat().st_size == st.st_size and a.stat().st_mtime_ns == st.st_mtime_ns
    (rec,), failed = index_videos(ws, [a])
    assert not failed and rec.n_frames == len(decoded(a)) == 5
    assert not (ws.faces / "clip").exists()
