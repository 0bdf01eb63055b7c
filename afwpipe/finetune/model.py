"""The trainable model of a fine-tune: a visual encoder of the registry plus one linear output, its optimizer and
its schedule (timm's factory, not our own); the output's size, loss and score are its task's
(:mod:`afwpipe.finetune.tasks`).

* :class:`FinetuneNet`: uint8 crops ``[B, S, S, 3]`` -> the encoder's own preprocessing (``preprocess``:
  resize to its input size, its mean / std; the same code ``extract`` runs) -> its features ``[B, D]`` ->
  ``nn.Linear(D, 12 | 8 | 2 | C)`` (VA through tanh; ``C`` the classes or targets of a declared task).
* :func:`build_optimizer`: timm ``create_optimizer_v2(backbone, "adamw", layer_decay=...)`` (layer-wise lr
  decay of BEiT / MAE fine-tuning: block ``i`` of ``L`` gets ``lr · decay^(L - i)``), the output layer added at
  full lr; a backbone without timm's ``group_matcher`` gets no layer decay (the returned note says so).
* :func:`build_scheduler`: timm ``CosineLRScheduler`` per optimizer step, linear warm-up.
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn

from ..encoders.base import VisualEncoder
from .tasks import FinetuneTask

log = logging.getLogger(__name__)


class FinetuneNet(nn.Module):
    """A registry visual encoder with one linear output.

    Args:
        encoder: a :class:`~afwpipe.encoders.base.VisualEncoder` with a torch ``model`` (fine-tuned in place).
        task: the fine-tune's task (:class:`~afwpipe.finetune.tasks.FinetuneTask`; a name: that Aff-Wild2 track).

    ``forward(x uint8 [B, S, S, 3]) -> [B, task.out_dim]`` float (logits or values; VA in [-1, 1]).
    """

    def __init__(self, encoder: VisualEncoder, task: FinetuneTask | str):
        super().__init__()
        if not isinstance(getattr(encoder, "model", None), nn.Module):
            raise TypeError(f"{encoder.name}: no torch model to fine-tune")
        self.backbone = encoder.model
        self.encoder = encoder  # not a Module: its ``model`` is ``backbone``
        self.task = task if isinstance(task, FinetuneTask) else FinetuneTask(task)
        self.head = nn.Linear(encoder.dim, self.task.out_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, S, S, 3]`` -> the encoder's ``[B, D]`` features (as ``encode_crops`` computes them)."""
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        return self.encoder.forward(self.encoder.preprocess(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.task.activate(self.head(self.features(x).float()))


def build_optimizer(net: FinetuneNet, lr: float, weight_decay: float,
                    layer_decay: float | None) -> tuple[torch.optim.Optimizer, str]:
    """AdamW over the backbone (timm's factory, with ``layer_decay`` when the backbone has timm's
    ``group_matcher``) and the output layer (full lr). Returns the optimizer and a note on the layer decay
    applied (recorded with the run)."""
    from timm.optim import create_optimizer_v2

    note = "off"
    if layer_decay is not None and not hasattr(net.backbone, "group_matcher"):
        note = (f"not applied: {type(net.backbone).__name__} has no timm group_matcher (layer decay "
                f"{layer_decay} asked); every layer at the same lr")
        log.warning("finetune: layer decay %s", note)
        layer_decay = None
    elif layer_decay is not None:
        note = f"{layer_decay} (timm create_optimizer_v2, the model's group_matcher)"
    opt = create_optimizer_v2(net.backbone, opt="adamw", lr=lr, weight_decay=weight_decay, layer_decay=layer_decay)
    decay = [p for p in net.head.parameters() if p.ndim > 1]
    no_decay = [p for p in net.head.parameters() if p.ndim <= 1]
    opt.add_param_group({"params": decay, "weight_decay": weight_decay, "lr_scale": 1.0})
    opt.add_param_group({"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0})
    return opt, note


def build_scheduler(opt: torch.optim.Optimizer, total_steps: int, lr: float, warmup: float, min_lr_ratio: float):
    """timm ``CosineLRScheduler`` over ``total_steps`` optimizer steps (``step_update(n)`` after step ``n``),
    linear warm-up over ``warmup · total_steps`` steps from ``lr / 100``; ``lr_scale`` of each group applies."""
    from timm.scheduler import CosineLRScheduler

    warm = int(round(warmup * total_steps))
    return CosineLRScheduler(opt, t_initial=max(1, total_steps - warm), lr_min=lr * min_lr_ratio,
                             warmup_t=warm, warmup_lr_init=lr / 100, warmup_prefix=True, t_in_epochs=False)


__all__ = ["FinetuneNet", "build_optimizer", "build_scheduler"]
