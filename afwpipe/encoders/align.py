"""Audio states onto video frames: the one place where the two clocks meet.

An audio model emits states on a fixed hop (20 ms for whisper / HuBERT / wav2vec2, 10 ms for
log-Mel); state j covers [j*hop, (j+1)*hop) seconds and sits at its centre (j+0.5)*hop. Video frame i
spans [t_i, t_{i+1}) from the container's timestamps; the last frame spans one median frame
duration. A frame gets the mean of the states whose centre lies in its span; a frame whose span
holds no state (a duplicated timestamp, a frame shorter than the hop, a frame past the end of the
audio) takes the state nearest to its span's centre. No frame rate is ever assumed.
"""

from __future__ import annotations

import numpy as np


def frame_spans(frame_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (seconds) of each frame's span: [t_i, t_{i+1}), last = t_{T-1} + median duration.

    A single frame gets an open-ended span (end = +inf): it takes every state from t_0 on.

    Raises:
        ValueError: times not 1-D, not finite, or decreasing.
    """
    t = np.asarray(frame_times, dtype=np.float64)
    if t.ndim != 1 or not np.all(np.isfinite(t)):
        raise ValueError(f"frame_times must be a 1-D array of finite seconds, got shape {t.shape}")
    d = np.diff(t)
    if np.any(d < 0):
        i = int(np.argmax(d < 0))
        raise ValueError(f"frame_times must be non-decreasing; t[{i + 1}]={t[i + 1]} < t[{i}]={t[i]}")
    last = np.median(d) if d.size else np.inf
    return t, np.append(t[1:], t[-1] + last)


def average_per_frame(states: np.ndarray, hop_s: float, frame_times: np.ndarray) -> np.ndarray:
    """Average model states over each video frame's span.

    Args:
        states: [S,D] states, S >= 1, state j covering [j*hop_s, (j+1)*hop_s) seconds.
        hop_s: seconds between states (0.02 for whisper/HuBERT/wav2vec2, 0.01 for log-Mel).
        frame_times: float64 [T] start time in seconds of each video frame, non-decreasing.

    Returns:
        float32 [T,D].

    Raises:
        ValueError: no states, hop not positive, or bad frame times (see :func:`frame_spans`).
    """
    return _span_mean(np.asarray(states), hop_s, frame_times).astype(np.float32)


def stats_per_frame(states: np.ndarray, hop_s: float, frame_times: np.ndarray) -> np.ndarray:
    """Statistics pooling of model states over each video frame's span: their mean and their standard
    deviation (population, ``ddof=0``), concatenated (the pooling of x-vectors, Snyder et al. 2018, over the
    states of one frame instead of one utterance). The states counted are those of :func:`average_per_frame`;
    a frame that takes its nearest state (no state centre in its span) or holds one state has std 0.

    Args:
        states, hop_s, frame_times: as :func:`average_per_frame`.

    Returns:
        float32 [T, 2D]: ``[:, :D]`` the mean, ``[:, D:]`` the std.

    Raises:
        ValueError: as :func:`average_per_frame`.
    """
    x = np.asarray(states, dtype=np.float64)
    mean = _span_mean(x, hop_s, frame_times)
    var = np.maximum(_span_mean(x * x, hop_s, frame_times) - mean * mean, 0.0)
    return np.concatenate([mean, np.sqrt(var)], axis=1).astype(np.float32)


def _span_mean(states: np.ndarray, hop_s: float, frame_times: np.ndarray) -> np.ndarray:
    """float64 [T,D] mean of the states whose centre lies in each frame's span (module docstring)."""
    states = np.asarray(states)
    if states.ndim != 2 or states.shape[0] == 0:
        raise ValueError(f"states must be [S,D] with S >= 1, got shape {states.shape}")
    if not hop_s > 0:
        raise ValueError(f"hop_s must be positive, got {hop_s}")
    start, end = frame_spans(frame_times)
    n = states.shape[0]
    centres = (np.arange(n) + 0.5) * hop_s
    lo = np.searchsorted(centres, start, side="left")
    hi = np.searchsorted(centres, end, side="left")
    csum = np.concatenate([np.zeros((1, states.shape[1])), np.cumsum(states, axis=0, dtype=np.float64)])
    count = hi - lo
    out = (csum[hi] - csum[lo]) / np.maximum(count, 1)[:, None]
    empty = count == 0
    if np.any(empty):
        mid = np.where(np.isfinite(end), (start + end) / 2, start)[empty]
        nearest = np.clip(np.rint(mid / hop_s - 0.5), 0, n - 1).astype(np.int64)
        out[empty] = states[nearest]
    return out
