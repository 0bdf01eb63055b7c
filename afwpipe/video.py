"""Video decoding with PyAV: probing (decoded frame count, timestamps, audio) and streaming frames.

Frames are decoded one at a time and never held all in memory. The frame count is the number of
frames the decoder actually returns (container headers are often wrong; Aff-Wild2 annotations are
aligned to decoded frames): ``probe_video`` counts them by demuxing packets when the container's counts agree
with each other, and decodes every frame where they do not (``demux_times``). Timestamps are the container's presentation times in seconds, so
variable-frame-rate phone video is handled without assuming an fps.

One clock: frames and audio samples are placed on the container's presentation clock (decoded frames'
``pts x time_base``), not by their order in the stream. Web video often starts its streams at different
container times (edit lists, delayed audio, AAC priming), so ``VideoInfo.times`` count from the first
decoded frame's time (``start_time``), and ``read_audio`` returns audio whose sample 0 is at that same time:
silence is added before an audio stream that starts later, and audio before the first frame is cut.
``audio_offset`` = first decoded audio sample's time - first decoded frame's time (seconds; > 0: the audio
starts after the first frame).

Truncated files: with threaded decoding a file whose tail is cut off decodes its first frames and
ends without an error. ``probe_video`` therefore compares the decoded count with what the container
declares (``truncation_warning``) and records a warning on the ``VideoInfo``; it is not a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from .errors import VideoError
from .labels import AUDIO_SAMPLE_RATE

log = logging.getLogger(__name__)


@dataclass
class VideoInfo:
    """What ``probe_video`` learns about one video.

    Attributes:
        path: the file.
        n_frames: number of decoded frames.
        fps: average frame rate (frames / s) reported by the container stream.
        width, height: frame size in pixels after rotation (as displayed).
        rotation: display rotation in degrees (0, 90, 180, 270; counter-clockwise as in the display matrix).
        duration: seconds from the first frame's time to the end of the last frame.
        vfr: True when frame intervals vary by more than 10 % of their median (variable frame rate).
        has_audio: the container has an audio stream.
        audio_rate: audio sample rate in Hz (0 without audio).
        audio_channels: number of audio channels (0 without audio).
        times: float64 ``[n_frames]``, presentation time of each decoded frame in seconds, from 0 (the first
            decoded frame, at ``start_time`` on the container clock).
        start_time: container time in seconds of the first decoded frame (``pts x time_base``; 0 when the
            frame has no timestamp).
        audio_start: container time in seconds of the first decoded audio sample (None without audio).
        audio_offset: ``audio_start - start_time`` in seconds (None without audio): > 0 the audio starts
            after the first frame, < 0 before it. ``read_audio`` pads / cuts the audio by this much.
        declared_frames, declared_duration: frame count and seconds the container declares
            (``declared_length``; 0 when unknown).
        warning: None, or why the file looks truncated (see ``truncation_warning``).
    """

    path: str
    n_frames: int
    fps: float
    width: int
    height: int
    rotation: int
    duration: float
    vfr: bool
    has_audio: bool
    audio_rate: int
    audio_channels: int
    times: np.ndarray
    declared_frames: int = 0
    declared_duration: float = 0.0
    warning: str | None = None
    start_time: float = 0.0
    audio_start: float | None = None
    audio_offset: float | None = None

    def to_dict(self) -> dict:
        """JSON-friendly dict without ``times``."""
        d = asdict(self)
        d.pop("times")
        return d


def _open(path: Path):
    if not path.is_file():
        raise VideoError(f"{path}: video file does not exist")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoError(f"{path}: cannot open as a video ({e})") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def _rotation(frame) -> int:
    return int(round(getattr(frame, "rotation", 0) or 0)) % 360


def _frame_times(pts_times: list[float | None], fps: float) -> np.ndarray:
    t = np.array([np.nan if x is None else x for x in pts_times], dtype=np.float64)
    if np.isnan(t).any():  # frames without a timestamp: take it from the frame index
        idx = np.arange(len(t))
        t[np.isnan(t)] = idx[np.isnan(t)] / fps
    return t - t[0] if len(t) else t


SHORT_RATIO = 0.98  # decoded < 98 % of the declared frames (and of the declared duration) ...
SHORT_MIN_FRAMES = 2  # ... and at least 2 frames short: the file is reported as truncated


def declared_length(container, stream, fps: float) -> tuple[int, float]:
    """``(frames, seconds)`` the container declares for ``stream``.

    seconds: the stream's duration (``stream.duration x stream.time_base``), else the container's
    (``container.duration`` in ``av.time_base`` units), else 0. frames: ``stream.frames`` when set,
    else ``round(seconds x fps)`` (0 when no duration is known either).
    """
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    else:
        seconds = 0.0
    return int(stream.frames or round(seconds * fps)), seconds


def decoded_seconds(times: np.ndarray) -> float:
    """Length in seconds of decoded frames with timestamps ``times`` (from 0): last time plus one
    median frame interval (0 for no frame; one frame counts as 0 s)."""
    if len(times) < 2:
        return 0.0
    return float(times[-1] + np.median(np.diff(times)))


def truncation_warning(decoded: int, declared: int, seconds: float | None = None,
                       declared_seconds: float = 0.0) -> str | None:
    """A message when ``decoded`` frames are clearly fewer than the container's ``declared``, else None.

    Rule: ``declared > 0``, ``decoded < SHORT_RATIO * declared`` (0.98), ``declared - decoded >=
    SHORT_MIN_FRAMES`` (2), and, when both durations are known (``seconds`` decoded, ``declared_seconds``
    > 0), ``seconds < SHORT_RATIO * declared_seconds`` too. Container frame counts can include packets
    an edit list drops (the sample's no_face.mp4 declares 98 frames, 3 of them pre-roll before time 0,
    and decodes 95 covering its whole 3.95 s); a cut-off tail loses frames and time.
    """
    if not (declared > 0 and decoded < SHORT_RATIO * declared and declared - decoded >= SHORT_MIN_FRAMES):
        return None
    if declared_seconds > 0 and seconds is not None and np.isfinite(seconds):
        if seconds >= SHORT_RATIO * declared_seconds:
            return None
        return (f"decoded {decoded} frames ({seconds:.2f} s) but the container declares {declared} "
                f"({declared_seconds:.2f} s): the file is probably truncated")
    return f"decoded {decoded} frames but the container declares {declared}: the file is probably truncated"


def demux_times(container, stream) -> tuple[list[float] | None, int]:
    """Presentation times (s, ascending) of the packets of ``stream`` that decode to frames, read by demuxing
    without decoding, and the number of packets with data (those the demuxer flags to discard included: an
    edit list's pre-roll). Times are None when a kept packet has no timestamp or a packet is flagged corrupt.

    Raises:
        av.error.FFmpegError, OSError: demuxing failed.
    """
    pts, packets = [], 0
    for packet in container.demux(stream):
        if packet.size == 0:  # the flush packet PyAV yields at the end
            continue
        packets += 1
        if packet.is_corrupt:  # e.g. the last packet of a cut file, read short
            return None, packets
        if not packet.is_discard:
            pts.append(packet.pts)
    if any(p is None for p in pts):
        return None, packets
    tb = float(stream.time_base)
    return [p * tb for p in sorted(pts)], packets


def probe_video(path: str | Path) -> VideoInfo:
    """Count and time the frames of ``path`` and return its ``VideoInfo``.

    Frames are counted by demuxing packets (no decoding) when the container agrees with itself: it declares
    a frame count (``stream.frames``) equal to the packets demuxed, every packet that decodes to a frame has a
    timestamp, and at least one does. Otherwise (a count or duration header missing or wrong, a cut tail) every
    frame is decoded (without converting pixels) and counted, as the decoder returns them. Either way
    the first frame is decoded for its size and rotation. Packets the demuxer flags to discard (an edit
    list's pre-roll) are no frames.

    A file that has clearly fewer frames than its container declares gets ``VideoInfo.warning``
    (logged, naming the file) instead of an error: its decoded frames are usable.

    Raises:
        VideoError: the file does not exist, is not a video, has no video stream, fails while
            demuxing or decoding (corrupt or truncated) or decodes to zero frames. The message names the file.
    """
    path = Path(path)
    container = _open(path)
    try:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        fps = float(vs.average_rate or vs.guessed_rate or 0) or 25.0
        aud = container.streams.audio[0] if container.streams.audio else None
        declared, declared_s = declared_length(container, vs, fps)
        declared_packets = vs.frames or -2  # unknown: never agrees
        try:
            times, packets = demux_times(container, vs)
        except (av.error.FFmpegError, OSError):
            times, packets = None, -1  # decoding below names the error
    finally:
        container.close()
    if times is None or not times or packets != declared_packets:
        times = _decode_times(path)
        log.debug("%s: %d frames counted by decoding (%d packets demuxed, %d declared)", path, len(times), packets,
                  declared_packets)
    first = _first_frame(path, "video") if times else None
    rotation, w, h = (_rotation(first), first.width, first.height) if first is not None else (0, 0, 0)
    if not times:
        raise VideoError(f"{path}: no frame could be decoded (corrupt or truncated video)")
    t = _frame_times(times, fps)
    start = float(times[0]) if times[0] is not None else 0.0
    audio_start = first_audio_time(path) if aud is not None else None
    d = np.diff(t)
    med = float(np.median(d)) if len(d) else 1.0 / fps
    vfr = bool(len(d) and np.any(np.abs(d - med) > 0.1 * med))
    if rotation in (90, 270):
        w, h = h, w
    warning = truncation_warning(len(t), declared, decoded_seconds(t), declared_s)
    if warning:
        log.warning("%s: %s", path, warning)
    return VideoInfo(
        path=str(path), n_frames=len(t), fps=fps, width=w, height=h, rotation=rotation,
        duration=float(t[-1] + med), vfr=vfr, has_audio=aud is not None,
        audio_rate=int(aud.rate) if aud is not None else 0,
        audio_channels=int(aud.channels) if aud is not None else 0, times=t,
        declared_frames=declared, declared_duration=declared_s, warning=warning, start_time=start,
        audio_start=audio_start, audio_offset=None if audio_start is None else audio_start - start,
    )


def _decode_times(path: Path) -> list[float | None]:
    """Times (``frame.time``, s or None) of every frame the decoder returns. Raises VideoError naming the file."""
    times: list[float | None] = []
    container = _open(path)
    try:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        for frame in container.decode(vs):
            times.append(frame.time)
    except (av.error.FFmpegError, OSError) as e:
        raise VideoError(f"{path}: decoding failed after {len(times)} frames ({e})") from e
    finally:
        container.close()
    return times


def _first_frame(path: Path, kind: str):
    """The first decoded frame of the first ``kind`` (``video`` / ``audio``) stream; None when the file has
    no such stream or it decodes to nothing. Raises VideoError (naming the file) on a decode error."""
    container = _open(path)
    try:
        streams = getattr(container.streams, kind)
        if not streams:
            return None
        try:
            return next(container.decode(streams[0]), None)
        except (av.error.FFmpegError, OSError) as e:
            raise VideoError(f"{path}: decoding the first {kind} frame failed ({e})") from e
    finally:
        container.close()


def first_frame_time(path: str | Path) -> float:
    """Container time in seconds (``pts x time_base``) of the first decoded frame of the first video stream;
    0.0 when that frame has no timestamp (as ``probe_video``'s ``start_time``).

    Raises:
        VideoError: as ``probe_video`` (names the file).
    """
    frame = _first_frame(Path(path), "video")
    if frame is None:
        raise VideoError(f"{path}: no frame could be decoded (corrupt or truncated video)")
    return float(frame.time) if frame.time is not None else 0.0


def first_audio_time(path: str | Path) -> float | None:
    """Container time in seconds of the first decoded sample of the first audio stream (``pts x
    time_base`` of its first decoded frame, after the edit list / priming the demuxer applies).

    Returns None when the file has no audio stream or no audio frame decodes; 0.0 (logged) when the first
    audio frame has no timestamp.

    Raises:
        VideoError: the file cannot be opened or its audio fails to decode (names the file).
    """
    frame = _first_frame(Path(path), "audio")
    if frame is None:
        return None
    if frame.time is None:
        log.warning("%s: the first audio frame has no timestamp; taken to start at container time 0", path)
        return 0.0
    return float(frame.time)


def rotate_frame(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate an ``[H, W, 3]`` frame so it is shown upright (display-matrix rotation, degrees CCW)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=k)) if k else rgb


def iter_frames(path: str | Path) -> Iterator[tuple[int, float | None, np.ndarray]]:
    """Stream ``(index, time_s, rgb)`` for each decoded frame; ``rgb`` is uint8 ``[H, W, 3]``, upright.

    Raises:
        VideoError: as ``probe_video``; a decode error mid-way is raised after the frames before it.
    """
    path = Path(path)
    container = _open(path)
    try:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        i = 0
        try:
            for frame in container.decode(vs):
                yield i, frame.time, rotate_frame(frame.to_ndarray(format="rgb24"), _rotation(frame))
                i += 1
        except (av.error.FFmpegError, OSError) as e:
            raise VideoError(f"{path}: decoding failed after {i} frames ({e})") from e
    finally:
        container.close()


#: Audio timestamps within this many seconds of where the previous frame ended are taken as contiguous
#: (resampler and container rounding); a larger jump is a gap (filled with silence) or an overlap (cut).
AUDIO_JITTER_S = 0.001


@dataclass
class AudioTrack:
    """Audio on the video's clock, as ``read_audio_track`` returns it.

    Attributes:
        wave: float32 ``[N]`` mono in [-1, 1] at ``sample_rate``; sample ``i`` is at container time
            ``start + i / sample_rate`` seconds.
        sample_rate: Hz.
        start: container time in seconds of sample 0 (the first decoded video frame's time by default).
        offset: first decoded audio sample's container time minus ``start``, seconds (> 0: the audio starts
            after ``start``; that many seconds of silence lead ``wave``; < 0: that much audio was cut).
        lead: samples of silence added before the first decoded audio sample (``max(0, offset)`` in samples).
        gaps: seconds of silence filled into gaps between audio frames' timestamps.
    """

    wave: np.ndarray
    sample_rate: int
    start: float
    offset: float
    lead: int
    gaps: float = 0.0


def _place(chunks: list[tuple[float | None, np.ndarray]], start: float, sr: int) -> tuple[np.ndarray, int, float]:
    """Join resampled chunks ``(time_s or None, samples)`` on the clock of ``start``: each chunk goes where its
    timestamp says (a chunk without one follows the previous); gaps get zeros, overlaps are cut.
    Returns ``(wave, first sample's index relative to start, gap seconds)``."""
    tol = int(round(AUDIO_JITTER_S * sr))
    out, pos, first, gaps = [], None, 0, 0
    for t, x in chunks:
        at = pos if t is None else int(round((t - start) * sr))
        if pos is None:
            first = pos = 0 if at is None else at
        elif at > pos + tol:
            out.append(np.zeros(at - pos, np.float32))
            gaps += at - pos
            pos = at
        elif at < pos - tol:
            x = x[pos - at:]
        out.append(x)
        pos += len(x)
    wave = np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros(0, np.float32)
    if first > 0:
        wave = np.concatenate([np.zeros(first, np.float32), wave])
    elif first < 0:
        wave = wave[-first:]
    return wave, first, gaps / sr


def read_audio_track(path: str | Path, sample_rate: int = AUDIO_SAMPLE_RATE,
                     start: float | None = None) -> AudioTrack | None:
    """Decode the first audio stream, resampled to ``sample_rate`` Hz mono float32, on the container clock.

    Each resampled frame is placed at its presentation time (``pts x time_base``; PyAV's ``AudioResampler``,
    libswresample, carries the input timestamps over) relative to ``start`` (default: the first decoded
    video frame's time, ``first_frame_time``), so ``wave[i]`` is at container time ``start + i /
    sample_rate``: audio that starts after ``start`` is preceded by silence, audio before it is cut, gaps
    between frames' timestamps are filled with silence (logged).

    Returns None when the file has no audio stream.

    Raises:
        VideoError: the file cannot be opened, has no decodable video frame, or the audio fails to decode.
    """
    path = Path(path)
    if start is None:
        start = first_frame_time(path)
    container = _open(path)
    try:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[tuple[float | None, np.ndarray]] = []
        untimed = False
        try:
            for frame in container.decode(stream):
                untimed = untimed or (not chunks and frame.time is None)
                for out in resampler.resample(frame):
                    chunks.append((out.time, out.to_ndarray().reshape(-1)))
            for out in resampler.resample(None):
                chunks.append((out.time, out.to_ndarray().reshape(-1)))
        except (av.error.FFmpegError, OSError) as e:
            raise VideoError(f"{path}: audio decoding failed ({e})") from e
    finally:
        container.close()
    if untimed:
        log.warning("%s: the first audio frame has no timestamp; audio taken to start with the first frame", path)
    wave, first, gaps = _place(chunks, start, sample_rate)
    if gaps:
        log.warning("%s: %.3f s of gaps between audio timestamps filled with silence", path, gaps)
    return AudioTrack(wave=wave, sample_rate=sample_rate, start=float(start), offset=first / sample_rate,
                      lead=max(first, 0), gaps=gaps)


def read_audio(path: str | Path, sample_rate: int = AUDIO_SAMPLE_RATE, start: float | None = None) -> np.ndarray | None:
    """``read_audio_track(path, sample_rate, start).wave``: float32 ``[N]`` mono at ``sample_rate`` Hz whose
    sample 0 is at the first decoded video frame's time (or ``start``); None without an audio stream.

    Raises:
        VideoError: as ``read_audio_track``.
    """
    track = read_audio_track(path, sample_rate, start)
    return None if track is None else track.wave
