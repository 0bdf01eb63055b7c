"""Head registry, timm-style: ``@register_head("name")`` on a builder, ``create_head(name, …)`` to build.

A builder is called as ``builder(in_dims, tasks, **kw)`` and returns an ``nn.Module`` whose forward takes
``(x: dict[str, Tensor [B, K, D_i]], mask: Tensor [B, K] bool | None)`` and returns
``dict[task, Tensor]`` (see :mod:`afwpipe.heads.common`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fnmatch import fnmatch

from torch import nn

from ..errors import AfwpipeError

_HEADS: dict[str, Callable[..., nn.Module]] = {}


def register_head(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a head builder under ``name``; a second registration of a name is an error."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _HEADS:
            raise AfwpipeError(f"head {name!r} is already registered")
        _HEADS[name] = fn
        return fn

    return wrap


def list_heads(filter: str = "") -> list[str]:
    """Sorted registered head names, optionally matching a shell-style ``filter`` (``"t*"``)."""
    return sorted(n for n in _HEADS if not filter or fnmatch(n, filter))


def is_head(name: str) -> bool:
    """True when ``name`` is a registered head."""
    return name in _HEADS


def create_head(name: str, in_dims: dict[str, int], tasks: Sequence[str], **kw) -> nn.Module:
    """Build head ``name`` for encoders ``in_dims`` (encoder/modality name -> feature dim) and ``tasks``.

    Extra keyword arguments go to the head's constructor (``d_model``, ``dropout``, …).

    Raises:
        AfwpipeError: unknown head name (the message lists the registered ones), empty ``in_dims``,
            or a task outside ``au``/``expr``/``va``.
    """
    if name not in _HEADS:
        raise AfwpipeError(f"unknown head {name!r}; registered heads: {', '.join(list_heads()) or '(none)'}")
    return _HEADS[name](dict(in_dims), list(tasks), **kw)
