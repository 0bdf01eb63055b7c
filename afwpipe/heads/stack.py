"""``stack``: a head composed of registered blocks, so a combination the reports use needs no new head.

``fusion block → linear projection to d_model → temporal blocks, in order → MLP → one output layer per task``

- ``stack``: a list of block names. The first may name a fusion block of :data:`~afwpipe.heads.FUSIONS`
  (``concat``, ``gated``, ``msf``, ``xattn``); otherwise the ``fusion`` option (``concat``) fuses. The rest
  name temporal blocks of :data:`~afwpipe.heads.TEMPORAL` (``tcn``, ``transformer``, ``mamba``), applied in
  order, each ``[B, K, d_model]`` to ``[B, K, d_model]`` under the same frame mask, so padding stays out of
  every block.
- ``blocks``: options per block name, e.g. ``{tcn: {causal: true, dilations: [1, 2, 4]}, msf: {windows:
  [5, 15]}}`` (a name used twice gets the same options).
- ``mlp_dim``: width of the ReLU MLP before the output layers (0: none); ``experts``: output experts per task.

Examples (``train.head: stack``, ``train.head_kwargs``): USTC ABAW8's msf fusion, TCN and MLP is
``{stack: [msf, tcn]}``; Mamba-VA (ABAW8: TCN then Mamba) is ``{stack: [tcn, mamba]}``; MAVEN / USTC
ABAW10's cross-modal attention before a causal TCN is ``{stack: [xattn, tcn], blocks: {tcn: {causal: true}}}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from ..errors import AfwpipeError
from ._registry import FUSIONS, TEMPORAL, register_head
from .common import FusionHead


class StackHead(FusionHead):
    """A fusion block, temporal blocks and an MLP (module docstring).

    Args:
        in_dims, tasks: see :class:`~afwpipe.heads.common.FusionHead`.
        stack: block names (``("tcn",)``: concat fusion, then a TCN).
        d_model: width of the temporal blocks (128). mlp_dim: MLP width (256; 0 = no MLP).
        dropout: every block's dropout (0.1). fusion: fusion block when ``stack`` does not start with one.
        blocks: block name -> options. experts: output experts per task (1 = linear).

    Raises:
        AfwpipeError: a name that is no temporal block (or a fusion block after the first place), options
            for a block not in the stack, or bad options of a block.
    """

    def __init__(self, in_dims: dict[str, int], tasks: Sequence[str], stack: Sequence[str] | str = ("tcn",),
                 d_model: int = 128, mlp_dim: int = 256, dropout: float = 0.1, fusion: str = "concat",
                 blocks: Mapping[str, Mapping] | None = None, experts: int = 1):
        super().__init__(in_dims, tasks, hidden=int(mlp_dim) or int(d_model), experts=experts)
        names = [s for s in stack.split(",") if s] if isinstance(stack, str) else [str(s) for s in stack]
        if names and FUSIONS.is_registered(names[0]):
            fusion, names = names[0], names[1:]
        bad = [n for n in names if not TEMPORAL.is_registered(n)]
        if bad:
            raise AfwpipeError(f"stack: {', '.join(bad)} is not a temporal block; stack = [fusion block (first, "
                               f"optional): {', '.join(FUSIONS.list())}] + temporal blocks: {', '.join(TEMPORAL.list())}")
        options = {str(k): dict(v or {}) for k, v in (blocks or {}).items()}
        extra = sorted(set(options) - set(names) - {fusion})
        if extra:
            raise AfwpipeError(f"stack: blocks has options for {', '.join(extra)}, not in the stack "
                               f"(fusion {fusion}, temporal {', '.join(names) or 'none'})")
        self.stack = (fusion, *names)
        width = self.build_fusion(fusion, d_model, dropout, options.get(fusion))
        self.proj = nn.Linear(width, d_model)
        self.temporal = nn.ModuleList(self._temporal(n, d_model, dropout, options.get(n, {})) for n in names)
        self.mlp = (nn.Sequential(nn.Linear(d_model, mlp_dim), nn.ReLU(), nn.Dropout(dropout)) if mlp_dim
                    else nn.Identity())

    @staticmethod
    def _temporal(name: str, d_model: int, dropout: float, kw: dict) -> nn.Module:
        try:
            return TEMPORAL.create(name, int(d_model), dropout=dropout, **kw)
        except TypeError as e:
            raise AfwpipeError(f"stack: bad options {kw} for temporal block {name!r}: {e}") from None

    def encode(self, x: dict[str, Tensor], mask: Tensor, present: dict[str, Tensor]) -> Tensor:
        h = self.proj(self.fuse(x, mask, present))
        for block in self.temporal:
            h = block(h, mask)
        return self.mlp(h)


@register_head("stack")
def stack(in_dims: dict[str, int], tasks: Sequence[str], **kw) -> StackHead:
    return StackHead(in_dims, tasks, **kw)
