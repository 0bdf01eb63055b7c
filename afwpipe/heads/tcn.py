"""``tcn``: temporal convolutional head of USTC (ABAW8, CVPRW 2025), after Bai et al. (2018), "An empirical
evaluation of generic convolutional and recurrent networks for sequence modeling", but non-causal.

Concatenated features → 1×1 projection → residual blocks of dilated 1-D convolutions (same length,
centred kernels, dilations 1, 2, 4, 8 by default) → MLP 512, ReLU, dropout → one linear layer per task.
Padded frames are zeroed at the input and after every block, so they look like the convolution's own
zero padding and carry nothing from the padded features into real frames.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..errors import AfwpipeError
from ._registry import register_head
from .common import FusionHead


class TemporalBlock(nn.Module):
    """``x + Conv1x1(Dropout(ReLU(DilatedConv(x))))`` followed by ReLU; input and output ``[B, C, K]``."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.mix(self.drop(self.act(self.conv(x)))))


class TCNHead(FusionHead):
    """Dilated residual TCN head.

    Args:
        in_dims, tasks: see :class:`~afwpipe.heads.common.FusionHead`.
        channels: convolution width (256).
        kernel_size: odd temporal kernel (3).
        dilations: one residual block per dilation ((1, 2, 4, 8): receptive field 31 frames with k=3).
        mlp_dim: hidden width of the MLP before the task layers (512, USTC ABAW8).
        dropout: dropout in the blocks and the MLP (0.3).
    """

    def __init__(self, in_dims: dict[str, int], tasks: Sequence[str], channels: int = 256, kernel_size: int = 3,
                 dilations: Sequence[int] = (1, 2, 4, 8), mlp_dim: int = 512, dropout: float = 0.3):
        super().__init__(in_dims, tasks, hidden=mlp_dim)
        if kernel_size % 2 != 1:
            raise AfwpipeError(f"tcn: kernel_size must be odd to keep the clip length, got {kernel_size}")
        self.proj = nn.Conv1d(sum(self.in_dims.values()), channels, 1)
        self.blocks = nn.ModuleList(TemporalBlock(channels, kernel_size, d, dropout) for d in dilations)
        self.mlp = nn.Sequential(nn.Linear(channels, mlp_dim), nn.ReLU(), nn.Dropout(dropout))

    def encode(self, x: dict[str, Tensor], mask: Tensor) -> Tensor:
        keep = mask.unsqueeze(1).to(self.proj.weight.dtype)  # [B, 1, K]
        h = self.proj(self.concat(x, mask).transpose(1, 2)) * keep
        for block in self.blocks:
            h = block(h) * keep
        return self.mlp(h.transpose(1, 2))


@register_head("tcn")
def tcn(in_dims: dict[str, int], tasks: Sequence[str], **kw) -> TCNHead:
    return TCNHead(in_dims, tasks, **kw)
