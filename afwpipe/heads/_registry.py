"""Head registries, each an :class:`afwpipe.registry.Registry` (timm-style register / create):

- :data:`HEADS`: whole heads; ``@register_head("name")`` on a builder, ``create_head(name, …)`` to build.
- :data:`FUSIONS`: fusion blocks (``concat``, ``gated``, ``msf``, ``xattn``): built as
  ``FUSIONS.create(name, in_dims, dim, dropout=…, **kw)``; forward ``(x, mask, present) -> [B, K, out_dim]``
  (:mod:`afwpipe.heads.fusion`). A head's ``fusion`` option names one.
- :data:`TEMPORAL`: temporal blocks (``tcn``, ``transformer``, ``mamba``): built as
  ``TEMPORAL.create(name, d_model, dropout=…, **kw)``; forward ``(h [B, K, d_model], mask [B, K]) ->
  [B, K, d_model]``. The ``stack`` head composes them (:mod:`afwpipe.heads.stack`).

A builder is called as ``builder(in_dims, tasks, **kw)`` and returns an ``nn.Module`` whose forward takes
``(x: dict[str, Tensor [B, K, D_i]], mask: Tensor [B, K] bool | None)`` and returns
``dict[task, Tensor]`` (see :mod:`afwpipe.heads.common`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from ..errors import AfwpipeError
from ..registry import Registry

HEADS = Registry("head", AfwpipeError)
FUSIONS = Registry("fusion block", AfwpipeError)
TEMPORAL = Registry("temporal block", AfwpipeError)
register_head = HEADS.register
list_heads = HEADS.list  #: sorted names (then families), optionally matching a shell-style pattern
is_head = HEADS.is_registered  #: whether a name is registered or belongs to a family


def create_head(name: str, in_dims: dict[str, int], tasks: Sequence[str] | Mapping[str, dict], **kw) -> nn.Module:
    """Build head ``name`` for encoders ``in_dims`` (encoder/modality name -> feature dim) and ``tasks`` (built-in
    names, or declared tasks' output specs ``{name: {width, level, pool}}``: :func:`afwpipe.heads.common.output_specs`).

    Extra keyword arguments go to the head's constructor (``d_model``, ``dropout``, …), except ``video_pool``
    (``mean`` / ``attention``: the pooling of every video task, :mod:`afwpipe.heads.readout`).

    Raises:
        AfwpipeError: unknown head name (the message lists the registered ones), empty ``in_dims``,
            or a task outside ``au``/``expr``/``va``.
        afwpipe.registry.DuplicateNameError: (at import) two heads registered under one name.
    """
    pool = kw.pop("video_pool", None)
    if pool is not None:
        if not isinstance(tasks, Mapping):
            raise AfwpipeError(f"head_kwargs video_pool={pool!r}: the pooling of video tasks; the tasks "
                               f"{list(tasks)} are frame tasks")
        tasks = {t: {**o, "pool": pool} if o.get("level") == "video" else o for t, o in tasks.items()}
    return HEADS.create(name, dict(in_dims), dict(tasks) if isinstance(tasks, Mapping) else list(tasks), **kw)
