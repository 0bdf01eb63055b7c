"""Audio and video on one clock (issue 20, point 1): clips whose video and audio streams start at different
container times, with a click at a known container time. The frame the pipeline attributes the click to
(stored audio, ``faces.zarr`` frame times) must be the frame on screen then, which the test reads from the
frames' own content, decoded independently with PyAV."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import zarr

from afwpipe.detect import DetectConfig, run_detect
from afwpipe.extract import ExtractConfig, run_extract
from afwpipe.index import build_index, format_table
from afwpipe.manifest import DatasetSpec
from afwpipe.store import Workspace
from afwpipe.video import probe_video, read_audio

FPS, RATE, N_FRAMES = 25, 16000, 50
CLICK = 1.02  #: container time of the click, s (mid-frame for both clips)
SHADE = 5  #: frame i is a flat grey of level SHADE * i + BASE, so its content names it
BASE = 10
PRIMING = 1024 / RATE  #: the AAC encoder's delay: its first packet starts this much before the first sample
#: name -> (video start, audio start), container seconds
CLIPS = {"video_late": (0.48, 0.0), "audio_late": (0.0, 0.48)}


def make_clock_clip(path: Path, video_start: float, audio_start: float, click: float = CLICK,
                    codec: str = "aac") -> Path:
    """An MP4 (h264 64x48 at 25 fps, ``N_FRAMES`` frames; 16 kHz mono ``codec`` audio of 2.6 s) whose video
    stream starts at ``video_start`` and audio at ``audio_start`` (container seconds), silent but for a
    10 ms 1 kHz click at container time ``click``."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream(codec, rate=RATE)
        a.layout = "mono"
        for i in range(N_FRAMES):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), BASE + SHADE * i, np.uint8), format="rgb24")
            f.pts, f.time_base = i + round(video_start * FPS), Fraction(1, FPS)
            out.mux(vs.encode(f))
        out.mux(vs.encode())
        wave = np.zeros(int(2.6 * RATE), np.float32)
        c = int(round((click - audio_start) * RATE))
        wave[c:c + 160] = 0.8 * np.sin(2 * np.pi * 1000 * np.arange(160) / RATE)
        fmt = "flt" if codec == "aac" else "fltp"
        for s in range(0, len(wave), 1024):
            af = av.AudioFrame.from_ndarray(wave[None, s:s + 1024].copy(), format=fmt, layout="mono")
            af.sample_rate, af.time_base, af.pts = RATE, Fraction(1, RATE), s + round(audio_start * RATE)
            out.mux(a.encode(af))
        out.mux(a.encode())
    return path


def frame_on_screen(path: Path, t: float) -> int:
    """Index (read from its content) of the frame of ``path`` shown at container time ``t``, by PyAV alone."""
    with av.open(str(path)) as c:
        shown = [(f.time, f.to_ndarray(format="rgb24").mean()) for f in c.decode(c.streams.video[0])]
    level = [m for time, m in shown if time <= t][-1]
    return int(round((level - BASE) / SHADE))


def click_time(wave: np.ndarray) -> float:
    """Seconds from the wave's sample 0 to the click's onset."""
    return float(np.flatnonzero(np.abs(wave) > 0.4)[0] / RATE)


def pipeline_frame(times: np.ndarray, wave: np.ndarray) -> int:
    """The frame (row of ``times``, s from the first frame) whose span holds the click of ``wave``."""
    return int(np.searchsorted(times, click_time(wave), side="right") - 1)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clock") / "videos"
    root.mkdir()
    return {n: make_clock_clip(root / f"{n}.mp4", *starts) for n, starts in CLIPS.items()}


def test_clips_are_what_they_claim(clips):
    """The reference itself: PyAV sees each stream start where it was written and the click's frame."""
    assert frame_on_screen(clips["video_late"], CLICK) == 13  # (1.02 - 0.48) * 25 = 13.5
    assert frame_on_screen(clips["audio_late"], CLICK) == 25
    with av.open(str(clips["video_late"])) as c:
        assert next(c.decode(video=0)).time == pytest.approx(0.48)


def test_probe_records_the_offset_of_audio_to_the_first_frame(clips):
    late_video, late_audio = probe_video(clips["video_late"]), probe_video(clips["audio_late"])
    assert late_video.start_time == pytest.approx(0.48) and late_video.audio_offset == pytest.approx(-0.48, abs=1e-3)
    # an AAC stream written from 0.48 s starts one encoder delay (1024 samples) earlier
    assert late_audio.start_time == 0 and 0.48 - PRIMING - 1e-3 <= late_audio.audio_offset <= 0.48 + 1e-3
    assert late_video.times[0] == 0 and np.allclose(np.diff(late_video.times), 1 / FPS)


