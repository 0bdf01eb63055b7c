"""The face stage's frame source (afwpipe.frames): decoder choice and torchcodec against PyAV."""

from pathlib import Path

import numpy as np
import pytest

from afwpipe.detect import DetectConfig
from afwpipe.errors import ConfigError
from afwpipe.frames import FFMPEG_LIBS, check_decoder, pyav_batches, torchcodec_batches
from afwpipe.video import iter_frames


def _pyav_frames(path):
    """Every frame as PyAV decodes it, converted whole to RGB (the reference), with its time."""
    times, frames = [], []
    for _, t, rgb in iter_frames(path):
        times.append(t)
        frames.append(rgb)
    return np.array(times, np.float64), frames


def test_unknown_decoder_is_a_config_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"detect.decoder: unknown decoder 'ffmpeg'; known: pyav, torchcodec"):
        DetectConfig(decoder="ffmpeg")
    with pytest.raises(ConfigError, match="unknown decoder 'nvdec'"):
        DetectConfig.from_params({"decoder": "nvdec"})
    assert DetectConfig().decoder == "pyav"


def test_torchcodec_without_ffmpeg_names_the_missing_libraries(failing_import):
    failing_import("torchcodec", OSError("libavutil.so.56: cannot open shared object file: No such file or directory"))
    with pytest.raises(ConfigError) as e:
        DetectConfig(decoder="torchcodec")
    msg = str(e.value)
    assert "libavutil.so.56" in msg and all(lib in msg for lib in FFMPEG_LIBS) and "decoder" in msg


def test_torchcodec_that_imports_without_ffmpeg_is_refused(monkeypatch):
    """torchcodec >= 0.17 imports without FFmpeg and fails at the first decode: the check must find out."""
    ops = pytest.importorskip("torchcodec._core.ops")

    def fail():
        raise RuntimeError("Could not load libtorchcodec: libavutil.so.59: cannot open shared object file")

    monkeypatch.setattr(ops, "_FFMPEG_AVAILABLE", False, raising=False)
    monkeypatch.setattr(ops, "load_core_libraries", fail)
    with pytest.raises(ConfigError, match=r"cannot load FFmpeg's shared libraries .*libavutil\.so\.59"):
        check_decoder("torchcodec")


@pytest.mark.parametrize("video", ["face_noface", "rotated_90"])
def test_pyav_batches_are_the_streamed_frames(sample_videos, video):
    path = sample_videos.get(video) or Path(__file__).parent / "data" / f"{video}.mp4"
    times, full = _pyav_frames(path)
    batches = list(pyav_batches(path, 16))
    assert [len(b.frames) for b in batches] == [16] * (len(full) // 16) + ([len(full) % 16] if len(full) % 16 else [])
    assert (np.concatenate([b.frames for b in batches]) == np.stack(full)).all()
    assert np.concatenate([b.times for b in batches]).tolist() == times.tolist()


@pytest.mark.parametrize("video", ["single_face", "no_face", "noface_face", "rotated_90"])
def test_torchcodec_gives_pyavs_frames_and_times(sample_videos, video):
    try:
        check_decoder("torchcodec")
    except ConfigError as e:
        pytest.skip(f"torchcodec cannot be loaded here: {e}")
    path = sample_videos.get(video) or Path(__file__).parent / "data" / f"{video}.mp4"  # rotated: phone video
    times, full = _pyav_frames(path)
    batches = list(torchcodec_batches(path, 16, device="cpu"))
    got = np.concatenate([b.frames for b in batches])
    assert got.shape == (len(full),) + full[0].shape  # same frames (no_face: edit list drops 3 packets)
    t = np.concatenate([b.times for b in batches])
    assert np.allclose(t - t[0], times - times[0], atol=1e-6)  # same timestamps (noface_face: variable rate)
    d = np.abs(got.astype(int) - np.stack(full))
    assert d.max() <= 2, (d.mean(), d.max())  # both are FFmpeg's swscale: 0 on the sample (measured)


def test_face_stage_with_torchcodec_writes_what_pyav_writes(sample_videos, tmp_path):
    try:
        check_decoder("torchcodec")
    except ConfigError as e:
        pytest.skip(f"torchcodec cannot be loaded here: {e}")
    import zarr

    from afwpipe.detect import run_detect
    from afwpipe.index import build_index
    from afwpipe.manifest import DatasetSpec
    from afwpipe.store import Workspace

    from synth import make_video

    frames = np.stack([rgb for i, _, rgb in iter_frames(sample_videos["single_face"]) if i < 8])
    root = tmp_path / "ds"
    make_video(root / "videos" / "clip.mp4", 8, size=frames.shape[2:0:-1], frames=frames)
    groups = {}
    for decoder in ("pyav", "torchcodec"):
        ws = Workspace(tmp_path / decoder)
        build_index(DatasetSpec(name="t", root=root, video_dirs=(root / "videos",), annotations=root / "a",
                                folds_k=0), ws, progress=False)
        s = run_detect(ws, DetectConfig(decoder=decoder, batch_size=4, device="cpu", crop_codec="zstd"), progress=False)
        assert not s.failures
        groups[decoder] = zarr.open_group(str(ws.faces), mode="r")["clip"]
    a, b = groups["pyav"], groups["torchcodec"]
    assert a["present"][...].all() and (a["present"][...] == b["present"][...]).all()
    assert (a["times"][...] == b["times"][...]).all()
    assert np.abs(a["boxes"][...] - b["boxes"][...]).max() < 1.0
    assert np.abs(a["crops"][...].astype(int) - b["crops"][...]).max() <= 2
