"""Video-level readout: a head's per-frame features over a clip pooled into one output per clip.

Every head built on :class:`~afwpipe.heads.common.FusionHead` runs its temporal block over the clip's frames
(``encode -> [B, K, hidden]``); for a video task (one label per video, :mod:`afwpipe.datasets`) a pooling layer
of :data:`POOLINGS` then gives ``[B, hidden]`` and the task's output layer ``[B, C]``. At prediction a video's
clips are averaged (mean of logits) into one output per video (:mod:`afwpipe.task_predict`).

Poolings, over the real frames of the clip (``mask``; padding never counts):

- ``mean``: the masked mean of the frame features;
- ``attention``: attention pooling of Ilse et al. 2018 ("Attention-based deep multiple instance learning",
  ICML, eq. 8, the non-gated form): ``a_t = softmax_t(wᵀ tanh(V h_t))``, ``z = Σ_t a_t h_t``, with ``V``
  ``[L, hidden]`` (L = hidden / 2 here) and ``w`` ``[L]`` learned.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import AfwpipeError
from ..registry import Registry

#: pooling name -> ``builder(hidden)``; forward ``(h [B, K, hidden], mask [B, K] bool) -> [B, hidden]``
POOLINGS = Registry("video pooling", AfwpipeError)


@POOLINGS.register("mean")
class MeanPool(nn.Module):
    """Masked mean over the clip's real frames; a clip without one gives zeros."""

    def __init__(self, hidden: int):
        super().__init__()

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        w = mask.to(h.dtype).unsqueeze(-1)
        return (h * w).sum(1) / w.sum(1).clamp_min(1.0)


@POOLINGS.register("attention")
class AttentionPool(nn.Module):
    """Attention pooling (Ilse et al. 2018, module docstring); padded frames get weight 0."""

    def __init__(self, hidden: int):
        super().__init__()
        inner = max(1, hidden // 2)
        self.v = nn.Linear(hidden, inner)
        self.w = nn.Linear(inner, 1, bias=False)

    def weights(self, h: Tensor, mask: Tensor) -> Tensor:
        """``[B, K]`` attention weights, summing to 1 over each clip's real frames."""
        scores = self.w(torch.tanh(self.v(h))).squeeze(-1)
        scores = scores.masked_fill(~mask, float("-inf"))
        a = torch.softmax(scores, dim=1)
        return torch.nan_to_num(a, nan=0.0)  # a clip without a real frame

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        return (self.weights(h, mask).unsqueeze(-1) * h).sum(1)


class VideoReadout(nn.Module):
    """Pooling then an output layer: ``[B, K, hidden]`` frame features -> ``[B, out]`` one output per clip.

    Args:
        hidden: frame feature width; out: output channels; pool: a name of :data:`POOLINGS`;
        layer: the output layer (``nn.Linear(hidden, out)`` or a mixture of experts).

    Raises:
        AfwpipeError: unknown pooling (the message lists the registered ones).
    """

    def __init__(self, hidden: int, pool: str, layer: nn.Module):
        super().__init__()
        self.pool = POOLINGS.create(str(pool), hidden)
        self.layer = layer

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        return self.layer(self.pool(h, mask))
