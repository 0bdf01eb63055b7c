"""Masked losses of a dataset's declared tasks by type (:class:`afwpipe.datasets.base.TaskSpec`), summed over tasks.

- ``class``: cross-entropy weighted inverse to the training frequency of each class (sklearn's
  ``class_weight="balanced"``, :func:`afwpipe.losses.expr_class_weights`), so the rare classes count for the UAR;
- ``multilabel``: binary cross-entropy per class;
- ``regression``: a frame task ``1 − CCC`` per target over the batch's valid frames (the VA loss of the ABAW
  entries, :func:`afwpipe.losses.ccc_torch`); a video task the mean squared error (a batch holds a handful of
  videos, too few for a stable CCC).

Rows (frames of a frame task, clips of a video task) whose label is invalid or padded are left out
(``batch["valid"]``, :mod:`afwpipe.clips.collate`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .datasets.base import TaskSpec
from .losses import _masked_mean, ccc_torch, expr_class_weights


def class_weights(task: TaskSpec, labels: np.ndarray) -> np.ndarray | None:
    """``[C]`` balanced class weights of a ``class`` task from its training labels (``-1`` invalid), else None."""
    if task.type != "class":
        return None
    return expr_class_weights(np.asarray(labels, np.int64), len(task.names))


def task_loss(task: TaskSpec, out: Tensor, labels: Tensor, valid: Tensor, weight: Tensor | None = None) -> Tensor:
    """The masked loss of one task (module docstring).

    Args:
        out: the head's outputs: ``[B, K, C]`` (frame task) or ``[B, C]`` (video task), logits or values.
        labels: ``[B, K]`` / ``[B]`` class indices, or ``[B, K, C]`` / ``[B, C]`` 0/1 or values (NaN invalid).
        valid: ``[B, K]`` / ``[B]`` bool, True where the label is valid (and the frame real).
        weight: ``[C]`` class weights of a ``class`` task (:func:`class_weights`) or None.

    Returns:
        Scalar tensor; exactly 0 (zero gradient) when nothing is valid.
    """
    if task.type == "class":
        target = torch.where(valid, labels, torch.zeros_like(labels)).long().reshape(-1)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), target, reduction="none")
        w = None if weight is None else weight.to(out.dtype)[target]
        return _masked_mean(loss, valid.reshape(-1), w)
    ok = valid.unsqueeze(-1).expand_as(out)
    target = torch.where(ok, labels.to(out.dtype), torch.zeros_like(out))
    if task.type == "multilabel":
        return _masked_mean(F.binary_cross_entropy_with_logits(out, target, reduction="none"), ok)
    if task.level == "video":
        return _masked_mean((out - target) ** 2, ok)
    cols = [1.0 - ccc_torch(out[..., j].reshape(-1), target[..., j].reshape(-1), ok[..., j].reshape(-1))
            for j in range(out.shape[-1])]
    return torch.stack(cols).mean() if valid.any() else out.sum() * 0.0


def tasks_loss(tasks: Mapping[str, TaskSpec], outputs: Mapping[str, Tensor], batch: Mapping,
               weights: Mapping[str, Tensor | None] | None = None) -> Tensor:
    """Sum of :func:`task_loss` over ``tasks`` for a batch of :mod:`afwpipe.clips.collate` (``labels``, ``valid``)."""
    weights = weights or {}
    return sum(task_loss(t, outputs[n].float(), batch["labels"][n], batch["valid"][n], weights.get(n))
               for n, t in tasks.items())
