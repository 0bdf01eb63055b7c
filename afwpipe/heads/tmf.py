"""``tmf``: Transformer fusion head of Netease Fuxi (Zhang et al., "Multi-modal facial affective analysis
based on masked autoencoder", ABAW5 CVPRW 2023; and their ABAW6 2024 entry).

Concatenated features → linear projection → Transformer encoder (4 layers, dropout 0.3, padded frames
excluded as keys) → one linear layer per task. Sinusoidal positions are added after the projection
(the clip order matters to the smoothing the encoder learns); set ``pos_encoding=False`` to drop them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._registry import register_head
from .common import FusionHead


def sinusoidal_positions(k: int, dim: int, device=None, dtype=torch.float32) -> Tensor:
    """Positions of Vaswani et al. (2017): ``[k, dim]``, sin on even and cos on odd channels."""
    pos = torch.arange(k, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(k, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe.to(dtype)


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
    """

    def __init__(self, in_dims: dict[str, int], tasks: Sequence[str], d_model: int = 256, n_layers: int = 4,
                 n_heads: int = 4, ff_dim: int | None = None, dropout: float = 0.3, pos_encoding: bool = True):
        super().__init__(in_dims, tasks, hidden=d_model)
        self.proj = nn.Linear(sum(self.in_dims.values()), d_model)
        self.drop = nn.Dropout(dropout)
        self.pos_encoding = pos_encoding
        layer = nn.TransformerEncoderLayer(d_model, n_heads, ff_dim or 4 * d_model, dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)

    def encode(self, x: dict[str, Tensor], mask: Tensor) -> Tensor:
        z = self.proj(self.concat(x, mask))
        if self.pos_encoding:
            z = z + sinusoidal_positions(z.shape[1], z.shape[2], z.device, z.dtype)
        # A clip with no real frame would make every attention row empty (NaN): let it attend to itself.
        padding = ~mask & mask.any(dim=1, keepdim=True)
        return self.encoder(self.drop(z), src_key_padding_mask=padding)


@register_head("tmf")
def tmf(in_dims: dict[str, int], tasks: Sequence[str], **kw) -> TMFHead:
    return TMFHead(in_dims, tasks, **kw)
