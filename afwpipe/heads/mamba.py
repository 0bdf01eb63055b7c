"""``mamba``: a state-space temporal head, built on the Mamba of ``transformers`` (``MambaModel``,
``MambaConfig``; Gu & Dao 2023, "Mamba: Linear-time sequence modeling with selective state spaces").

Fused features (``fusion``, default ``concat``: :mod:`afwpipe.heads.fusion`) → linear projection to
``d_model`` → ``n_layers`` Mamba blocks (selective scan, ``state_size`` 16, ``expand`` 2, causal
depthwise convolution of ``conv_kernel`` 4 frames; RMS-normalised output) → one output layer per task.
``transformers`` (5.x, ``integrations.hub_kernels``) calls the fused kernels of the ``mamba-ssm`` and
``causal-conv1d`` packages when they are installed and the inputs are on their device (a GPU), else its own
PyTorch scan (every CPU run); the model is built from its config, so no weights are downloaded.

The scan runs forward in time: the output at frame t depends on frames ≤ t only, and padding at the end
of a clip never reaches a real frame (padded frames are also zeroed before and after the blocks and passed as
``attention_mask``). ``bidirectional: true`` adds a second Mamba over the clip's real frames in reverse
order and sums the two (each real frame then sees the whole clip; padding still never enters).

Where the reports use Mamba: Mamba-VA (ABAW8: MAE features, a TCN, then Mamba; here ``stack: [tcn, mamba]``
or ``head: mamba`` after ``fusion``), RAS (ABAW10 VA: Mamba over text embeddings of VLM behaviour
descriptions), USTC (ABAW10 AU: Vision-Mamba).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import AfwpipeError
from ._registry import TEMPORAL, register_head
from .common import FusionHead, zero_frames


def reverse_real_frames(mask: Tensor) -> Tensor:
    """``[B, K]`` int64 gather index that reverses the order of each row's real frames (``mask`` True) and
    leaves padded positions where they are; applying it twice is the identity."""
    b, k = mask.shape
    pos = torch.arange(k, device=mask.device).expand(b, k)
    rank = mask.long().cumsum(1) - 1  # rank of a real frame among its row's real frames
    n = mask.long().sum(1, keepdim=True)
    real_pos = torch.argsort((~mask).long(), dim=1, stable=True)  # real positions first, in order
    target = real_pos.gather(1, (n - 1 - rank).clamp(min=0))
    return torch.where(mask, target, pos)


def mamba_model(d_model: int, n_layers: int, state_size: int, expand: int, conv_kernel: int) -> nn.Module:
    """A randomly initialised ``transformers.MambaModel`` over ``inputs_embeds`` (its token table has one row).

    Raises:
        AfwpipeError: the installed ``transformers`` has no Mamba.
    """
    try:
        from transformers import MambaConfig, MambaModel
    except ImportError as e:  # pragma: no cover - transformers is a runtime dependency
        raise AfwpipeError(f"mamba: needs transformers' MambaModel ({e}); pip install 'transformers>=4.39'") from None
    config = MambaConfig(vocab_size=1, hidden_size=int(d_model), num_hidden_layers=int(n_layers),
                         state_size=int(state_size), expand=int(expand), conv_kernel=int(conv_kernel), use_cache=False)
    return MambaModel(config)


@TEMPORAL.register("mamba")
class MambaBlocks(nn.Module):
    """The ``mamba`` temporal block: ``[B, K, d_model]`` in and out (module docstring).

    Args:
        d_model: width. dropout: on the block's input (0.1). n_layers: Mamba blocks (2).
        state_size (16), expand (2), conv_kernel (4): ``MambaConfig``'s. bidirectional: add a reversed scan.
    """

    def __init__(self, d_model: int, dropout: float = 0.1, n_layers: int = 2, state_size: int = 16,
                 expand: int = 2, conv_kernel: int = 4, bidirectional: bool = False):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.forward_scan = mamba_model(d_model, n_layers, state_size, expand, conv_kernel)
        self.backward_scan = (mamba_model(d_model, n_layers, state_size, expand, conv_kernel)
                              if bidirectional else None)

    @staticmethod
    def _scan(model: nn.Module, h: Tensor, mask: Tensor) -> Tensor:
        return model(inputs_embeds=h, attention_mask=mask.long(), use_cache=False).last_hidden_state

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        h = zero_frames(self.drop(h), mask)
        out = self._scan(self.forward_scan, h, mask)
        if self.backward_scan is not None:
            idx = reverse_real_frames(mask).unsqueeze(-1).expand_as(h)
            back = self._scan(self.backward_scan, h.gather(1, idx), mask)
            out = out + back.gather(1, idx)
        return zero_frames(out, mask)


class MambaHead(FusionHead):
    """Mamba temporal head (module docstring).

    Args:
        in_dims, tasks: see :class:`~afwpipe.heads.common.FusionHead`.
        d_model: projection / Mamba width (128). n_layers: Mamba blocks (2).
        state_size, expand, conv_kernel, bidirectional: :class:`MambaBlocks`.
        dropout: on the projection's output (0.1).
        fusion: fusion block before the projection (``concat``; ``gated``, ``msf``, ``xattn``: stacking).
        fusion_dim: width of a non-concat fusion block (default ``d_model``); fusion_kwargs: its options.
        experts: output experts per task (:class:`~afwpipe.heads.common.MixtureOfExperts`; 1 = linear).
    """

    def __init__(self, in_dims: dict[str, int], tasks: Sequence[str], d_model: int = 128, n_layers: int = 2,
                 state_size: int = 16, expand: int = 2, conv_kernel: int = 4, bidirectional: bool = False,
                 dropout: float = 0.1, fusion: str = "concat", fusion_dim: int | None = None,
                 fusion_kwargs: Mapping | None = None, experts: int = 1):
        super().__init__(in_dims, tasks, hidden=d_model, experts=experts)
        width = self.build_fusion(fusion, fusion_dim or d_model, dropout, fusion_kwargs)
        self.proj = nn.Linear(width, d_model)
        self.temporal = MambaBlocks(d_model, dropout, n_layers, state_size, expand, conv_kernel, bidirectional)

    def encode(self, x: dict[str, Tensor], mask: Tensor, present: dict[str, Tensor]) -> Tensor:
        return self.temporal(self.proj(self.fuse(x, mask, present)), mask)


@register_head("mamba")
def mamba(in_dims: dict[str, int], tasks: Sequence[str], **kw) -> MambaHead:
    return MambaHead(in_dims, tasks, **kw)
