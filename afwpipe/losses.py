"""Training losses for the fusion heads, masked so that invalid labels and padded frames never count.

- AU: binary cross-entropy on logits with per-AU positive weights ``#neg / #pos`` (inverse frequency),
  as the ABAW seeds weight rare AUs (Netease Fuxi ABAW5/6, USTC ABAW8).
- EXPR: cross-entropy with class weights inverse to class frequency ("balanced" weights).
- VA: ``2 − CCC_v − CCC_a`` with a differentiable CCC (Lin 1989, population variances), as in the
  ABAW VA baselines and seeds.
- ``mtl_loss``: weighted sum over the tasks present in both the outputs and the targets.

Options the ABAW teams sweep over (``train.focal_gamma``, ``train.logit_adjust_tau``; off by default):

- focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection", arXiv:1708.02002; used for EXPR,
  with modality dropout, by USTC's ABAW10 EXPR entry, a cross-attention Transformer over the modalities;
  USTC's ABAW8 report does not use it; afwpipe also offers it for AU): each frame's term is multiplied by ``(1 − p_t)^γ``, ``p_t`` the probability of the
  true label (sigmoid per AU, softmax for EXPR); the positive / class weights above stay as its α. γ = 0 is
  exactly the weighted BCE / CE.
- logit adjustment (Menon et al. 2021, "Long-tail learning via logit adjustment", ICLR, arXiv:2007.07314;
  HSEmotion ABAW8): the EXPR loss sees ``logits + τ·log(prior)`` with the class prior of the training labels
  (:func:`expr_log_prior`); predictions keep the raw logits, which moves them toward rare classes. It
  replaces the class weights (the paper's loss is the unweighted softmax CE; the train step passes none).

Every loss takes an optional frame mask ``[...]`` bool (False = padded frame) on top of the label's own
invalid markers (AU ``-1``, EXPR ``-1``, VA ``-5``). A batch with nothing valid returns a scalar zero that
is still attached to the graph (``backward()`` works and gives exactly zero gradients, never NaN).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .labels import AU_INVALID, EXPR_INVALID, EXPR_NAMES, TRACKS, VA_INVALID

#: denominator guard of the differentiable CCC; relative effect ~1e-8 on real label variances (~0.1)
CCC_EPS = 1e-8


def au_pos_weights(labels: np.ndarray) -> np.ndarray:
    """Per-AU positive weights ``#negatives / #positives`` over valid training frames.

    Args:
        labels: ``[N, 12]`` int training labels, ``-1`` invalid (any leading shape ``[..., 12]``).

    Returns:
        ``[12]`` float32, for ``pos_weight`` of :func:`au_bce_loss`. An AU with no positive or no negative
        valid label gets 1.0 (no evidence to reweight by).
    """
    labels = np.asarray(labels).reshape(-1, np.shape(labels)[-1])
    valid = labels != AU_INVALID
    pos = np.sum((labels == 1) & valid, axis=0).astype(np.float64)
    neg = np.sum((labels == 0) & valid, axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where((pos > 0) & (neg > 0), neg / pos, 1.0)
    return w.astype(np.float32)


def expr_class_weights(labels: np.ndarray, n_classes: int = len(EXPR_NAMES)) -> np.ndarray:
    """Class weights inverse to frequency: ``N / (C · count_c)`` over valid training frames.

    ``C`` is the number of classes present, so the weights average to 1 over the training frames
    (sklearn's ``class_weight="balanced"``). A class absent from the training labels gets the largest
    present weight (it is at least as rare as the rarest seen one); all classes absent gives ones.

    Args:
        labels: int training labels of any shape, ``-1`` invalid.

    Returns:
        ``[n_classes]`` float32 for ``class_weight`` of :func:`expr_ce_loss`.
    """
    labels = np.asarray(labels).ravel()
    labels = labels[labels != EXPR_INVALID]
    counts = np.bincount(labels, minlength=n_classes)[:n_classes].astype(np.float64)
    present = counts > 0
    if not present.any():
        return np.ones(n_classes, dtype=np.float32)
    w = np.zeros(n_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    w[~present] = w[present].max()
    return w.astype(np.float32)


def expr_log_prior(labels: np.ndarray, n_classes: int = len(EXPR_NAMES)) -> np.ndarray:
    """``log π_c`` of the EXPR class prior over valid training frames, for the logit-adjusted loss
    (Menon et al. 2021, eq. 10: ``ℓ(y, f(x) + τ·log π)``).

    A class absent from the training labels counts as one frame (add-one on the absent classes only), so
    its offset is finite and the lowest. All labels invalid: the uniform prior.

    Args:
        labels: int training labels of any shape, ``-1`` invalid.

    Returns:
        ``[n_classes]`` float32, every entry ≤ 0.
    """
    labels = np.asarray(labels).ravel()
    labels = labels[labels != EXPR_INVALID]
    counts = np.bincount(labels, minlength=n_classes)[:n_classes].astype(np.float64)
    counts = np.where(counts > 0, counts, 1.0)
    return np.log(counts / counts.sum()).astype(np.float32)


def _valid(valid: Tensor, mask: Tensor | None) -> Tensor:
    """Label validity ``[..., C]`` or ``[...]`` combined with a frame mask ``[...]`` (broadcast over C)."""
    if mask is None:
        return valid
    return valid & mask.bool().reshape(tuple(mask.shape) + (1,) * (valid.ndim - mask.ndim))


def _masked_mean(values: Tensor, valid: Tensor, weights: Tensor | None = None) -> Tensor:
    """``Σ w·v / Σ w`` over valid entries; exactly 0 (with a grad_fn, zero gradient) when none is valid."""
    w = valid.to(values.dtype) if weights is None else torch.where(valid, weights, torch.zeros_like(weights))
    total = torch.where(valid, values, torch.zeros_like(values)).mul(w).sum()
    return total / w.sum().clamp_min(torch.finfo(values.dtype).tiny)


def au_bce_loss(logits: Tensor, labels: Tensor, pos_weight: Tensor | np.ndarray | None = None,
                mask: Tensor | None = None, gamma: float = 0.0) -> Tensor:
    """Masked AU binary cross-entropy, mean over valid (frame, AU) entries.

    Args:
        logits: ``[..., 12]`` float logits (e.g. ``[B, K, 12]``).
        labels: ``[..., 12]`` labels in {0, 1}, ``-1`` invalid.
        pos_weight: ``[12]`` positive weights (:func:`au_pos_weights`) or None.
        mask: ``[...]`` bool, False for padded frames, or None.
        gamma: focal γ ≥ 0 (0: plain BCE): each entry's term times ``(1 − p_t)^γ`` with ``p_t = σ(x)`` for a
            positive and ``1 − σ(x)`` for a negative; with ``pos_weight`` w it is torchvision's
            ``sigmoid_focal_loss`` with ``α = w / (1 + w)``, times ``1 + w``.

    Returns:
        Scalar tensor.
    """
    valid = _valid(labels != AU_INVALID, mask)
    if pos_weight is not None:
        pos_weight = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    target = torch.where(valid, labels, torch.zeros_like(labels)).to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
    if gamma:
        p = torch.sigmoid(logits)
        loss = loss * (1.0 - (p * target + (1.0 - p) * (1.0 - target))).pow(gamma)
    return _masked_mean(loss, valid)


def expr_ce_loss(logits: Tensor, labels: Tensor, class_weight: Tensor | np.ndarray | None = None,
                 mask: Tensor | None = None, gamma: float = 0.0,
                 logit_offset: Tensor | np.ndarray | None = None) -> Tensor:
    """Masked EXPR cross-entropy, weighted mean over valid frames (as ``F.cross_entropy(weight=…)``).

    Args:
        logits: ``[..., 8]`` float logits.
        labels: ``[...]`` int labels in ``0..7``, ``-1`` invalid.
        class_weight: ``[8]`` weights (:func:`expr_class_weights`) or None.
        mask: ``[...]`` bool, False for padded frames, or None.
        gamma: focal γ ≥ 0 (0: plain CE): each frame's ``−w_y·log p_y`` times ``(1 − p_y)^γ``, ``p_y`` the
            softmax probability of the true class.
        logit_offset: ``[8]`` added to the logits inside the loss only (``τ·``:func:`expr_log_prior`: the
            logit-adjusted loss of Menon et al. 2021), or None.

    Returns:
        Scalar tensor.
    """
    valid = _valid(labels != EXPR_INVALID, mask)
    target = torch.where(valid, labels, torch.zeros_like(labels)).long()
    if logit_offset is not None:
        logits = logits + torch.as_tensor(logit_offset, dtype=logits.dtype, device=logits.device)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
    if gamma:
        loss = loss * (1.0 - torch.exp(-loss)).pow(gamma)  # exp(−CE) = p_y
    weights = None
    if class_weight is not None:
        weights = torch.as_tensor(class_weight, dtype=logits.dtype, device=logits.device)[target.reshape(-1)]
    return _masked_mean(loss, valid.reshape(-1), weights)


def ccc_torch(x: Tensor, y: Tensor, valid: Tensor | None = None, eps: float = CCC_EPS) -> Tensor:
    """Differentiable CCC of Lin (1989) over the valid entries of 1-D ``x`` and ``y`` (population variances).

    ``2·cov / (var_x + var_y + (μx − μy)² + eps)``. With no valid entry the result is 0 and its gradient
    is 0 (counts are clamped to 1, so no 0/0 appears). Unlike :func:`afwpipe.metrics.ccc`, two identical
    constants give 0 here (eps), which is harmless for training.
    """
    v = torch.ones_like(x, dtype=torch.bool) if valid is None else valid
    w = v.to(x.dtype)
    n = w.sum().clamp_min(1.0)
    x = torch.where(v, x, torch.zeros_like(x))
    y = torch.where(v, y, torch.zeros_like(y))
    mx, my = (x * w).sum() / n, (y * w).sum() / n
    dx, dy = (x - mx) * w, (y - my) * w
    cov = (dx * dy).sum() / n
    var_x, var_y = (dx * dx).sum() / n, (dy * dy).sum() / n
    return 2.0 * cov / (var_x + var_y + (mx - my) ** 2 + eps)


def va_ccc_loss(pred: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """``2 − CCC_v − CCC_a`` over all valid frames of the batch (flattened); each column masked on its own.

    Args:
        pred: ``[..., 2]`` float predictions (valence, arousal).
        labels: ``[..., 2]`` float labels, ``-5`` invalid.
        mask: ``[...]`` bool, False for padded frames, or None.

    Returns:
        Scalar tensor (at least float32, also under fp16/bf16 autocast); a column with no valid frame
        contributes 0 (not 1), so an all-invalid batch gives 0.
    """
    valid = _valid(~torch.isclose(labels, torch.full_like(labels, VA_INVALID)), mask)
    pred = pred.to(torch.promote_types(pred.dtype, torch.float32))  # moments in ≥ fp32 under autocast
    terms = []
    for j in range(pred.shape[-1]):
        vj = valid[..., j].reshape(-1)
        term = 1.0 - ccc_torch(pred[..., j].reshape(-1), labels[..., j].reshape(-1).to(pred.dtype), vj)
        terms.append(torch.where(vj.any(), term, torch.zeros_like(term)))
    return torch.stack(terms).sum()


def mtl_loss(outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], mask: Tensor | None = None, *,
             task_weights: Mapping[str, float] | None = None,
             au_pos_weight: Tensor | np.ndarray | None = None,
             expr_class_weight: Tensor | np.ndarray | None = None, focal_gamma: float = 0.0,
             expr_logit_offset: Tensor | np.ndarray | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Multi-task loss ``Σ_t w_t · L_t`` over the tasks in both ``outputs`` and ``targets``.

    Args:
        outputs: a head's outputs (``au`` logits ``[B, K, 12]``, ``expr`` logits ``[B, K, 8]``, ``va [B, K, 2]``).
        targets: labels of the same tasks (``au [B, K, 12]`` int, ``expr [B, K]`` int, ``va [B, K, 2]`` float),
            with their invalid markers.
        mask: ``[B, K]`` bool, False for padded frames.
        task_weights: task -> weight (default 1.0 each).
        au_pos_weight, expr_class_weight: see :func:`au_bce_loss`, :func:`expr_ce_loss`.
        focal_gamma: focal γ of the AU and EXPR terms (0: BCE / CE); expr_logit_offset: the EXPR loss's logit
            offset (:func:`expr_ce_loss`).

    Returns:
        ``(total, {task: loss})``, scalars. No shared task gives a ValueError.
    """
    tasks = [t for t in TRACKS if t in outputs and t in targets]
    if not tasks:
        raise ValueError(f"mtl_loss: no task in both outputs {sorted(outputs)} and targets {sorted(targets)}")
    parts: dict[str, Tensor] = {}
    if "au" in tasks:
        parts["au"] = au_bce_loss(outputs["au"], targets["au"], au_pos_weight, mask, focal_gamma)
    if "expr" in tasks:
        parts["expr"] = expr_ce_loss(outputs["expr"], targets["expr"], expr_class_weight, mask, focal_gamma,
                                     expr_logit_offset)
    if "va" in tasks:
        parts["va"] = va_ccc_loss(outputs["va"], targets["va"], mask)
    weights = task_weights or {}
    total = sum(weights.get(t, 1.0) * parts[t] for t in tasks)
    return total, parts
