"""An MP4 of a video with its per-frame predictions drawn on each frame (``afwpipe analyze``).

Frames are decoded by :func:`afwpipe.video.iter_frames` (rotated phone video turned upright, so the table's
boxes, in upright coordinates, fit), drawn with OpenCV and encoded with PyAV, one frame at a time: the
video is never held in memory. Each output frame keeps its source frame's presentation timestamp (same
time base), so the output decodes to the same number of frames at the same times, variable frame rate
included. The first audio stream is copied when it is AAC (MP4's usual audio, played everywhere), else
decoded and re-encoded to AAC at its own sample rate (mono, or stereo for 2+ channels); its packets are interleaved with the video by time as they are read.

Drawn per frame (the table's columns: see :mod:`afwpipe.timeline`): the face box (``x1..y2``), and beside
it the expression (``expr`` and its probability), valence and arousal as numbers and as two small bars
centred on 0, and the active AUs (``<AU>`` = 1). A frame without a face (``present`` False) gets no box
and a "no face" label in its top-left corner. Tracks the table lacks are left out.

Video codec: ``libx264`` (CRF 18, yuv420p) when PyAV's FFmpeg has it (the PyPI wheels do), else ``mpeg4``.
yuv420p needs even sizes: an odd width or height is padded by one pixel (edge copied).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from . import atomic
from .errors import RenderError, VideoError
from .labels import EXPR_NAMES
from .timeline import column, present_mask, table_tracks
from .video import _open, iter_frames

log = logging.getLogger(__name__)

#: audio codecs copied as they are (PyAV decoder names); any other is re-encoded to AAC
AUDIO_COPY = ("aac", "aac_fixed")
BOX_COLOUR = (0, 220, 0)  # RGB
TEXT_COLOUR = (255, 255, 255)
PANEL_COLOUR = (0, 0, 0)
VA_COLOURS = {"valence": (80, 160, 255), "arousal": (255, 160, 40)}


def write_overlay(video_path: str | Path, table, out_path: str | Path) -> int:
    """Write ``video_path`` with ``table``'s predictions drawn on every frame to the MP4 ``out_path``.

    Args:
        video_path: the source video (any container PyAV reads).
        table: one row per decoded frame of ``video_path`` (columns: :mod:`afwpipe.timeline`).
        out_path: the MP4 to write; it is written under a temporary name and renamed when complete, so a
            failure leaves no partial file.

    Returns:
        The number of frames written (= decoded frames of the source = rows of the table).

    Raises:
        VideoError: the source cannot be opened or decoded (names the file).
        RenderError: the table's row count differs from the decoded frames (names the file and both counts).
    """
    video_path, out_path = Path(video_path), Path(out_path)
    draw = _Drawer(table)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(out_path) as tmp:
        n = _encode(video_path, draw, tmp)
    return n


def _encode(video_path: Path, draw: _Drawer, out_path: Path) -> int:
    src = _open(video_path)  # raises VideoError naming the file
    vin = src.streams.video[0]
    time_base = vin.time_base or Fraction(1, 90000)
    rate = vin.average_rate or vin.guessed_rate or Fraction(25)
    frames = iter_frames(video_path)
    try:
        first = next(frames, None)
        if first is None:
            raise VideoError(f"{video_path}: no frame could be decoded (corrupt or truncated video)")
        with av.open(str(out_path), "w", format="mp4") as out:  # atomic: the temporary path of write_overlay()
            vout = _video_stream(out, first[2], rate, time_base)
            audio = _Audio(src, out) if src.streams.audio else None  # src: only its audio is read
            step = max(1, round(1 / (rate * time_base)))  # ticks per frame at the average rate
            pts, n, held = None, 0, None  # a frame is encoded when the next one arrives (see below)
            for i, t, rgb in _chain(first, frames):
                if i >= draw.n:
                    raise RenderError(f"{video_path}: the per-frame table has {draw.n} rows but the video "
                                      f"decodes to more frames; a table must have one row per decoded frame")
                pts = round(t / time_base) if t is not None else (0 if pts is None else pts + step)
                frame = av.VideoFrame.from_ndarray(_even(draw(i, rgb)), format="rgb24").reformat(
                    format=vout.codec_context.pix_fmt)
                frame.pts, frame.time_base = pts, time_base
                if audio is not None:
                    audio.mux_until(pts * time_base)
                if held is not None:
                    out.mux(vout.encode(held))
                held, n = frame, n + 1
            if n != draw.n:
                raise RenderError(f"{video_path}: the per-frame table has {draw.n} rows but the video decodes "
                                  f"to {n} frames; a table must have one row per decoded frame")
            # the last frame lasts as long as in the source (its stream's end), so the duration and the
            # average frame rate stay the source's
            end = (vin.duration or 0) + (vin.start_time or 0)
            last = held.pts
            for packet in vout.encode(held) + vout.encode(None):
                if packet.pts == last:  # the encoder does not pass a frame's duration on to its packet
                    packet.duration = round((end - last if end > last else step) * time_base / packet.time_base)
                out.mux(packet)
            if audio is not None:
                audio.finish()
    except av.error.FFmpegError as e:
        raise VideoError(f"{video_path}: writing the overlay {out_path.name} failed ({e})") from e
    finally:
        frames.close()
        src.close()
    return n


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _video_stream(out, rgb: np.ndarray, rate: Fraction, time_base: Fraction):
    h, w = rgb.shape[:2]
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    stream = out.add_stream(codec, rate=rate)
    stream.width, stream.height = w + w % 2, h + h % 2
    stream.pix_fmt = "yuv420p"
    stream.time_base = stream.codec_context.time_base = time_base
    if codec == "libx264":
        stream.options = {"crf": "18", "preset": "veryfast"}
    else:
        stream.codec_context.qscale = 3
    return stream


def _even(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.copyMakeBorder(rgb, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE) if (h % 2 or w % 2) else rgb


class _Audio:
    """The source's first audio stream, copied (or re-encoded to AAC) into ``out`` in time order; ``src`` is
    a container of the source apart from the one whose video frames are decoded."""

    def __init__(self, src, out):
        self.ain = src.streams.audio[0]
        self.copy = self.ain.codec_context.name in AUDIO_COPY
        if self.copy:
            self.aout = out.add_stream_from_template(self.ain)
        else:
            self.aout = out.add_stream("aac", rate=self.ain.rate)
            self.aout.layout = "stereo" if self.ain.channels >= 2 else "mono"
            self.resampler = av.AudioResampler(format="fltp", layout=self.aout.layout, rate=self.ain.rate)
        self.out = out
        self.packets = src.demux(self.ain)
        self.pending = None

    def mux_until(self, seconds) -> None:
        """Mux every audio packet that starts before ``seconds``."""
        while True:
            if self.pending is None:
                self.pending = next(self.packets, None)
                if self.pending is None:
                    return
            p = self.pending
            if p.pts is not None and seconds is not None and p.pts * p.time_base > seconds:
                return
            self.pending = None
            self._mux(p)

    def _mux(self, packet) -> None:
        if self.copy:
            if packet.dts is not None and packet.size:
                packet.stream = self.aout
                self.out.mux(packet)
            return
        for frame in packet.decode():
            for f in self.resampler.resample(frame):
                self.out.mux(self.aout.encode(f))

    def finish(self) -> None:
        self.mux_until(None)
        if not self.copy:
            for f in self.resampler.resample(None):
                self.out.mux(self.aout.encode(f))
            self.out.mux(self.aout.encode(None))


class _Drawer:
    """Draws row ``i`` of a table on a frame (``drawer(i, rgb) -> rgb``, a new array)."""

    def __init__(self, table):
        self.n = len(table)
        if self.n == 0:
            raise RenderError("the per-frame table has no rows; nothing to draw")
        tracks = table_tracks(table)
        self.present = present_mask(table)
        self.boxes = (np.stack([column(table, c) for c in ("x1", "y1", "x2", "y2")], axis=1)
                      if {"x1", "y1", "x2", "y2"} <= set(table.columns) else None)
        self.expr = None
        if "expr" in table.columns:
            self.expr = np.asarray(table["expr"], dtype=object)
        elif "expr_index" in table.columns:
            self.expr = np.array([EXPR_NAMES[k] if 0 <= k < len(EXPR_NAMES) else ""
                                  for k in column(table, "expr_index", np.int64)], dtype=object)
        self.expr_prob = None  # the probability of the class shown
        if self.expr is not None and all(f"{c}_prob" in table.columns for c in EXPR_NAMES):
            probs = np.stack([column(table, f"{c}_prob") for c in EXPR_NAMES], axis=1)
            shown = np.array([EXPR_NAMES.index(e) if e in EXPR_NAMES else -1 for e in self.expr])
            self.expr_prob = np.where(shown >= 0, probs[np.arange(self.n), shown], np.nan)
        self.va = {v: column(table, v) for v in tracks.va}
        self.aus = [(a, column(table, a, np.int8)) for a in tracks.au_decisions]

    def lines(self, i: int) -> list[str]:
        out = []
        if self.expr is not None and isinstance(self.expr[i], str) and self.expr[i]:
            known = self.expr_prob is not None and np.isfinite(self.expr_prob[i])
            out.append(self.expr[i] + (f" {self.expr_prob[i]:.2f}" if known else ""))
        if self.va:
            out.append("  ".join(f"{v[0].upper()} {x[i]:+.2f}" for v, x in self.va.items()))
        if self.aus:
            out.append(" ".join(a for a, on in self.aus if on[i] == 1) or "no AU")
        return out

    def __call__(self, i: int, rgb: np.ndarray) -> np.ndarray:
        img = rgb.copy()
        h, w = img.shape[:2]
        scale = max(0.4, h / 900)
        thick = max(1, round(h / 400))
        box = self.boxes[i] if self.boxes is not None else None
        if not self.present[i] or box is None or not np.isfinite(box).all():
            _text_panel(img, ["no face"], (4, 4), scale, thick)
            return img
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), BOX_COLOUR, max(2, round(h / 180)), cv2.LINE_AA)
        lines = self.lines(i)
        if not lines:
            return img
        ph = _panel_height(len(lines), scale, thick, bool(self.va))
        top = y1 - ph - 2 * thick if y1 - ph - 2 * thick >= 0 else min(y2 + 2 * thick, h - ph)
        _text_panel(img, lines, (max(0, x1), max(0, top)), scale, thick,
                    bars=[(self.va[v][i], VA_COLOURS[v]) for v in self.va])
        return img


def _line_height(scale: float, thick: int) -> int:
    (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    return th + base + 2


BAR_HEIGHT = 5


def _panel_height(n_lines: int, scale: float, thick: int, bars: bool) -> int:
    return n_lines * _line_height(scale, thick) + (2 * (BAR_HEIGHT + 2) if bars else 0) + 4


def _text_panel(img: np.ndarray, lines: list[str], origin: tuple[int, int], scale: float, thick: int,
                bars: list[tuple[float, tuple[int, int, int]]] = ()) -> None:
    """A dark panel at ``origin`` (x, y of its top-left) with ``lines`` of text and, below them, one bar per
    ``(value in [-1, 1], colour)`` centred on the panel's middle."""
    lh = _line_height(scale, thick)
    width = max(cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] for s in lines) + 8
    width = max(width, 60)
    height = _panel_height(len(lines), scale, thick, bool(bars))
    x0, y0 = origin
    x1, y1 = min(img.shape[1], x0 + width), min(img.shape[0], y0 + height)
    region = img[y0:y1, x0:x1]
    region[:] = (region * 0.35 + np.array(PANEL_COLOUR) * 0.65).astype(np.uint8)
    for k, s in enumerate(lines):
        cv2.putText(img, s, (x0 + 4, y0 + 2 + (k + 1) * lh - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOUR,
                    thick, cv2.LINE_AA)
    mid = x0 + width // 2
    for k, (value, colour) in enumerate(bars):
        yb = y0 + 2 + len(lines) * lh + k * (BAR_HEIGHT + 2)
        cv2.line(img, (mid, yb), (mid, yb + BAR_HEIGHT), TEXT_COLOUR, 1)
        if np.isfinite(value):
            end = mid + int(round(float(np.clip(value, -1, 1)) * (width // 2 - 4)))
            cv2.rectangle(img, (min(mid, end), yb), (max(mid, end), yb + BAR_HEIGHT), colour, -1)