@pytest.mark.parametrize("name", list(CLIPS))
@pytest.mark.parametrize("codec", ["aac", "libmp3lame"])
def test_read_audio_hears_the_click_on_the_frame_on_screen(tmp_path, name, codec):
    clip = make_clock_clip(tmp_path / f"{name}.mp4", *CLIPS[name], codec=codec)
    wave = read_audio(clip)
    assert abs(pipeline_frame(probe_video(clip).times, wave) - frame_on_screen(clip, CLICK)) <= 1
    # sample 0 is the first frame's time: the click sits CLICK - video start into the wave
    assert click_time(wave) == pytest.approx(CLICK - CLIPS[name][0], abs=1 / FPS)


@pytest.fixture(scope="module")
def detected(clips, tmp_path_factory):
    """The clips indexed and detected as the pipeline does (``afwpipe index``, ``afwpipe detect``)."""
    root = next(iter(clips.values())).parent.parent
    spec = DatasetSpec(name="clock", root=root, video_dirs=(root / "videos",), annotations=root / "annotations",
                       folds_k=0)
    ws = Workspace(tmp_path_factory.mktemp("work") / "clock")
    index = build_index(spec, ws, progress=False)
    assert not run_detect(ws, DetectConfig(size=32, batch_size=25, device="cpu"), progress=False).failures
    return ws, index


def test_index_records_and_prints_the_audio_offsets(detected):
    ws, index = detected
    recs = {r["name"]: r for r in json.loads(ws.index.read_text())["videos"]}  # the file as written
    assert recs["video_late"]["audio_offset"] == pytest.approx(-0.48, abs=1e-3)
    assert recs["video_late"]["start_time"] == pytest.approx(0.48)
    assert recs["audio_late"]["audio_offset"] == pytest.approx(0.48, abs=PRIMING + 1e-3)
    line = format_table(index).splitlines()[-1]
    assert line.startswith("audio offsets (audio start - first frame), largest: ")
    assert "video_late -0.480 s" in line and "audio_late +0.4" in line


@pytest.mark.parametrize("name", list(CLIPS))
def test_detect_stores_audio_on_the_frames_clock(detected, clips, name):
    ws, _ = detected
    audio = zarr.open_group(str(ws.audio), mode="r")[name]
    times = zarr.open_group(str(ws.faces), mode="r")[f"{name}/times"][...]
    assert abs(pipeline_frame(times, audio["wave"][...]) - frame_on_screen(clips[name], CLICK)) <= 1
    rec = {r.name: r for r in ws.read_index().records}[name]
    assert audio.attrs["offset"] == pytest.approx(rec.audio_offset, abs=1e-3)
    assert audio.attrs["lead"] == round(max(rec.audio_offset, 0) * RATE)


def test_audio_features_are_absent_before_the_audio_starts(detected):
    """Frames shown before the audio stream's first sample get no audio feature (the silence detect put
    before it is not the video's sound)."""
    ws, _ = detected
    assert not run_extract(ws, ExtractConfig("logmel"), progress=False).failures
    g = zarr.open_group(str(ws.features("logmel")), mode="r")
    present = g["audio_late/present"][...]
    rec = {r.name: r for r in ws.read_index().records}["audio_late"]
    first = int(np.ceil(rec.audio_offset * FPS))  # the first frame starting inside the audio
    assert not present[:first].any() and present[first + 1:].all()
    assert g["video_late/present"][...].all()


def test_overlay_keeps_the_click_on_its_frame(clips, tmp_path):
    """The overlay MP4 of ``afwpipe analyze`` keeps the source timestamps of its frames and audio: read back by
    the pipeline, its click falls on the same frame (guards the overlay; it was already on the clock)."""
    from afwpipe.overlay import write_overlay
    from test_render import make_table

    for name, clip in clips.items():
        info = probe_video(clip)
        table = make_table(np.tile([[4, 4, 40, 40]], (info.n_frames, 1)), np.ones(info.n_frames, bool), info.times)
        out = tmp_path / f"{name}.overlay.mp4"
        write_overlay(clip, table, out)
        assert abs(pipeline_frame(probe_video(out).times, read_audio(out)) - frame_on_screen(clip, CLICK)) <= 1
