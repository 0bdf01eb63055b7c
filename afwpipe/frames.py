"""The face stage's frame source: batches of full-resolution RGB frames from the decoder ``detect.decoder`` names.

- ``pyav`` (default): PyAV (FFmpeg), frames converted whole to RGB by libswscale's unscaled yuv420p -> rgb24
  path. Detectors that read smaller frames (``DetectorConfig.max_size``: RetinaFace 960) resize them
  themselves. Decoding straight to the detector's size in one libswscale pass
  (``VideoFrame.to_ndarray(width=, height=, format="rgb24")``) was measured and not adopted: on PyAV 18's
  FFmpeg it costs 2-4x the unscaled conversion (1280x720 -> 640x360: 1.8 ms vs 0.44 ms per frame; 1920x1080:
  2.6 ms vs 0.82 ms; measured under load), because the unscaled conversion is a SIMD special case and the
  scaling one is not (``benchmarks/detect_speed.py --data-path`` prints both).
- ``torchcodec``: torchcodec's ``VideoDecoder`` (FFmpeg, github.com/pytorch/torchcodec) on ``device``: on
  CUDA it decodes with NVDEC. Frames are copied to the host (detectors take NumPy arrays). Needs torchcodec
  and FFmpeg's shared libraries 4-8 (libavutil, libavcodec, libavformat, libavdevice, libavfilter,
  libswscale, libswresample); when they cannot be loaded :func:`check_decoder` raises naming them.

Frames come upright (display rotation applied) with their presentation times (seconds, container clock).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from .errors import ConfigError, VideoError
from .video import _open, _rotation, rotate_frame

DECODERS = ("pyav", "torchcodec")
#: FFmpeg libraries torchcodec loads (sonames differ per FFmpeg major version).
FFMPEG_LIBS = ("libavutil", "libavcodec", "libavformat", "libavdevice", "libavfilter", "libswscale", "libswresample")


@dataclass
class FrameBatch:
    """Consecutive decoded frames of one size.

    Attributes:
        times: presentation time of each frame, seconds on the container clock (None when it has none).
        frames: ``uint8 [B, H, W, 3]`` RGB, upright, full resolution.
    """

    times: list[float | None]
    frames: np.ndarray


def _rgb(frame) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB of a decoded frame, upright. Unrotated: a view of libswscale's output in the
    converted frame (FFmpeg's buffer pool, so no fresh pages per frame), for one copy into the batch."""
    rot = _rotation(frame)
    if rot:
        return rotate_frame(frame.to_ndarray(format="rgb24"), rot)
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(rgb.height, plane.line_size)
    return rows[:, :rgb.width * 3].reshape(rgb.height, rgb.width, 3)


def pyav_batches(path: str | Path, batch_size: int) -> Iterator[FrameBatch]:
    """Decode ``path`` with PyAV into :class:`FrameBatch` es of ``batch_size`` frames; a size change inside a
    video starts a new batch. Frames are as ``afwpipe.video.iter_frames`` gives them (the same libswscale
    conversion), converted straight into the batch's array.

    Raises:
        VideoError: as ``iter_frames`` (names the file; raised after the frames before it).
    """
    path = Path(path)
    container = _open(path)
    try:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        buf, times, i = None, [], 0
        try:
            for frame in container.decode(vs):
                rgb = _rgb(frame)
                if buf is not None and (len(times) == batch_size or rgb.shape != buf.shape[1:]):
                    yield FrameBatch(times, buf[:len(times)])
                    buf, times = None, []
                if buf is None:
                    buf = np.empty((batch_size,) + rgb.shape, np.uint8)
                buf[len(times)] = rgb
                times.append(frame.time)
                i += 1
        except (av.error.FFmpegError, OSError) as e:
            raise VideoError(f"{path}: decoding failed after {i} frames ({e})") from e
        if times:
            yield FrameBatch(times, buf[:len(times)])
    finally:
        container.close()


