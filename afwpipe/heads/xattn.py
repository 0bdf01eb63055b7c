"""``xattn``: cross-modal attention head, after MAVEN (ABAW8: bi-directional attention over every pair of
visual, audio and text streams) and USTC's ABAW10 EXPR / AU entry (a cross-attention Transformer between
modalities, trained with modality dropout); in the line of Tsai et al. (2019), "Multimodal Transformer for
unaligned multimodal language sequences" (MulT: crossmodal attention, queries of one modality over the keys
and values of another).

1. Per-encoder projections ``hᵢ = Wᵢxᵢ`` to ``d_model``.
2. ``xattn_layers`` cross-modal layers: for every ordered pair (i, j), i ≠ j (so both directions of
   every pair), modality i's frames attend over modality j's frames of the clip (multi-head attention,
   pre-norm); ``hᵢ ← hᵢ + Σ_{j≠i} CrossAttn_{i←j}(LN(hᵢ), LN(hⱼ))``, then ``hᵢ ← hᵢ + FFN(LN(hᵢ))``.
3. The streams fused per frame (``fusion``: ``gated`` (default), :class:`~afwpipe.heads.fusion.GatedFusion`
   over the present streams; or ``concat``, the streams concatenated and projected).
4. A temporal Transformer over the clip (the ``transformer`` block of :mod:`afwpipe.heads.tmf`, positions
   added, padded frames excluded as keys) → one output layer per task.

Masks: a modality absent in a frame (``present`` False: no face, outside the audio track, dropped by
modality dropout; and every padded frame) is never a key of any attention, its stream is zeroed before the
fusion, and ``gated`` gives it weight 0. When modality j is absent in the whole clip, ``CrossAttn_{i←j}`` is
0 (no key to attend to), so the outputs equal those of an ``xattn`` head built without j (same weights).
A frame with every modality absent fuses to 0 (``gated``) and still gets finite outputs from its clip.
Steps 1–3 are the ``xattn`` fusion block of :data:`~afwpipe.heads.FUSIONS` (:class:`CrossModalFusion`), so
``tcn`` with ``fusion: xattn`` or ``stack: [xattn, tcn]`` put a TCN after it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import AfwpipeError
from ._registry import FUSIONS, register_head
from .common import FusionHead, zero_frames
from .fusion import GatedFusion
from .tmf import TemporalTransformer

#: ``xattn``'s ``fusion`` choices: how the attended streams become one vector per frame
XATTN_FUSIONS = ("gated", "concat")


class CrossAttention(nn.Module):
    """Multi-head attention of one modality's frames (queries) over another's (keys, values).

    ``forward(hq [B, K, d], hk [B, K, d], key_ok [B, K] bool) -> [B, K, d]``: only frames with ``key_ok`` are
    keys; a clip row without any key gives exactly 0 (never NaN).
    """

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        if dim % n_heads:
            raise AfwpipeError(f"xattn: d_model {dim} is not divisible by n_heads {n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, hq: Tensor, hk: Tensor, key_ok: Tensor) -> Tensor:
        b, k, d = hq.shape
        q = self.q(hq).view(b, k, self.n_heads, d // self.n_heads).transpose(1, 2)
        kk, v = self.kv(hk).view(b, k, 2, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        any_key = key_ok.any(dim=1)
        allowed = (key_ok | ~any_key[:, None])[:, None, None, :]  # a row without keys attends to all, then zeroed
        out = F.scaled_dot_product_attention(q, kk, v, attn_mask=allowed,
                                             dropout_p=self.dropout if self.training else 0.0)
        out = self.out(out.transpose(1, 2).reshape(b, k, d))
        return out * any_key[:, None, None].to(out.dtype)


def pair_key(query: str, key: str) -> str:
    """The ModuleDict key of the attention of ``query``'s frames over ``key``'s."""
    return f"{query}__{key}"


class CrossModalLayer(nn.Module):
    """One layer of step 2 of the module docstring over the streams ``names``."""

    def __init__(self, names: Sequence[str], dim: int, n_heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.names = list(names)
        self.norm = nn.ModuleDict({n: nn.LayerNorm(dim) for n in self.names})
        self.cross = nn.ModuleDict({pair_key(a, b): CrossAttention(dim, n_heads, dropout)
                                    for a in self.names for b in self.names if a != b})
        self.ff_norm = nn.ModuleDict({n: nn.LayerNorm(dim) for n in self.names})
        self.ff = nn.ModuleDict({n: nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout),
                                                  nn.Linear(ff_dim, dim)) for n in self.names})
        self.drop = nn.Dropout(dropout)

    def forward(self, h: dict[str, Tensor], ok: dict[str, Tensor]) -> dict[str, Tensor]:
        normed = {n: self.norm[n](h[n]) for n in self.names}
        out = {}
        for a in self.names:
            z = h[a]
            for b in self.names:
                if b != a:
                    z = z + self.drop(self.cross[pair_key(a, b)](normed[a], normed[b], ok[b]))
            out[a] = z + self.drop(self.ff[a](self.ff_norm[a](z)))
        return out


@FUSIONS.register("xattn")
class CrossModalFusion(nn.Module):
    """The ``xattn`` fusion block: steps 1–3 of the module docstring; ``out_dim = dim``.

    Args:
        in_dims: modality -> feature dim. dim: ``d_model``. dropout: attention, FFN and fusion dropout.
        n_heads: attention heads (4). n_layers: cross-modal layers (1). ff_dim: FFN width (``4·dim``).
        fusion: ``gated`` or ``concat`` (step 3).

    Raises:
        AfwpipeError: ``fusion`` not in :data:`XATTN_FUSIONS`, ``dim`` not divisible by ``n_heads``.
    """

    def __init__(self, in_dims: dict[str, int], dim: int, dropout: float = 0.1, n_heads: int = 4,
                 n_layers: int = 1, ff_dim: int | None = None, fusion: str = "gated"):
        super().__init__()
        if fusion not in XATTN_FUSIONS:
            raise AfwpipeError(f"xattn: fusion must be one of {', '.join(XATTN_FUSIONS)}, got {fusion!r}")
        self.names = list(in_dims)
        self.out_dim = int(dim)
        self.proj = nn.ModuleDict({n: nn.Linear(d, dim) for n, d in in_dims.items()})
        self.layers = nn.ModuleList(CrossModalLayer(self.names, dim, n_heads, ff_dim or 4 * dim, dropout)
                                    for _ in range(int(n_layers)))
        self.norm = nn.ModuleDict({n: nn.LayerNorm(dim) for n in self.names})
        self.fusion = fusion
        if fusion == "gated":
            self.combine = GatedFusion({n: dim for n in self.names}, dim, dropout)
        else:
            self.combine = nn.Linear(len(self.names) * dim, dim)

    def forward(self, x: dict[str, Tensor], mask: Tensor, present: dict[str, Tensor]) -> Tensor:
        ok = {n: present[n] & mask for n in self.names}
        h = {n: self.proj[n](zero_frames(x[n], ok[n])) for n in self.names}
        for layer in self.layers:
            h = layer(h, ok)
        h = {n: zero_frames(self.norm[n](h[n]), ok[n]) for n in self.names}
        if self.fusion == "gated":
            return self.combine(h, mask, ok)
        return self.combine(torch.cat([h[n] for n in self.names], dim=-1))


class XAttnHead(FusionHead):
    """Cross-modal attention head (module docstring).

    Args:
        in_dims, tasks: see :class:`~afwpipe.heads.common.FusionHead`; one stream per entry of ``in_dims``.
        d_model: width (128). n_heads: attention heads, cross-modal and temporal (4).
        xattn_layers: cross-modal layers (1). n_layers: temporal Transformer layers (2).
        ff_dim: feed-forward width (``4·d_model``). dropout: everywhere (0.1). pos_encoding: temporal positions.
        fusion: ``gated`` (default) or ``concat``: how the streams become one vector per frame.
        experts: output experts per task (:class:`~afwpipe.heads.common.MixtureOfExperts`; 1 = linear).
    """

    def __init__(self, in_dims: dict[str, int], tasks: Sequence[str], d_model: int = 128, n_heads: int = 4,
                 xattn_layers: int = 1, n_layers: int = 2, ff_dim: int | None = None, dropout: float = 0.1,
                 pos_encoding: bool = True, fusion: str = "gated", experts: int = 1):
        super().__init__(in_dims, tasks, hidden=d_model, experts=experts)
        self.build_fusion("xattn", d_model, dropout, {"n_heads": n_heads, "n_layers": xattn_layers,
                                                      "ff_dim": ff_dim, "fusion": fusion})
        self.temporal = TemporalTransformer(d_model, dropout, n_layers, n_heads, ff_dim, pos_encoding)

    def encode(self, x: dict[str, Tensor], mask: Tensor, present: dict[str, Tensor]) -> Tensor:
        return self.temporal(self.fuse(x, mask, present), mask)


@register_head("xattn")
def xattn(in_dims: dict[str, int], tasks: Sequence[str], **kw) -> XAttnHead:
    return XAttnHead(in_dims, tasks, **kw)
