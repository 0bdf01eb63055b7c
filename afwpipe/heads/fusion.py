"""Fusion blocks: one feature vector per frame from the modalities of a clip.

Every block is registered in :data:`~afwpipe.heads.FUSIONS`, built as ``block(in_dims, dim, dropout=…,
**kw)``, has ``out_dim`` and runs ``forward(x, mask, present) -> [B, K, out_dim]`` (inputs as in
:mod:`afwpipe.heads.common`). A head's option ``fusion`` names the block (``train.head_kwargs:
{fusion: gated}``); ``fusion_kwargs`` go to it.

- ``concat`` (default of ``tmf``, ``tcn``, ``mamba``, ``stack``): the features concatenated in
  ``in_dims`` order, padded frames zeroed; no parameters, ``out_dim = ΣD_i``. ``present`` is not used: an
  absent modality enters as the store holds it (zeros after standardisation, :mod:`afwpipe.clips.stats`).
- ``gated``: each modality projected to ``dim`` and squashed, ``hᵢ = tanh(Wᵢxᵢ + bᵢ)``; a scalar gate
  per modality and frame from its own projection, ``aᵢ = uᵢ·hᵢ + cᵢ``; weights ``α = softmax(a)`` over the
  modalities *present* in the frame; ``F = Σᵢ αᵢhᵢ`` (``out_dim = dim``). An absent modality gets weight
  exactly 0, a frame with no modality present gives ``F = 0``. After the gated multimodal unit of Arevalo
  et al. (2017), which gates the tanh projections with sigmoid gates computed from the concatenated inputs;
  afwpipe computes each modality's gate from that modality alone and normalises over the present ones, so
  that dropping a modality equals not having it (the reading is afwpipe's; Shanghai Normal University's
  ABAW10 EXPR report names gated fusion without a formula).
- ``msf`` (:mod:`afwpipe.heads.msf`) and ``xattn`` (:mod:`afwpipe.heads.xattn`) are registered in their
  modules.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._registry import FUSIONS
from .common import zero_frames


def present_stack(present: dict[str, Tensor], names) -> Tensor:
    """``[B, K, M]`` bool: modality ``names[m]`` present in the frame."""
    return torch.stack([present[n] for n in names], dim=-1)


@FUSIONS.register("concat")
class ConcatFusion(nn.Module):
    """Concatenation of the inputs along features, padded frames zeroed (module docstring)."""

    def __init__(self, in_dims: dict[str, int], dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.names = list(in_dims)
        self.out_dim = sum(in_dims.values())

    def forward(self, x: dict[str, Tensor], mask: Tensor, present: dict[str, Tensor]) -> Tensor:
        return torch.cat([zero_frames(x[n], mask) for n in self.names], dim=-1)


@FUSIONS.register("gated")
class GatedFusion(nn.Module):
    """Gated fusion over the present modalities (module docstring).

    Args:
        in_dims: modality -> feature dim.
        dim: width of the projections and of the output.
        dropout: dropout on the fused features.
    """

    def __init__(self, in_dims: dict[str, int], dim: int, dropout: float = 0.0):
        super().__init__()
        self.names = list(in_dims)
        self.out_dim = int(dim)
        self.proj = nn.ModuleDict({n: nn.Linear(d, dim) for n, d in in_dims.items()})
        self.gate = nn.ModuleDict({n: nn.Linear(dim, 1) for n in in_dims})
        self.drop = nn.Dropout(dropout)

    def weights(self, h: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        """``[B, K, M]`` gate weights: softmax over the present modalities, exactly 0 for absent ones (all 0
        in a frame without any)."""
        logits = torch.cat([self.gate[n](h[n]) for n in self.names], dim=-1).float()
        avail = present_stack(present, self.names)
        logits = logits.masked_fill(~avail, torch.finfo(logits.dtype).min)
        return logits.softmax(-1) * avail

    def forward(self, x: dict[str, Tensor], mask: Tensor, present: dict[str, Tensor]) -> Tensor:
        h = {n: torch.tanh(self.proj[n](x[n])) for n in self.names}
        w = self.weights(h, present).to(h[self.names[0]].dtype)
        fused = sum(w[..., i:i + 1] * h[n] for i, n in enumerate(self.names))
        return self.drop(fused)
