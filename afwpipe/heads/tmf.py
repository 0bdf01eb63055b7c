"""``tmf``: Transformer fusion head of Netease Fuxi (Zhang et al., "Multi-modal facial affective analysis
based on masked autoencoder", ABAW5 CVPRW 2023; and their ABAW6 2024 entry).

Fused features (``fusion``, default ``concat``: :mod:`afwpipe.heads.fusion`) → linear projection →
Transformer encoder (4 layers, dropout 0.3, padded frames excluded as keys) → one output layer per task.
Sinusoidal positions are added after the projection (the clip order matters to the smoothing the encoder
learns); set ``pos_encoding=False`` to drop them.

The same encoder is the ``transformer`` temporal block of :data:`~afwpipe.heads.TEMPORAL`
(:class:`TemporalTransformer`), used by ``xattn`` and the ``stack`` head.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ._registry import TEMPORAL, register_head
from .common import FusionHead


def sinusoidal_positions(k: int, dim: int, device=None, dtype=torch.float32) -> Tensor:
    """Positions of Vaswani et al. (2017): ``[k, dim]``, sin on even and cos on odd channels."""
    pos = torch.arange(k, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(k, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe.to(dtype)


def transformer_encoder(d_model: int, n_layers: int, n_heads: int, ff_dim: int | None, dropout: float) -> nn.Module:
    """Pre-norm ``nn.TransformerEncoder`` (batch first) with a final LayerNorm."""
    layer = nn.TransformerEncoderLayer(d_model, n_heads, ff_dim or 4 * d_model, dropout,
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)


def encode_frames(encoder: nn.Module, z: Tensor, mask: Tensor, pos_encoding: bool) -> Tensor:
    """``z [B, K, d]`` (+ sinusoidal positions) through ``encoder`` with padded frames excluded as keys."""
    if pos_encoding:
        z = z + sinusoidal_positions(z.shape[1], z.shape[2], z.device, z.dtype)
    # A clip with no real frame would make every attention row empty (NaN): let it attend to itself.
    padding = ~mask & mask.any(dim=1, keepdim=True)
    return encoder(z, src_key_padding_mask=padding)


class TMFHead(FusionHead):
    """Transformer fusion head.

    Args:
        in_dims, tasks: see :class:`~afwpipe.heads.common.FusionHead`.
        d_model: projection / Transformer width (256).
        n_layers: encoder layers (4, Fuxi ABAW5).
        n_heads: attention heads (4).
        ff_dim: feed-forward width (default ``4·d_model``).
        dropout: dropout in the projection and the encoder layers (0.3, Fuxi ABAW5).
        pos_encoding: add sinusoidal positions.
        fusion: fusion block before the projection (``concat``; ``gated``, ``msf``, ``xattn``: stacking).
        fusion_dim: width of a non-concat fusion block (default ``d_model``); fusion_kwargs: its options.
        experts: output experts per task (:class:`~afwpipe.heads.common.MixtureOfExperts`; 1 = linear).
    """

    def __init__(self, in_dims: dict[str, int], tasks: Sequence[str], d_model: int = 256, n_layers: int = 4,
                 n_heads: int = 4, ff_dim: int | None = None, dropout: float = 0.3, pos_encoding: bool = True,
                 fusion: str = "concat", fusion_dim: int | None = None, fusion_kwargs: Mapping | None = None,
                 experts: int = 1):
        super().__init__(in_dims, tasks, hidden=d_model, experts=experts)
        width = self.build_fusion(fusion, fusion_dim or d_model, dropout, fusion_kwargs)
        self.proj = nn.Linear(width, d_model)
        self.drop = nn.Dropout(dropout)
        self.pos_encoding = pos_encoding
        self.encoder = transformer_encoder(d_model, n_layers, n_heads, ff_dim, dropout)

    def encode(self, x: dict[str, Tensor], mask: Tensor, present: dict[str, Tensor]) -> Tensor:
        z = self.proj(self.fuse(x, mask, present))
        if self.pos_encoding:  # positions before the dropout, as before the blocks existed
            z = z + sinusoidal_positions(z.shape[1], z.shape[2], z.device, z.dtype)
        return encode_frames(self.encoder, self.drop(z), mask, pos_encoding=False)


@TEMPORAL.register("transformer")
class TemporalTransformer(nn.Module):
    """The ``transformer`` temporal block: sinusoidal positions, then a pre-norm Transformer encoder over the
    clip's frames with padded frames excluded as keys; ``[B, K, d_model]`` in and out.

    Args:
        d_model: width. dropout: in the layers (0.1). n_layers (2), n_heads (4), ff_dim (``4·d_model``),
        pos_encoding (True): as :class:`TMFHead`.
    """

    def __init__(self, d_model: int, dropout: float = 0.1, n_layers: int = 2, n_heads: int = 4,
                 ff_dim: int | None = None, pos_encoding: bool = True):
        super().__init__()
        self.pos_encoding = pos_encoding
        self.encoder = transformer_encoder(d_model, n_layers, n_heads, ff_dim, dropout)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        return encode_frames(self.encoder, h, mask, self.pos_encoding)


@register_head("tmf")
def tmf(in_dims: dict[str, int], tasks: Sequence[str], **kw) -> TMFHead:
    return TMFHead(in_dims, tasks, **kw)
