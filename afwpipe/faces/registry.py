"""Face-detector registry: :data:`DETECTORS`, an :class:`afwpipe.registry.Registry` of factories.

A factory is any callable ``factory(weights=None, device="cpu", **kw) -> FaceDetector``, usually the class,
registered with ``@register_detector("name", default_cfg=DetectorConfig(...))``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from afwpipe.errors import AfwpipeError
from afwpipe.registry import Registry

if TYPE_CHECKING:
    from afwpipe.faces.detector import FaceDetector


class UnknownDetectorError(AfwpipeError, ValueError):
    """A detector name that no module registered; the message lists the registered names."""


DETECTORS = Registry("face detector", UnknownDetectorError)
register_detector = DETECTORS.register
list_detectors = DETECTORS.list  #: sorted names (then families), optionally matching a shell-style pattern
is_detector = DETECTORS.is_registered  #: whether a name is registered or belongs to a family


def create_detector(name: str, weights: str | None = None, device: str = "cpu", **kw: Any) -> FaceDetector:
    """Build the detector registered as ``name``.

    Args:
        name: a name from :func:`list_detectors`.
        weights: a weights file, ``"random"`` (shape/speed tests only), or ``None`` for the default weights.
        device: torch device string, e.g. ``"cpu"`` or ``"cuda"``.
        **kw: overrides of the detector's default config fields (e.g. ``score_threshold=0.9``).

    Raises:
        UnknownDetectorError: ``name`` is not registered (the message lists those that are).
        afwpipe.registry.DuplicateNameError: (at import) two detectors registered under one name.
        afwpipe.errors.WeightsError: the weights are missing and cannot be downloaded.
    """
    return DETECTORS.create(name, weights=weights, device=device, **kw)
