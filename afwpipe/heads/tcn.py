"""``tcn``: temporal convolutional head of USTC (ABAW8, CVPRW 2025), after Bai et al. (2018), "An empirical
evaluation of generic convolutional and recurrent networks for sequence modeling".

Fused features (``fusion``, default ``concat``: :mod:`afwpipe.heads.fusion`) → 1×1 projection → residual
blocks of dilated 1-D convolutions (dilations 1, 2, 4, 8 by default) → MLP 512, ReLU, dropout → one output
layer per task. Padded frames are zeroed at the input and after every block, so they look like the
convolution's own zero padding and carry nothing from the padded features into real frames.

``causal=False`` (default): centred kernels (odd ``kernel_size``), frame t sees ``t − r … t + r``.
``causal=True``: every convolution is padded on the left only by ``dilation·(kernel_size − 1)`` frames (the
TCN of Bai et al. 2018, §3.1, and USTC ABAW8), so the output at frame t depends on frames ≤ t alone; the
receptive field is ``1 + (kernel_size − 1)·Σ dilations`` frames into the past. Any kernel size ≥ 1.

The same convolution stack is the ``tcn`` temporal block of :data:`~afwpipe.heads.TEMPORAL`
(:class:`TemporalConvNet`), which the ``stack`` head and ``mamba``'s Mamba-VA recipe put after a fusion block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import AfwpipeError
from ._registry import TEMPORAL, register_head
from .common import FusionHead


class TemporalBlock(nn.Module):
    """``x + Conv1x1(Dropout(ReLU(DilatedConv(x))))`` followed by ReLU; input and output ``[B, C, K]``.

    ``causal``: the dilated convolution sees frames ≤ t only (left padding); else a centred kernel.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float, causal: bool = False):
        super().__init__()
        self.left = dilation * (kernel_size - 1) if causal else 0
        padding = 0 if causal else dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding=padding)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        h = F.pad(x, (self.left, 0)) if self.left else x
        return self.act(x + self.mix(self.drop(self.act(self.conv(h)))))


def check_kernel(kernel_size: int, causal: bool) -> None:
    """Raises AfwpipeError: a non-causal kernel that is even (it would not keep the clip length) or < 1."""
    if kernel_size < 1 or (not causal and kernel_size % 2 != 1):
        raise AfwpipeError(f"tcn: kernel_size must be odd to keep the clip length (or any size ≥ 1 with "
                           f"causal: true), got {kernel_size}")


def temporal_blocks(channels: int, kernel_size: int, dilations: Sequence[int], dropout: float,
                    causal: bool) -> nn.ModuleList:
    """One :class:`TemporalBlock` per dilation."""
    check_kernel(kernel_size, causal)
    return nn.ModuleList(TemporalBlock(channels, kernel_size, int(d), dropout, causal) for d in dilations)


def run_blocks(blocks: nn.ModuleList, h: Tensor, mask: Tensor) -> Tensor:
    """``h [B, C, K]`` through ``blocks``, frames where ``mask [B, K]`` is False zeroed before and after each."""
    keep = mask.unsqueeze(1).to(h.dtype)
    h = h * keep
    for block in blocks:
        h = block(h) * keep
    return h


class TCNHead(FusionHead):
    """Dilated residual TCN head.

    Args:
        in_dims, tasks: see :class:`~afwpipe.heads.common.FusionHead`.
        channels: convolution width (256).
        kernel_size: temporal kernel (3; odd unless ``causal``).
        dilations: one residual block per dilation ((1, 2, 4, 8): receptive field 31 frames with k=3).
        mlp_dim: hidden width of the MLP before the task layers (512, USTC ABAW8).
        dropout: dropout in the blocks and the MLP (0.3).
        causal: left-padded convolutions, output at t from frames ≤ t (module docstring).
        fusion: fusion block before the projection (``concat``; ``gated``, ``msf``, ``xattn``: stacking).
        fusion_dim: width of a non-concat fusion block (default ``channels``); fusion_kwargs: its options.
        experts: output experts per task (:class:`~afwpipe.heads.common.MixtureOfExperts`; 1 = linear).
    """

    def __init__(self, in_dims: dict[str, int], tasks: Sequence[str], channels: int = 256, kernel_size: int = 3,
                 dilations: Sequence[int] = (1, 2, 4, 8), mlp_dim: int = 512, dropout: float = 0.3,
                 causal: bool = False, fusion: str = "concat", fusion_dim: int | None = None,
                 fusion_kwargs: Mapping | None = None, experts: int = 1):
        super().__init__(in_dims, tasks, hidden=mlp_dim, experts=experts)
        check_kernel(kernel_size, causal)
        self.causal = bool(causal)
        width = self.build_fusion(fusion, fusion_dim or channels, dropout, fusion_kwargs)
        self.proj = nn.Conv1d(width, channels, 1)
        self.blocks = temporal_blocks(channels, kernel_size, dilations, dropout, self.causal)
        self.mlp = nn.Sequential(nn.Linear(channels, mlp_dim), nn.ReLU(), nn.Dropout(dropout))

    def encode(self, x: dict[str, Tensor], mask: Tensor, present: dict[str, Tensor]) -> Tensor:
        h = self.proj(self.fuse(x, mask, present).transpose(1, 2))
        return self.mlp(run_blocks(self.blocks, h, mask).transpose(1, 2))


@TEMPORAL.register("tcn")
class TemporalConvNet(nn.Module):
    """The ``tcn`` temporal block: residual dilated convolutions at width ``d_model``; ``[B, K, d_model]``
    in and out, padded frames zeroed before and after every block.

    Args:
        d_model: channels. dropout: in the blocks. kernel_size, dilations, causal: as :class:`TCNHead`.
    """

    def __init__(self, d_model: int, dropout: float = 0.1, kernel_size: int = 3,
                 dilations: Sequence[int] = (1, 2, 4, 8), causal: bool = False):
        super().__init__()
        self.blocks = temporal_blocks(d_model, kernel_size, dilations, dropout, bool(causal))

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        return run_blocks(self.blocks, h.transpose(1, 2), mask).transpose(1, 2)


@register_head("tcn")
def tcn(in_dims: dict[str, int], tasks: Sequence[str], **kw) -> TCNHead:
    return TCNHead(in_dims, tasks, **kw)
