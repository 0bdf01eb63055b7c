"""What a fine-tune's one linear output learns: an Aff-Wild2 track, or a frame task the dataset declares.

* Aff-Wild2 (an index without ``tasks``): ``au`` (12 logits, BCE with positive weights), ``expr`` (8 logits, CE
  with class weights; focal with ``focal_gamma``), ``va`` (2 values through tanh, ``2 - CCC_v - CCC_a``); the
  validation score of the heads (:func:`afwpipe.train.score`).
* A declared frame task of a generic index (``image_csv``, ``frame_csv``; :class:`~afwpipe.datasets.base.TaskSpec`):
  one output per class or target (no activation on the values), the loss of the heads on declared tasks
  (:func:`afwpipe.task_losses.task_loss`: class CE weighted inverse to the class frequencies, multilabel BCE,
  regression ``1 - CCC`` per target) and the task's headline score (:data:`afwpipe.task_metrics.HEADLINE`:
  class UAR, multilabel F1, regression CCC). A video task has no per-frame label to fine-tune on and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..datasets.base import TaskSpec, index_tasks, is_generic
from ..errors import TrainError
from ..records import IndexFile
from ..labels import TRACKS, valid_mask
from ..losses import au_bce_loss, au_pos_weights, expr_ce_loss, expr_class_weights, va_ccc_loss
from ..task_losses import task_loss
from ..task_metrics import HEADLINE, decide, task_scores
from ..train import score

#: outputs of the linear layer per Aff-Wild2 track
OUT_DIMS = {"au": 12, "expr": 8, "va": 2}


@dataclass(frozen=True)
class FinetuneTask:
    """The task of one fine-tune.

    Attributes:
        name: ``au`` / ``expr`` / ``va``, or a declared task's name.
        spec: the declared task, or None for an Aff-Wild2 track.
    """

    name: str
    spec: TaskSpec | None = None

    @property
    def out_dim(self) -> int:
        """Outputs of the linear layer: 12 / 8 / 2 for a track, one per class or target of a declared task."""
        return OUT_DIMS[self.name] if self.spec is None else len(self.spec.names)

    def valid(self, labels: np.ndarray) -> np.ndarray:
        """bool ``[T]``: the frames whose label is valid (``labels.zarr`` ``[T]`` / ``[T, K]``)."""
        return valid_mask(labels, self.name) if self.spec is None else self.spec.valid(labels)

    def class_weights(self, labels: np.ndarray) -> np.ndarray | None:
        """Weights from the training frames' labels: AU positive weights, EXPR or ``class`` task class weights
        (inverse frequency, sklearn's ``balanced``), else None."""
        if self.spec is None:
            return au_pos_weights(labels) if self.name == "au" else expr_class_weights(labels) if self.name == "expr" else None
        if self.spec.type != "class":
            return None
        return expr_class_weights(np.asarray(labels, np.int64), len(self.spec.names))

    def activate(self, out: torch.Tensor) -> torch.Tensor:
        """The model's output from the linear layer's: tanh for VA, unchanged otherwise."""
        return torch.tanh(out) if self.spec is None and self.name == "va" else out

    def loss(self, out: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None,
             focal_gamma: float = 0.0) -> torch.Tensor:
        """The loss of a batch of frames whose labels are all valid.

        Args:
            out: ``[B, out_dim]`` float outputs.
            y: ``[B]`` class indices (EXPR, a ``class`` task), else ``[B, out_dim]`` 0/1 or values.
            weights: :meth:`class_weights` as a tensor, or None.
            focal_gamma: focal γ of AU / EXPR (0 for a declared task).
        """
        out = out.float()
        if self.spec is not None:
            return task_loss(self.spec, out, y, torch.ones(len(y), dtype=torch.bool, device=y.device), weights)
        if self.name == "au":
            return au_bce_loss(out, y, weights, gamma=focal_gamma)
        if self.name == "expr":
            return expr_ce_loss(out, y, weights, gamma=focal_gamma)
        return va_ccc_loss(out, y.float())

    def predictions(self, out: torch.Tensor) -> torch.Tensor:
        """Probabilities or values to score: sigmoid (AU, multilabel), softmax (EXPR, class), else the values."""
        kind = self.spec.type if self.spec is not None else {"au": "multilabel", "expr": "class"}.get(self.name)
        return torch.sigmoid(out) if kind == "multilabel" else torch.softmax(out, -1) if kind == "class" else out

    def score(self, preds: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> dict:
        """Validation scores over every frame of every video of ``preds`` (:meth:`predictions`, ``[n_v, out_dim]``)
        against ``labels`` (``[n_v, ...]``, valid): ``{"score": float, <name>: {...}}``, ``score`` the headline."""
        if self.spec is None:
            return score({n: {self.name: preds[n]} for n in preds}, {n: {self.name: labels[n]} for n in preds},
                         (self.name,))
        p = np.concatenate([preds[n] for n in preds])
        y = np.concatenate([labels[n] for n in preds])
        scores = task_scores(self.spec, decide(self.spec, p), y)
        return {"score": float(scores[HEADLINE[self.spec.type]]), self.name: scores}


def finetune_task(index: IndexFile, name: str) -> FinetuneTask:
    """The :class:`FinetuneTask` ``name`` of an index: a track of an Aff-Wild2 index, a declared task of a generic one.

    Raises:
        TrainError: ``name`` is no task of the index (the message lists them), or a declared video task.
    """
    if not is_generic(index):
        if name not in TRACKS:
            raise TrainError(f"finetune: task {name!r} is not one of {', '.join(TRACKS)} (the tasks of "
                             f"{index.dataset})")
        return FinetuneTask(name)
    tasks = index_tasks(index)
    if name not in tasks:
        raise TrainError(f"finetune: task {name!r} is not declared by {index.dataset}; its tasks: "
                         f"{', '.join(tasks)}")
    if tasks[name].level != "frame":
        raise TrainError(f"finetune: task {name} of {index.dataset} is a video task; a fine-tune learns "
                         "from frame labels (a frame task, e.g. of an image_csv dataset)")
    return FinetuneTask(name, tasks[name])


__all__ = ["FinetuneTask", "OUT_DIMS", "finetune_task"]
