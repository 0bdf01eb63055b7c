"""ABAW evaluation metrics: per-AU binary F1, EXPR macro F1, VA concordance correlation (CCC).

Definitions follow the ABAW challenge papers (Kollias et al., ABAW3 2022 .. ABAW8 2025); no official
script is public, so the conventions are spelled out here:

- AU: mean over the 12 AUs of the binary F1 of each AU (positive class 1), threshold applied by the caller.
- EXPR: macro F1 over the 8 classes ``0..7``; a class absent from both truth and predictions scores 0,
  exactly as ``sklearn.metrics.f1_score(average="macro", labels=range(8), zero_division=0)``.
- VA: mean of CCC(valence) and CCC(arousal), CCC of Lin (1989) with population (biased) variances.

Invalid frames (AU ``-1``, EXPR ``-1``, VA ``-5``; see :mod:`afwpipe.labels`) are excluded from every
metric. When nothing is left to score the functions raise :class:`ValueError` instead of returning NaN.
"""

from __future__ import annotations

import numpy as np

from .labels import AU_INVALID, AU_NAMES, EXPR_INVALID, EXPR_NAMES, VA_INVALID, VA_NAMES


def f1_binary(pred: np.ndarray, true: np.ndarray) -> float:
    """F1 of the positive class for binary vectors.

    Args:
        pred: ``[N]`` predictions in {0, 1} (bool or int).
        true: ``[N]`` ground truth in {0, 1}, already free of invalid entries.

    Returns:
        ``2·TP / (2·TP + FP + FN)``; 0.0 when there is no positive in either vector (sklearn's
        ``zero_division=0``).
    """
    pred = np.asarray(pred).astype(bool).ravel()
    true = np.asarray(true).astype(bool).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"f1_binary: pred has {pred.size} entries, true has {true.size}")
    tp = int(np.count_nonzero(pred & true))
    denom = 2 * tp + int(np.count_nonzero(pred & ~true)) + int(np.count_nonzero(~pred & true))
    return 0.0 if denom == 0 else 2.0 * tp / denom


def au_f1(pred: np.ndarray, true: np.ndarray) -> tuple[float, np.ndarray]:
    """AU score: mean over AUs of the binary F1.

    Args:
        pred: ``[T, 12]`` binary predictions (0/1 or bool).
        true: ``[T, 12]`` int labels in {0, 1}, ``-1`` marks an invalid entry. Aff-Wild2 marks all twelve
            columns of an unannotated frame; masking is per entry, so a partly marked row still counts
            for its valid columns.

    Returns:
        ``(mean F1, per-AU F1 [12] float64)`` in the order of :data:`afwpipe.labels.AU_NAMES`.

    Raises:
        ValueError: on shape mismatch, or when an AU has no valid frame (its F1 would be undefined).
    """
    pred = np.asarray(pred)
    true = np.asarray(true)
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"au_f1: expected pred and true of equal shape [T, {len(AU_NAMES)}], "
                         f"got {pred.shape} and {true.shape}")
    valid = true != AU_INVALID
    per_au = np.zeros(true.shape[1], dtype=np.float64)
    for j in range(true.shape[1]):
        if not valid[:, j].any():
            name = AU_NAMES[j] if true.shape[1] == len(AU_NAMES) else f"column {j}"
            raise ValueError(f"au_f1: {name} has no valid frame (all labels are {AU_INVALID})")
        per_au[j] = f1_binary(pred[valid[:, j], j], true[valid[:, j], j])
    return float(per_au.mean()), per_au


def expr_f1(pred: np.ndarray, true: np.ndarray, n_classes: int = len(EXPR_NAMES)) -> tuple[float, np.ndarray]:
    """EXPR score: macro F1 over ``n_classes`` classes (8 in Aff-Wild2).

    Args:
        pred: ``[T]`` int predicted classes in ``0..n_classes-1``.
        true: ``[T]`` int labels, ``-1`` marks an invalid frame.
        n_classes: number of classes averaged over, present or not.

    Returns:
        ``(macro F1, per-class F1 [n_classes] float64)``; a class absent from both the valid truth and the
        predictions scores 0 and still counts in the mean (sklearn ``labels=range(8), zero_division=0``).

    Raises:
        ValueError: on shape mismatch, a prediction outside ``0..n_classes-1`` on a valid frame, a label
            outside ``{-1, 0..n_classes-1}``, or no valid frame.
    """
    pred = np.asarray(pred).ravel()
    true = np.asarray(true).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"expr_f1: pred has {pred.size} frames, true has {true.size}")
    valid = true != EXPR_INVALID
    if not valid.any():
        raise ValueError(f"expr_f1: no valid frame (all {true.size} labels are {EXPR_INVALID})")
    pred, true = pred[valid], true[valid]
    for what, arr in (("prediction", pred), ("label", true)):
        bad = (arr < 0) | (arr >= n_classes)
        if bad.any():
            raise ValueError(f"expr_f1: {what} {arr[bad][0]} outside 0..{n_classes - 1}")
    per_class = np.array([f1_binary(pred == c, true == c) for c in range(n_classes)], dtype=np.float64)
    return float(per_class.mean()), per_class


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Concordance correlation coefficient of Lin (1989), population variances.

    ``CCC = 2·cov(x, y) / (var(x) + var(y) + (mean(x) − mean(y))²)`` with ``cov``/``var`` divided by N.

    Degenerate cases: the denominator is 0 only when x and y are both constant and equal, i.e. identical
    sequences; CCC is then defined as 1.0 (perfect agreement). A constant prediction against a varying
    truth gives 0 (cov is 0, the denominator is positive), and so do two constants with different means.

    Args:
        x, y: ``[N]`` float arrays, N ≥ 1, already free of invalid entries.

    Raises:
        ValueError: on shape mismatch or empty input.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"ccc: x has {x.size} entries, y has {y.size}")
    if x.size == 0:
        raise ValueError("ccc: empty input")
    mx, my = x.mean(), y.mean()
    cov = np.mean((x - mx) * (y - my))
    denom = x.var() + y.var() + (mx - my) ** 2
    if denom == 0.0:
        return 1.0
    return float(2.0 * cov / denom)


def va_ccc(pred: np.ndarray, true: np.ndarray) -> tuple[float, float, float]:
    """VA score: mean of CCC(valence) and CCC(arousal).

    Args:
        pred: ``[T, 2]`` float predictions (valence, arousal), nominally in [-1, 1].
        true: ``[T, 2]`` float labels, ``-5`` marks an invalid entry (masked per column).

    Returns:
        ``(mean CCC, CCC valence, CCC arousal)``; see :func:`ccc` for the degenerate cases.

    Raises:
        ValueError: on shape mismatch or when a column has no valid frame.
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 2 or pred.shape[1] != len(VA_NAMES):
        raise ValueError(f"va_ccc: expected pred and true of shape [T, 2], got {pred.shape} and {true.shape}")
    scores = []
    for j, name in enumerate(VA_NAMES):
        valid = ~np.isclose(true[:, j], VA_INVALID)
        if not valid.any():
            raise ValueError(f"va_ccc: {name} has no valid frame (all labels are {VA_INVALID:g})")
        scores.append(ccc(pred[valid, j], true[valid, j]))
    return float(np.mean(scores)), scores[0], scores[1]
