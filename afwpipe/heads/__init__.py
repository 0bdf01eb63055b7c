"""Fusion heads: cached per-frame features of one or more encoders in, per-frame AU/EXPR/VA outputs out.

Heads: ``tmf`` (Transformer fusion, Netease Fuxi ABAW5/6), ``tcn`` (dilated temporal convolutions, causal
as an option, USTC ABAW8), ``msf`` (multi-scale windowed self-attention with learned modality weights, USTC
ABAW8), ``xattn`` (bi-directional cross-modal attention between every pair of encoders, then a temporal
Transformer; MAVEN ABAW8, USTC ABAW10), ``mamba`` (``transformers``' Mamba; Mamba-VA ABAW8, RAS ABAW10) and
``stack`` (a fusion block, temporal blocks and an MLP composed by name). Options of every head: ``fusion``
(:mod:`.fusion`) and ``experts`` (:mod:`.common`).
Use ``create_head(name, in_dims, tasks, **kw)``; ``list_heads()`` names them.
"""

from . import fusion, mamba, msf, stack, tcn, tmf, xattn  # noqa: F401  (registration)
from ._registry import FUSIONS, HEADS, TEMPORAL, create_head, is_head, list_heads, register_head
from .common import TASK_DIMS, FusionHead

__all__ = ["FUSIONS", "HEADS", "TEMPORAL", "TASK_DIMS", "FusionHead", "create_head", "is_head", "list_heads",
           "register_head"]
