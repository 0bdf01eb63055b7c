"""Encoder registry (timm ``_registry.py`` style): names to factories, and the one door to build them.

A factory is ``fn(weights=None, device="cpu", **kwargs) -> Encoder``; ``@register_encoder("name")``
adds it. A prefix family (``timm:<model_id>``) registers ``fn(model_id, weights, device, **kwargs)``
with ``@register_encoder("timm:", prefix=True)``.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Callable

from ..errors import EncoderError

_factories: dict[str, Callable[..., Any]] = {}
_prefixes: dict[str, Callable[..., Any]] = {}


def register_encoder(name: str, prefix: bool = False) -> Callable[[Callable], Callable]:
    """Decorator registering an encoder factory under ``name`` (or every ``name<id>`` when ``prefix``)."""

    def deco(fn: Callable) -> Callable:
        table = _prefixes if prefix else _factories
        if name in table:
            raise ValueError(f"encoder {name!r} is already registered")
        table[name] = fn
        return fn

    return deco


def list_encoders(filter: str = "") -> list[str]:
    """Registered names, sorted; ``filter`` is a shell pattern (``"whisper*"``). Prefix families
    appear as ``"timm:<model_id>"``."""
    names = sorted(_factories) + [f"{p}<model_id>" for p in sorted(_prefixes)]
    return [n for n in names if not filter or fnmatch.fnmatch(n, filter)]


def _split_prefix(name: str) -> tuple[str, str] | None:
    for p in _prefixes:
        if name.startswith(p) and len(name) > len(p):
            return p, name[len(p):]
    return None


def is_encoder(name: str) -> bool:
    """True when ``name`` is registered or belongs to a prefix family (``timm:<id>``; the id itself
    is checked when the encoder is created)."""
    return name in _factories or _split_prefix(name) is not None


def create_encoder(name: str, weights: str | None = None, device: str = "cpu", **kwargs: Any):
    """Build encoder ``name``.

    Args:
        name: a registered name (see :func:`list_encoders`) or ``timm:<model_id>``.
        weights: ``None`` (default weights from the caches, downloaded when online), a file / folder
            path, or ``"random"``.
        device: torch device string.
        **kwargs: encoder-specific options (e.g. ``layer=9`` for ``hubert``).

    Raises:
        EncoderError: ``name`` is not registered; the message lists what is.
        WeightsError: weights missing and not downloadable (the message says how to get them).
    """
    if name in _factories:
        return _factories[name](weights=weights, device=device, **kwargs)
    split = _split_prefix(name)
    if split is not None:
        prefix, ident = split
        return _prefixes[prefix](ident, weights=weights, device=device, **kwargs)
    raise EncoderError(f"unknown encoder {name!r}; registered: {', '.join(list_encoders())}")
