"""Post-processing of per-frame predictions: window averaging, nearest-frame fill, temporal smoothing,
AU thresholds and fold voting (numpy in, numpy out).

Order used by the ABAW seeds (Netease Fuxi ABAW5/6, USTC ABAW8) and by afwpipe's predict stage:
overlapping-window inference averaged per frame (:func:`window_average`) → frames without a face take the
nearest frame with one (:func:`fill_nearest`) → smoothing along time per task (:func:`smooth`) → AU
thresholds (0.5 or :func:`tune_au_thresholds`) → fold voting (:func:`vote_au`, :func:`vote_expr`,
:func:`vote_va`) or soft averaging (:func:`soft_average`) before thresholding.

Smoothing runs through ``scipy.ndimage`` along axis 0 (time) with ``mode="nearest"`` (edges repeat the
first / last frame).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .labels import AU_INVALID
from .metrics import f1_binary

#: Gaussian σ in frames per task: AU 5, EXPR 25, VA 25 (ABAW seeds, Fuxi ABAW5/6 and USTC ABAW8;
#: docs/postprocess.md, "Smoothing").
SMOOTH_SIGMA = {"au": 5.0, "expr": 25.0, "va": 25.0}
#: Median / mean window in frames per task: AU 10, EXPR 25, VA 50 (same sources).
SMOOTH_WINDOW = {"au": 10, "expr": 25, "va": 50}
SMOOTH_METHODS = ("gaussian", "median", "mean")
#: Default AU threshold grid of :func:`tune_au_thresholds`: 0.10, 0.15, …, 0.90.
AU_THRESHOLD_GRID = np.round(np.arange(0.1, 0.95, 0.05), 10)


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


def binarize_au(prob: np.ndarray, thresholds: float | np.ndarray = 0.5) -> np.ndarray:
    """AU decisions ``prob ≥ threshold`` as int64 ``[T, 12]``; ``thresholds`` scalar or ``[12]``."""
    return (np.asarray(prob) >= np.asarray(thresholds)).astype(np.int64)


def tune_au_thresholds(prob: np.ndarray, true: np.ndarray, grid: np.ndarray = AU_THRESHOLD_GRID) -> np.ndarray:
    """Per-AU threshold from ``grid`` maximising that AU's F1 on the given frames (keep them apart from the
    frames the result is scored on: :func:`afwpipe.postprocess.tune_thresholds` passes out-of-fold frames).

    Args:
        prob: ``[T, 12]`` AU probabilities.
        true: ``[T, 12]`` labels in {0, 1}, ``-1`` invalid (masked per entry).
        grid: candidate thresholds; a frame is positive when ``prob ≥ threshold``.

    Returns:
        ``[12]`` float64. Ties between thresholds go to the one closest to 0.5 (then the lower one), so a
        flat F1 keeps the default; an AU with no valid frame gets 0.5.
    """
    prob, true = np.asarray(prob, dtype=np.float64), np.asarray(true)
    grid = np.asarray(grid, dtype=np.float64)
    if prob.shape != true.shape or prob.ndim != 2:
        raise ValueError(f"tune_au_thresholds: prob {prob.shape} and true {true.shape} must be equal [T, 12]")
    order = np.lexsort((grid, np.abs(grid - 0.5)))  # preference order on ties
    out = np.full(prob.shape[1], 0.5)
    for j in range(prob.shape[1]):
        valid = true[:, j] != AU_INVALID
        if not valid.any():
            continue
        f1 = np.array([f1_binary(prob[valid, j] >= th, true[valid, j]) for th in grid[order]])
        out[j] = grid[order][int(np.argmax(f1))]
    return out


def vote_au(preds: Sequence[np.ndarray], tie: int = 1) -> np.ndarray:
    """Majority vote per frame and AU over binary fold predictions.

    Args:
        preds: list of ``[T, 12]`` binary arrays (one per fold / model).
        tie: decision when exactly half the voters say 1 (even count). Default 1: AUs are rare and F1
            rewards recall there; pass 0 for a strict majority.

    Returns:
        ``[T, 12]`` int64 in {0, 1}.
    """
    stack = _stack(preds, "vote_au").astype(bool)
    twice_yes = 2 * stack.sum(axis=0)
    n = stack.shape[0]
    return np.where(twice_yes == n, int(tie), twice_yes > n).astype(np.int64)


def vote_expr(preds: Sequence[np.ndarray], probs: Sequence[np.ndarray] | None = None, n_classes: int = 8) -> np.ndarray:
    """Majority class per frame over fold predictions.

    Args:
        preds: list of ``[T]`` int class predictions in ``0..n_classes-1``.
        probs: optional list of ``[T, n_classes]`` probabilities of the same models, to break ties.
        n_classes: number of classes (8).

    Returns:
        ``[T]`` int64. Ties among the most voted classes go to the one with the highest summed probability
        when ``probs`` is given (then the lowest index), otherwise to the lowest class index.
    """
    stack = _stack(preds, "vote_expr").astype(np.int64)
    if stack.min(initial=0) < 0 or stack.max(initial=0) >= n_classes:
        raise ValueError(f"vote_expr: predictions must lie in 0..{n_classes - 1}")
    counts = np.zeros((stack.shape[1], n_classes), dtype=np.int64)
    for p in stack:
        counts[np.arange(p.size), p] += 1
    tied = counts == counts.max(axis=1, keepdims=True)
    if probs is None:
        return np.argmax(tied, axis=1)
    score = _stack(probs, "vote_expr probs").sum(axis=0)
    return np.argmax(np.where(tied, score, -np.inf), axis=1)


def vote_va(preds: Sequence[np.ndarray]) -> np.ndarray:
    """VA fold voting: the per-frame mean of ``[T, 2]`` predictions (float64)."""
    return _stack(preds, "vote_va").astype(np.float64).mean(axis=0)


def soft_average(probs: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """(Weighted) mean of per-frame probabilities of several models, e.g. ``[T, 12]`` or ``[T, 8]``; float64.

    Threshold (AU) or argmax (EXPR) the result afterwards.
    """
    stack = _stack(probs, "soft_average").astype(np.float64)
    return np.average(stack, axis=0, weights=weights)


def _stack(arrays: Sequence[np.ndarray], who: str) -> np.ndarray:
    if len(arrays) == 0:
        raise ValueError(f"{who}: no prediction given")
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"{who}: predictions differ in shape: {sorted(shapes)}")
    return np.stack([np.asarray(a) for a in arrays])
