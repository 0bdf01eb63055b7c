"""From per-frame scores to decisions, and across folds (numpy in, numpy out): AU thresholds (fixed or
tuned for F1), fold voting (AU majority per AU, EXPR majority class, VA mean) and soft averaging.

Sources: fold voting as in Netease Fuxi's ABAW5/6 entries (they vote over the five fold models). Tuning
per-AU thresholds on out-of-fold frames is afwpipe's own: no ABAW report cited here tunes AU thresholds;
docs/postprocess.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .labels import AU_INVALID
from .metrics import f1_binary

#: Default AU threshold grid of :func:`tune_au_thresholds`: 0.10, 0.15, …, 0.90.
AU_THRESHOLD_GRID = np.round(np.arange(0.1, 0.95, 0.05), 10)


#: where a system's AU thresholds came from (``thresholds_from`` in post/systems.json and eval/metrics.json)
THRESHOLDS_FIXED = "fixed"
THRESHOLDS_OOF = "out-of-fold frames"
THRESHOLDS_DEFAULT = "0.5 fallback (no out-of-fold frame)"
THRESHOLDS_SCORED = "scored frames (optimistic)"


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
    # preference order on ties; the distance rounded so that float noise does not order equally far
    # thresholds (0.7 - 0.5 < 0.5 - 0.3 in float64 would otherwise prefer 0.7)
    order = np.lexsort((grid, np.round(np.abs(grid - 0.5), 9)))
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
