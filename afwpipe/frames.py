"""The face stage's frame source: batches of frames at the detector's input size, crops from full resolution.

``detect.decoder`` chooses the decoder:

- ``pyav`` (default): PyAV (FFmpeg). When the detector reads frames no larger than ``max_side`` pixels
  (``DetectorConfig.max_size``: RetinaFace 960) and the video is larger, each frame is scaled and converted
  to RGB in one libswscale pass (``VideoFrame.to_ndarray(width=, height=, format="rgb24")``, bilinear); the
  decoded YUV frame is kept and a face crop is aligned from it at full resolution, converting only the
  pixels the crop reads (the crop's source rectangle plus 2 pixels, on even coordinates for the 4:2:0
  chroma) with the same libswscale conversion, so the crop equals one aligned from the whole frame converted
  to RGB. Detectors without ``max_size`` (MTCNN) get full-resolution RGB frames, as before.
- ``torchcodec``: torchcodec's ``VideoDecoder`` (FFmpeg, github.com/pytorch/torchcodec) on ``device``: on
  CUDA it decodes with NVDEC. It gives full-resolution RGB frames (copied to the host, as detectors take
  NumPy arrays); crops are aligned from them. Needs torchcodec and FFmpeg's shared libraries 4-8 (libavutil,
  libavcodec, libavformat, libavdevice, libavfilter, libswscale, libswresample); when they cannot be loaded
  :func:`check_decoder` raises naming them.

Frames come upright (display rotation applied) with their presentation times (seconds, container clock).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from .errors import ConfigError, VideoError
from .faces.align import align_faces, similarity_matrix
from .video import _open, _rotation, rotate_frame

DECODERS = ("pyav", "torchcodec")
#: FFmpeg libraries torchcodec loads (sonames differ per FFmpeg major version).
FFMPEG_LIBS = ("libavutil", "libavcodec", "libavformat", "libavdevice", "libavfilter", "libswscale", "libswresample")
MARGIN = 2  #: pixels converted around a crop's source rectangle (bilinear reads one beyond; one more for rounding)


@dataclass
class FrameBatch:
    """Consecutive decoded frames of one size.

    Attributes:
        times: presentation time of each frame, seconds on the container clock (None when it has none).
        frames: ``uint8 [B, h, w, 3]`` RGB, upright: the detector's input.
        scale: full-resolution pixels per pixel of ``frames`` (1.0: full resolution).
        full: per frame, the decoded ``av.VideoFrame`` kept for the crop (empty when ``frames`` is full size).
    """

    times: list[float | None]
    frames: np.ndarray
    scale: float = 1.0
    full: list = field(default_factory=list)

    def align(self, landmarks: np.ndarray, size: int) -> np.ndarray:
        """Aligned crops ``uint8 [B, size, size, 3]`` (``afwpipe.faces.align_faces``; black where a row of
        ``landmarks [B, 5, 2]``, full-resolution pixels, has a NaN), from the full-resolution frames."""
        if not self.full:
            return align_faces(self.frames, landmarks, size)
        crops = np.zeros((len(self.full), size, size, 3), np.uint8)
        for i, (frame, lm) in enumerate(zip(self.full, np.asarray(landmarks, np.float32))):
            if not np.isnan(lm).any():
                crops[i] = align_from_frame(frame, lm, size)
        return crops


def detector_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """``(w, h)`` of a frame whose longest side is at most ``max_side`` (``round(side x max_side / longest)``,
    as albumentations ``LongestMaxSize``); the frame's own size when it already fits or ``max_side`` is None."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def _region_rgb(frame: av.VideoFrame, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """RGB of ``[y0:y1, x0:x1]`` of a yuv420p frame (even bounds) by libswscale, as the whole frame's."""
    planes = frame.planes
    y = np.frombuffer(planes[0], np.uint8).reshape(frame.height, planes[0].line_size)[y0:y1, x0:x1]
    u = np.frombuffer(planes[1], np.uint8).reshape(-1, planes[1].line_size)[y0 // 2:y1 // 2, x0 // 2:x1 // 2]
    v = np.frombuffer(planes[2], np.uint8).reshape(-1, planes[2].line_size)[y0 // 2:y1 // 2, x0 // 2:x1 // 2]
    sub = av.VideoFrame.from_ndarray(np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(-1, x1 - x0),
                                     format="yuv420p")
    sub.colorspace, sub.color_range = frame.colorspace, frame.color_range
    return sub.to_ndarray(format="rgb24")


def align_from_frame(frame: av.VideoFrame, landmarks5: np.ndarray, size: int) -> np.ndarray:
    """``afwpipe.faces.align_face`` of the decoded ``frame`` at full resolution.

    For an unrotated yuv420p frame of even size only the crop's source rectangle is converted to RGB
    (same pixels as converting the whole frame); other frames are converted whole (and turned upright).

    Returns:
        ``uint8 [size, size, 3]`` RGB.
    """
    rot = _rotation(frame)
    if frame.format.name != "yuv420p" or rot or frame.width % 2 or frame.height % 2:
        from .faces.align import align_face

        return align_face(rotate_frame(frame.to_ndarray(format="rgb24"), rot), landmarks5, size)
    m = similarity_matrix(landmarks5, size)
    corners = cv2.invertAffineTransform(m) @ np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]],
                                                      np.float64).T
    x0 = max(0, (math.floor(corners[0].min()) - MARGIN) // 2 * 2)
    y0 = max(0, (math.floor(corners[1].min()) - MARGIN) // 2 * 2)
    x1 = min(frame.width, (math.ceil(corners[0].max()) + MARGIN + 2) // 2 * 2)
    y1 = min(frame.height, (math.ceil(corners[1].max()) + MARGIN + 2) // 2 * 2)
    if x1 <= x0 or y1 <= y0:  # the crop lies wholly outside the frame: black, as warpAffine gives
        return np.zeros((size, size, 3), np.uint8)
    inv = cv2.invertAffineTransform(m)  # crop -> frame pixels, as warpAffine inverts M itself
    inv[:, 2] -= (x0, y0)  # -> rectangle pixels: an integer shift keeps OpenCV's fixed-point rounding
    return cv2.warpAffine(_region_rgb(frame, x0, y0, x1, y1), inv, (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=(0, 0, 0))


def pyav_batches(path: str | Path, batch_size: int, max_side: int | None = None) -> Iterator[FrameBatch]:
    """Decode ``path`` with PyAV into :class:`FrameBatch` es of ``batch_size`` frames (a size change starts a
    new batch), frames scaled to :func:`detector_size` in the RGB conversion.

    Raises:
        VideoError: as ``afwpipe.video.iter_frames`` (names the file; raised after the frames before it).
    """
    path = Path(path)
    container = _open(path)
    try:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        buf, times, full, i = [], [], [], 0
        try:
            for frame in container.decode(vs):
                rot = _rotation(frame)
                w, h = (frame.height, frame.width) if rot in (90, 270) else (frame.width, frame.height)
                dw, dh = detector_size(w, h, max_side)
                if (dw, dh) == (w, h):
                    rgb, keep = rotate_frame(frame.to_ndarray(format="rgb24"), rot), None
                else:
                    sw, sh = (dh, dw) if rot in (90, 270) else (dw, dh)
                    rgb, keep = rotate_frame(frame.to_ndarray(width=sw, height=sh, format="rgb24"), rot), frame
                if buf and (len(buf) == batch_size or rgb.shape != buf[0].shape):
                    yield _batch(times, buf, full)
                    buf, times, full = [], [], []
                buf.append(rgb)
                times.append(frame.time)
                if keep is not None:
                    full.append((keep, max(w, h) / max(dw, dh)))
                i += 1
        except (av.error.FFmpegError, OSError) as e:
            raise VideoError(f"{path}: decoding failed after {i} frames ({e})") from e
        if buf:
            yield _batch(times, buf, full)
    finally:
        container.close()


def _batch(times: list, frames: list, full: list) -> FrameBatch:
    if not full:
        return FrameBatch(times, np.stack(frames))
    return FrameBatch(times, np.stack(frames), full[0][1], [f for f, _ in full])


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
            from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads libtorchcodec and FFmpeg)
        except ImportError as e:
            raise ConfigError(f"detect.decoder: torchcodec is not installed ({e}); pip install torchcodec, "
                              f"or use decoder: pyav") from e
        except (OSError, RuntimeError) as e:
            raise ConfigError(
                f"detect.decoder: torchcodec cannot load FFmpeg's shared libraries ({', '.join(FFMPEG_LIBS)}, "
                f"FFmpeg 4 to 8; e.g. apt-get install ffmpeg, or conda install ffmpeg): {e}") from e


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


def frame_batches(path: str | Path, batch_size: int, decoder: str = "pyav", max_side: int | None = None,
                  device: str = "cpu") -> Iterator[FrameBatch]:
    """:func:`pyav_batches` or :func:`torchcodec_batches` (``device`` used by torchcodec only)."""
    check_decoder(decoder)
    if decoder == "torchcodec":
        return torchcodec_batches(path, batch_size, device)
    return pyav_batches(path, batch_size, max_side)
