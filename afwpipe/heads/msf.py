"""``msf``: multi-scale windowed self-attention fusion of USTC (ABAW8, CVPRW 2025).

The paper writes the fused feature as ``F(t) = Σᵢ αᵢ·Aᵢ(t) + βᵢ·Vᵢ(t)`` over modalities i. Our reading,
since the paper gives no code:

- ``Vᵢ(t) = Wᵢ·xᵢ(t)``: modality i's features projected to ``d_model`` (the "value" stream, a residual path).
- ``Aᵢ(t)``: modality i's attended features. For each window size w, multi-head self-attention over
  ``LayerNorm(Vᵢ)`` where frame t attends only to frames s with ``|t − s| ≤ w // 2`` (a band mask) that
  are real (key padding mask); the outputs of all window sizes are concatenated and projected back to
  ``d_model``: ``Aᵢ = W_o·[Attn_w1(Vᵢ); …; Attn_wS(Vᵢ)]``.
- ``α = softmax(a)``, ``β = softmax(b)`` over modalities, ``a`` and ``b`` learned vectors initialised to 0
  (equal weights), so both sums are convex combinations across modalities.

Then ``LayerNorm(F)`` → one linear layer per task. Each modality of ``in_dims`` is its own stream
(pass ``{"convnext": 1024, "whisper": 512}``, not a concatenation). ``F`` is also the ``msf`` fusion block
of :data:`~afwpipe.heads.FUSIONS` (:class:`MSFFusion`): ``tcn`` with ``fusion: msf`` is USTC's msf → TCN
→ MLP stack. The head's weights sit under ``fusion.`` in its state dict.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import AfwpipeError
from ._registry import FUSIONS, register_head
from .common import FusionHead, zero_frames


def window_attention_mask(mask: Tensor, window: int) -> Tensor:
    """Boolean attention mask ``[B, 1, K, K]`` (True = may attend) for a centred window of ``window`` frames.

    Query t sees key s when ``|t − s| ≤ window // 2`` and s is a real frame; every frame also sees itself,
    so no row is empty (a clip without real frames attends each frame to itself; real queries never see
    padding).
    """
    k = mask.shape[1]
    idx = torch.arange(k, device=mask.device)
    band = (idx[:, None] - idx[None, :]).abs() <= window // 2
    eye = torch.eye(k, dtype=torch.bool, device=mask.device)
    return ((band[None] & mask[:, None, :]) | eye[None]).unsqueeze(1)


class WindowedSelfAttention(nn.Module):
    """Multi-head self-attention under a given boolean mask; input and output ``[B, K, d]``."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise AfwpipeError(f"msf: d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.dropout = dropout

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        b, k, d = x.shape
        q, kk, v = self.qkv(x).view(b, k, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kk, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).reshape(b, k, d)


class ModalityStream(nn.Module):
    """One modality: ``Vᵢ = Wᵢ·xᵢ`` and ``Aᵢ`` = projected concatenation of windowed attentions."""

    def __init__(self, in_dim: int, d_model: int, n_windows: int, n_heads: int, dropout: float):
        super().__init__()
        self.value = nn.Linear(in_dim, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.attn = nn.ModuleList(WindowedSelfAttention(d_model, n_heads, dropout) for _ in range(n_windows))
        self.out = nn.Linear(n_windows * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, masks: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        v = self.value(x)
        h = self.norm(v)
        a = self.out(torch.cat([att(h, m) for att, m in zip(self.attn, masks)], dim=-1))
        return self.drop(a), v


@FUSIONS.register("msf")
class MSFFusion(nn.Module):
    """The ``msf`` fusion block: ``LayerNorm(Σᵢ αᵢ·Aᵢ + βᵢ·Vᵢ)`` over the streams of ``in_dims`` (module
    docstring); ``out_dim = dim``. ``present`` is not used (an absent modality enters as stored, as in ``concat``).

    Args:
        in_dims: one stream per entry. dim: stream width (``d_model``). dropout: attention and output dropout.
        windows: attention window sizes in frames. n_heads: attention heads per window.
    """

    def __init__(self, in_dims: dict[str, int], dim: int, dropout: float = 0.1,
                 windows: Sequence[int] = (5, 15, 31), n_heads: int = 4):
        super().__init__()
        if not windows or min(windows) < 1:
            raise AfwpipeError(f"msf: windows must be positive frame counts, got {list(windows)}")
        self.out_dim = int(dim)
        self.windows = tuple(int(w) for w in windows)
        self.streams = nn.ModuleDict(
            {n: ModalityStream(d, dim, len(self.windows), n_heads, dropout) for n, d in in_dims.items()})
        self.alpha_logits = nn.Parameter(torch.zeros(len(in_dims)))
        self.beta_logits = nn.Parameter(torch.zeros(len(in_dims)))
        self.norm = nn.LayerNorm(dim)

    def modality_weights(self) -> tuple[Tensor, Tensor]:
        """``(α [M], β [M])``, each softmax-normalised over the modalities in ``in_dims`` order."""
        return self.alpha_logits.softmax(0), self.beta_logits.softmax(0)

    def forward(self, x: dict[str, Tensor], mask: Tensor, present: dict[str, Tensor]) -> Tensor:
        masks = [window_attention_mask(mask, w) for w in self.windows]
        alpha, beta = self.modality_weights()
        fused = 0
        for i, (name, stream) in enumerate(self.streams.items()):
            a, v = stream(zero_frames(x[name], mask), masks)
            fused = fused + alpha[i] * a + beta[i] * v
        return self.norm(fused)


class MSFHead(FusionHead):
    """Multi-scale windowed self-attention fusion head: :class:`MSFFusion`, then one output layer per task.

    Args:
        in_dims, tasks: see :class:`~afwpipe.heads.common.FusionHead`; one stream per entry of ``in_dims``.
        d_model: stream width (128).
        windows: attention window sizes in frames ((5, 15, 31): short, medium, long context).
        n_heads: attention heads per window (4).
        dropout: attention and output dropout (0.1).
        experts: output experts per task (:class:`~afwpipe.heads.common.MixtureOfExperts`; 1 = linear).

    ``msf`` then a TCN (USTC ABAW8's stack) is ``tcn`` with ``fusion: msf`` or the ``stack`` head.
    """

    def __init__(self, in_dims: dict[str, int], tasks: Sequence[str], d_model: int = 128,
                 windows: Sequence[int] = (5, 15, 31), n_heads: int = 4, dropout: float = 0.1, experts: int = 1):
        super().__init__(in_dims, tasks, hidden=d_model, experts=experts)
        self.build_fusion("msf", d_model, dropout, {"windows": windows, "n_heads": n_heads})

    def modality_weights(self) -> tuple[Tensor, Tensor]:
        """``(α [M], β [M])`` of the fusion block (:meth:`MSFFusion.modality_weights`)."""
        return self.fusion.modality_weights()

    def encode(self, x: dict[str, Tensor], mask: Tensor, present: dict[str, Tensor]) -> Tensor:
        return self.fuse(x, mask, present)


@register_head("msf")
def msf(in_dims: dict[str, int], tasks: Sequence[str], **kw) -> MSFHead:
    return MSFHead(in_dims, tasks, **kw)
