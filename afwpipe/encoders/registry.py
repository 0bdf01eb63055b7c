"""Encoder registry: :data:`ENCODERS`, an :class:`afwpipe.registry.Registry`, and the one door to build.

A factory is ``fn(weights=None, device="cpu", **kwargs) -> Encoder``, registered with its default
:class:`~afwpipe.encoders.base.EncoderConfig` and the source of its default weights:
``@register_encoder("name", default_cfg=cfg, source=HubRepo(...))``. The family ``timm:<model_id>`` is
``ENCODERS.register_family("timm:", fn, ...)`` with ``fn(model_id, weights, device, **kwargs)``.
``afwpipe encoders`` prints :func:`describe_encoders`, read from the registry without building a model.
"""

from __future__ import annotations

from typing import Any

from ..errors import EncoderError
from ..registry import Registry
from .weights import HubFile, HubRepo, PackageFile, UrlFile, WheelAsset

ENCODERS = Registry("encoder", EncoderError)
register_encoder = ENCODERS.register
list_encoders = ENCODERS.list  #: sorted names (then families), optionally matching a shell-style pattern
is_encoder = ENCODERS.is_registered  #: whether a name is registered or belongs to a family


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
    return ENCODERS.create(name, weights=weights, device=device, **kwargs)


def _describe_source(src) -> str:
    if src is None:
        return "none (no weights)"
    if isinstance(src, str):  # a family's description
        return src
    if isinstance(src, (HubFile, HubRepo)):
        return f"hf:{src.repo_id}"
    if isinstance(src, UrlFile):
        return f"download {src.url.rsplit('/', 1)[-1]}"
    if isinstance(src, WheelAsset):
        return f"PyPI wheel asset {src.asset}"
    if isinstance(src, PackageFile):
        return f"installed {src.dist}: {src.member}"
    return type(src).__name__


def _offline(src) -> bool:
    try:
        return src is None or src.find_cached() is not None
    except Exception:  # a broken cache entry is "not available", never a crash of the listing
        return False


def describe_encoders() -> list[dict]:
    """One dict per registry entry: name, modality, dim, weights (source), offline (bool: usable here
    without a download). A family (``timm:<model_id>``) is one row: dim ``"model's"``, offline ``"if cached"``."""
    rows = []
    for e in ENCODERS.entries():
        family = e.prefix is not None
        rows.append({"name": e.name, "modality": e.default_cfg.modality,
                     "dim": "model's" if family else e.default_cfg.dim, "weights": _describe_source(e.source),
                     "offline": "if cached" if family else _offline(e.source)})
    return rows
