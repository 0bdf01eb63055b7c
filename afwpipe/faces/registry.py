"""Face-detector registry (timm ``_registry`` style): name -> factory, nothing else.

A factory is any callable ``factory(weights=None, device="cpu", **kw) -> FaceDetector``, usually the class.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from afwpipe.errors import AfwpipeError

if TYPE_CHECKING:
    from afwpipe.faces.detector import FaceDetector

_DETECTORS: dict[str, Callable[..., FaceDetector]] = {}


class UnknownDetectorError(AfwpipeError, ValueError):
    """A detector name that no module registered; the message lists the registered names."""


def register_detector(name: str) -> Callable[[Callable[..., FaceDetector]], Callable[..., FaceDetector]]:
    """Decorator: register ``factory`` under ``name``.

    Raises:
        ValueError: ``name`` is already registered to another factory.
    """

    def decorate(factory: Callable[..., FaceDetector]) -> Callable[..., FaceDetector]:
        if _DETECTORS.get(name, factory) is not factory:
            raise ValueError(f"face detector {name!r} is already registered to {_DETECTORS[name]!r}")
        _DETECTORS[name] = factory
        return factory

    return decorate


def list_detectors(filter: str = "") -> list[str]:
    """Sorted registered names, optionally those matching the shell-style pattern ``filter``."""
    names = sorted(_DETECTORS)
    return fnmatch.filter(names, filter) if filter else names


def is_detector(name: str) -> bool:
    """Whether ``name`` is registered."""
    return name in _DETECTORS


def create_detector(name: str, weights: str | None = None, device: str = "cpu", **kw: Any) -> FaceDetector:
    """Build the detector registered as ``name``.

    Args:
        name: a name from :func:`list_detectors`.
        weights: a weights file, ``"random"`` (shape/speed tests only), or ``None`` for the default weights.
        device: torch device string, e.g. ``"cpu"`` or ``"cuda"``.
        **kw: overrides of the detector's default config fields (e.g. ``score_threshold=0.9``).

    Raises:
        UnknownDetectorError: ``name`` is not registered (the message lists those that are).
        afwpipe.errors.WeightsError: the weights are missing and cannot be downloaded.
    """
    if name not in _DETECTORS:
        raise UnknownDetectorError(
            f"unknown face detector {name!r}; registered detectors: {', '.join(list_detectors()) or '(none)'}"
        )
    return _DETECTORS[name](weights=weights, device=device, **kw)