def check_decoder(decoder: str) -> None:
    """Check that ``decoder`` is known and loads.

    Raises:
        ConfigError: ``decoder`` is not one of :data:`DECODERS` (the message lists them), or torchcodec is
            not installed, or its FFmpeg libraries cannot be loaded (the message names them and torchcodec's
            error).
    """
    if decoder not in DECODERS:
        raise ConfigError(f"detect.decoder: unknown decoder {decoder!r}; known: {', '.join(DECODERS)}")
    if decoder == "torchcodec":
        try:
            from torchcodec.decoders import VideoDecoder  # noqa: F401
            _torchcodec_ffmpeg()
        except ImportError as e:
            raise ConfigError(f"detect.decoder: torchcodec is not installed ({e}); pip install torchcodec, "
                              f"or use decoder: pyav") from e
        except (OSError, RuntimeError) as e:
            raise ConfigError(
                f"detect.decoder: torchcodec cannot load FFmpeg's shared libraries ({', '.join(FFMPEG_LIBS)}, "
                f"FFmpeg 4 to 8; e.g. apt-get install ffmpeg, or conda install ffmpeg): {e}") from e


def _torchcodec_ffmpeg() -> None:
    """Raise torchcodec's own error when its FFmpeg-based video ops did not load.

    torchcodec >= 0.17 imports without FFmpeg (its JPEG decoder does not need it) and records whether its
    FFmpeg-based core loaded in ``torchcodec._core.ops._FFMPEG_AVAILABLE``; the video decoder then fails only
    when first called. Older releases load FFmpeg on import, and have no such flag (nothing to check).

    Raises:
        RuntimeError: the core libraries did not load (torchcodec's message, naming the FFmpeg versions tried).
    """
    from torchcodec._core import ops

    if getattr(ops, "_FFMPEG_AVAILABLE", True):
        return
    try:
        with ops.expose_ffmpeg_dlls():
            ops.load_core_libraries()
    except Exception as e:  # torchcodec raises RuntimeError (OSError from the loader on some releases)
        raise RuntimeError(str(e)) from e
    raise RuntimeError("torchcodec's FFmpeg-based video decoder did not load when torchcodec was imported")


def torchcodec_batches(path: str | Path, batch_size: int, device: str = "cpu") -> Iterator[FrameBatch]:
    """Decode ``path`` with torchcodec on ``device`` (``cuda``: NVDEC) into full-resolution
    :class:`FrameBatch` es; times are torchcodec's ``pts_seconds`` (the container clock, as PyAV's).

    Raises:
        ConfigError: see :func:`check_decoder`.
        VideoError: the file cannot be opened or fails while decoding (names the file).
    """
    check_decoder("torchcodec")
    from torchcodec.decoders import VideoDecoder

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: video file does not exist")
    try:
        dec = VideoDecoder(str(path), device=device, dimension_order="NHWC", seek_mode="exact")
        n = len(dec)
    except (RuntimeError, ValueError) as e:
        raise VideoError(f"{path}: torchcodec cannot open it as a video ({e})") from e
    for a in range(0, n, batch_size):
        try:
            b = dec.get_frames_in_range(a, min(a + batch_size, n))
        except (RuntimeError, ValueError) as e:
            raise VideoError(f"{path}: decoding failed after {a} frames ({e})") from e
        yield FrameBatch([float(t) for t in b.pts_seconds], np.ascontiguousarray(b.data.cpu().numpy()))


def frame_batches(path: str | Path, batch_size: int, decoder: str = "pyav", device: str = "cpu") -> Iterator[FrameBatch]:
    """:func:`pyav_batches` or :func:`torchcodec_batches` (``device`` used by torchcodec only)."""
    check_decoder(decoder)
    if decoder == "torchcodec":
        return torchcodec_batches(path, batch_size, device)
    return pyav_batches(path, batch_size)
