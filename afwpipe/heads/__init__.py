"""Fusion heads: cached per-frame features of one or more encoders in, per-frame AU/EXPR/VA outputs out.

Heads: ``tmf`` (Transformer fusion, Netease Fuxi ABAW5/6), ``tcn`` (dilated temporal convolutions,
USTC ABAW8), ``msf`` (multi-scale windowed self-attention with learned modality weights, USTC ABAW8).
Use ``create_head(name, in_dims, tasks, **kw)``; ``list_heads()`` names them.
"""

from . import msf, tcn, tmf  # noqa: F401  (registration)
from ._registry import HEADS, create_head, is_head, list_heads, register_head
from .common import TASK_DIMS, FusionHead

__all__ = ["HEADS", "FusionHead", "TASK_DIMS", "create_head", "is_head", "list_heads", "register_head"]
