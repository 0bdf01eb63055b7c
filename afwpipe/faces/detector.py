"""What every face detector shares: its config (data, timm ``default_cfgs`` style) and the ``detect`` contract."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from afwpipe.faces.detections import Detections


@dataclass(frozen=True)
class DetectorConfig:
    """A detector's preprocessing, thresholds and weights identity; written into ``faces.zarr`` attributes.

    Attributes:
        name: registry name.
        weights: weights identity: a bundled package version, a file's ``sha256:<hex>``, or ``"random"``.
        source: paper and repository of the method and weights.
        url: where the default weights are downloaded from (``None`` when bundled).
        file_name: the default weights' file name in the torch hub cache (``None`` when bundled).
        max_size: longest frame side fed to the network, pixels (``None``: native size).
        min_face_size: smallest face searched for, pixels (MTCNN image pyramid).
        pyramid_factor: scale step of the MTCNN image pyramid.
        stage_thresholds: per-stage score thresholds (MTCNN P-, R-, O-Net).
        score_threshold: faces scoring at most this are dropped.
        nms_threshold: IoU above which the lower-scoring of two boxes is suppressed.
        mean, std: RGB normalisation on ``[0, 1]`` pixels (``None``: the detector's own fixed scaling).
    """

    name: str
    weights: str
    source: str
    url: str | None = None
    file_name: str | None = None
    max_size: int | None = None
    min_face_size: int | None = None
    pyramid_factor: float | None = None
    stage_thresholds: tuple[float, ...] = ()
    score_threshold: float = 0.0
    nms_threshold: float | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def replace(self, **kw: Any) -> DetectorConfig:
        """A copy with fields overridden.

        Raises:
            TypeError: a name in ``kw`` is not a config field (the message lists the fields).
        """
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(kw) - fields)
        if unknown:
            raise TypeError(f"{self.name}: unknown config option(s) {unknown}; options: {sorted(fields)}")
        return dataclasses.replace(self, **kw)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists), for store attributes."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Validate a batch of frames and return it as a C-contiguous array.

    Args:
        frames: ``uint8 [B, H, W, 3]`` RGB.

    Raises:
        ValueError: wrong dtype, rank, channel count, or an empty batch or frame.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(
            f"expected frames as uint8 [B, H, W, 3] RGB, got {frames.dtype} {list(frames.shape)}"
        )
    return np.ascontiguousarray(frames)


class FaceDetector(ABC):
    """A face detector: ``detect(frames) -> list[Detections]``.

    Subclasses set ``default_cfg`` (a :class:`DetectorConfig`) as class data; instances hold ``cfg``
    (the defaults with the user's overrides and the weights actually loaded) and ``device``.
    """

    default_cfg: DetectorConfig
    cfg: DetectorConfig
    device: str

    def detect(self, frames: np.ndarray) -> list[Detections]:
        """Find faces in a batch of same-size frames.

        Args:
            frames: ``uint8 [B, H, W, 3]`` RGB.

        Returns:
            ``B`` :class:`Detections`, boxes and landmarks in pixels of the given frames.

        Raises:
            ValueError: ``frames`` is not ``uint8 [B, H, W, 3]``.
        """
        return self._detect(check_frames(frames))

    @abstractmethod
    def _detect(self, frames: np.ndarray) -> list[Detections]:
        """``detect`` on already-validated frames."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weights={self.cfg.weights!r}, device={self.device!r})"
