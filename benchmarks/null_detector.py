"""A face detector that costs nothing, registered through the public registry (``afwpipe.faces``), so the
face stage's own data path (decode, RGB, alignment, fill, Zarr writes, audio) can be measured alone.

``null`` finds one upright face per frame at a fixed place: the ArcFace template scaled to a third of the
frame's short side, centred. Every frame thus gets an aligned crop, as in a video where the face never
leaves.
"""

from __future__ import annotations

import numpy as np

from afwpipe.faces import DETECTORS, Detections, DetectorConfig, FaceDetector, register_detector, template

NAME = "null"


class NullDetector(FaceDetector):
    """One fixed face per frame; no computation beyond building the result."""

    default_cfg = DetectorConfig(name=NAME, weights="none", source="benchmarks/null_detector.py (costs nothing)")

    def __init__(self, weights: str | None = None, device: str = "cpu", **kw):
        self.cfg, self.device = self.default_cfg.replace(**kw), device

    def _detect(self, frames: np.ndarray) -> list[Detections]:
        h, w = frames.shape[1:3]
        side = min(h, w) / 3
        lm = template(112) / 112 * side + np.array([(w - side) / 2, (h - side) / 2], np.float32)
        box = np.array([[(w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2]], np.float32)
        one = Detections(box, lm[None], np.ones(1, np.float32))
        return [one] * len(frames)


def register() -> str:
    """Register ``null`` (once) and return its name."""
    if not DETECTORS.is_registered(NAME):
        register_detector(NAME, default_cfg=NullDetector.default_cfg)(NullDetector)
    return NAME
