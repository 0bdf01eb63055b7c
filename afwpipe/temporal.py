"""Operations along time on per-frame outputs (numpy in, numpy out): overlapping-window averaging,
nearest-frame fill and smoothing.

Order used by afwpipe (its own; docs/postprocess.md): overlapping-window
inference averaged per frame (:func:`window_average`) → frames without a face take the nearest frame
with one (:func:`fill_nearest`) → smoothing along time per track (:func:`smooth`) → decisions
(:mod:`afwpipe.decisions`).

Smoothing runs through ``scipy.ndimage`` along axis 0 (time) with ``mode="nearest"`` (edges repeat the
first / last frame).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: Gaussian σ in frames per task: AU 5, EXPR 25, VA 25: afwpipe's defaults, not values from a report
#: (USTC's ABAW8 report does not smooth; docs/postprocess.md, "Smoothing").
SMOOTH_SIGMA = {"au": 5.0, "expr": 25.0, "va": 25.0}
#: Median / mean window in frames per task: AU 10, EXPR 25, VA 50 (afwpipe's defaults, as the σ).
SMOOTH_WINDOW = {"au": 10, "expr": 25, "va": 50}
SMOOTH_METHODS = ("gaussian", "median", "mean")


def fill_nearest(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Replace frames without a face by the nearest frame with one.

    Args:
        values: ``[T, ...]`` per-frame features or predictions (any dtype).
        present: ``[T]`` bool, True where a face was found.

    Returns:
        A new array like ``values``. At equal distance the earlier frame wins. When no frame has a face
        the values are returned unchanged (a copy): there is nothing to fill from; callers keep ``present``
        to know it.

    Raises:
        ValueError: when ``present`` is not ``[T]``.
    """
    values = np.asarray(values)
    present = np.asarray(present, dtype=bool)
    if present.shape != values.shape[:1]:
        raise ValueError(f"fill_nearest: present has shape {present.shape}, expected ({values.shape[0]},)")
    idx = np.flatnonzero(present)
    if idx.size == 0 or idx.size == present.size:
        return values.copy()
    t = np.arange(present.size)
    pos = np.searchsorted(idx, t)  # first present frame at or after t
    right = idx[np.minimum(pos, idx.size - 1)]
    left = idx[np.maximum(pos - 1, 0)]
    # A frame before the first face has left == right; one after the last has right == left.
    source = np.where(np.abs(t - left) <= np.abs(right - t), left, right)
    source[present] = t[present]
    return values[source]


def smooth(values: np.ndarray, method: str = "gaussian", *, sigma: float | None = None,
           window: int | None = None, task: str | None = None) -> np.ndarray:
    """Smooth per-frame values along time (axis 0).

    Args:
        values: ``[T]`` or ``[T, C]`` float (probabilities, logits or VA values).
        method: ``"gaussian"`` (``scipy.ndimage.gaussian_filter1d``, σ in frames, truncated at 4σ),
            ``"median"`` (``median_filter``, window × 1) or ``"mean"`` (``uniform_filter1d``, window).
            The window covers frames ``t − w//2 … t + (w−1)//2`` (scipy's centring); for an even window
            the median is the upper of the two middle values (scipy's rank filter), not their mean.
        sigma: Gaussian σ in frames; default :data:`SMOOTH_SIGMA` of ``task``.
        window: median/mean window in frames; default :data:`SMOOTH_WINDOW` of ``task``.
        task: ``au``, ``expr`` or ``va``, for the defaults.

    Returns:
        ``float64`` array of the same shape, edges handled with ``mode="nearest"``.

    Raises:
        ValueError: unknown method, or neither an explicit parameter nor a task to take it from.
    """
    if method not in SMOOTH_METHODS:
        raise ValueError(f"smooth: unknown method {method!r}; use one of {', '.join(SMOOTH_METHODS)}")
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] == 0:
        return values.copy()
    param, defaults = ("sigma", SMOOTH_SIGMA) if method == "gaussian" else ("window", SMOOTH_WINDOW)
    size = sigma if method == "gaussian" else window
    if size is None:
        if task not in defaults:
            raise ValueError(f"smooth: give {param}= or task= (one of {', '.join(defaults)}), got task={task!r}")
        size = defaults[task]
    if method == "gaussian":
        return ndimage.gaussian_filter1d(values, float(size), axis=0, mode="nearest")
    if int(size) < 1:
        raise ValueError(f"smooth: window must be ≥ 1 frame, got {size}")
    if method == "median":
        return ndimage.median_filter(values, size=(int(size),) + (1,) * (values.ndim - 1), mode="nearest")
    return ndimage.uniform_filter1d(values, int(size), axis=0, mode="nearest")


def window_average(windows: Sequence[tuple[int, np.ndarray]], n_frames: int) -> np.ndarray:
    """Per-frame mean of the predictions of overlapping windows (clips).

    Args:
        windows: ``(start, pred)`` pairs; ``pred [K, ...]`` covers frames ``start … start+K−1``. Rows past
            ``n_frames`` (a padded last clip) are dropped.
        n_frames: T, the video's frame count.

    Returns:
        ``[T, ...]`` float64 mean over the windows covering each frame.

    Raises:
        ValueError: no window, a negative start, mismatched trailing shapes, or frames no window covers
            (the message gives how many and the first one).
    """
    if not windows:
        raise ValueError("window_average: no window given")
    tail = np.shape(windows[0][1])[1:]
    total = np.zeros((n_frames,) + tail)
    count = np.zeros(n_frames)
    for start, pred in windows:
        pred = np.asarray(pred, dtype=np.float64)
        if start < 0 or pred.shape[1:] != tail:
            raise ValueError(f"window_average: window at {start} with shape {pred.shape}; expected start ≥ 0 "
                             f"and shape [K, {', '.join(map(str, tail))}]")
        stop = min(start + pred.shape[0], n_frames)
        if stop > start:
            total[start:stop] += pred[: stop - start]
            count[start:stop] += 1
    if not count.all():
        gaps = np.flatnonzero(count == 0)
        raise ValueError(f"window_average: {gaps.size} of {n_frames} frames are in no window (first: {gaps[0]})")
    return total / count.reshape((-1,) + (1,) * len(tail))
