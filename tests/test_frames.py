"""The face stage's frame source (afwpipe.frames): detector-size decoding, full-resolution crops, torchcodec."""

import builtins

import av
import numpy as np
import pytest

from afwpipe.detect import DetectConfig
from afwpipe.errors import ConfigError
from afwpipe.faces.align import align_face, template
from afwpipe.frames import FFMPEG_LIBS, align_from_frame, check_decoder, detector_size, pyav_batches, torchcodec_batches
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


def test_torchcodec_without_ffmpeg_names_the_missing_libraries(monkeypatch):
    real = builtins.__import__

    def fake(name, *args, **kw):
        if name.startswith("torchcodec"):
            raise OSError("libavutil.so.56: cannot open shared object file: No such file or directory")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ConfigError) as e:
        DetectConfig(decoder="torchcodec")
    msg = str(e.value)
    assert "libavutil.so.56" in msg and all(lib in msg for lib in FFMPEG_LIBS) and "decoder" in msg


def test_detector_size_keeps_the_aspect_and_never_upscales():
    assert detector_size(1920, 1080, 960) == (960, 540)
    assert detector_size(720, 1280, 960) == (540, 960)
    assert detector_size(640, 360, 960) == (640, 360)
    assert detector_size(1920, 1080, None) == (1920, 1080)


@pytest.mark.parametrize("video", ["face_noface", "single_face"])
def test_detector_size_frames_and_full_resolution_crops(sample_videos, video):
    path = sample_videos[video]
    times, full = _pyav_frames(path)
    batches = list(pyav_batches(path, 16, max_side=320))
    got = np.concatenate([b.frames for b in batches])
    h, w = full[0].shape[:2]
    dw, dh = detector_size(w, h, 320)
    assert got.shape == (len(full), dh, dw, 3)
    assert np.allclose(np.concatenate([b.times for b in batches]), times)
    assert all(b.scale == pytest.approx(w / dw) for b in batches)
    # the small frames are libswscale's bilinear scaling of the decoded frames (reference: PyAV's reformat)
    with av.open(str(path)) as c:
        ref = np.stack([f.reformat(width=dw, height=dh, format="rgb24").to_ndarray() for f in c.decode(video=0)])
    assert (got == ref).all()
    # crops come from the full-resolution frame: equal to aligning the whole RGB frame, up to OpenCV's
    # fixed-point rounding of shifted coordinates (1 grey level in a few pixels)
    rng = np.random.default_rng(0)
    diffs = []
    for k in range(24):
        b = batches[k % len(batches)]
        i = k % len(b.full)
        frame_index = sum(len(x.frames) for x in batches[:k % len(batches)]) + i
        centre, side = rng.uniform([-40, -40], [w + 40, h + 40]), rng.uniform(20, min(w, h))
        lm = ((template(112) / 112 - 0.5) * side + centre).astype(np.float32)
        crop = b.align(np.stack([lm if j == i else np.full((5, 2), np.nan, np.float32)
                                 for j in range(len(b.full))]), 112)[i]
        diffs.append(np.abs(crop.astype(int) - align_face(full[frame_index], lm, 112)))
    d = np.stack(diffs)
    assert d.max() <= 1 and (d > 0).mean() < 1e-3, (d.max(), (d > 0).mean())
    # frames without a scale keep no decoded frame and align from the RGB frame itself
    assert not next(pyav_batches(path, 4, max_side=None)).full


@pytest.mark.parametrize("video", ["single_face", "no_face", "noface_face"])
def test_torchcodec_gives_pyavs_frames_and_times(sample_videos, video):
    try:
        check_decoder("torchcodec")
    except ConfigError as e:
        pytest.skip(f"torchcodec cannot be loaded here: {e}")
    path = sample_videos[video]
    times, full = _pyav_frames(path)
    batches = list(torchcodec_batches(path, 16, device="cpu"))
    got = np.concatenate([b.frames for b in batches])
    assert got.shape == (len(full),) + full[0].shape  # same frames (no_face: edit list drops 3 packets)
    t = np.concatenate([b.times for b in batches])
    assert np.allclose(t - t[0], times - times[0], atol=1e-6)  # same timestamps (noface_face: variable rate)
    d = np.abs(got.astype(int) - np.stack(full))
    assert d.max() <= 2, (d.mean(), d.max())  # both are FFmpeg's swscale: 0 on the sample (measured)
