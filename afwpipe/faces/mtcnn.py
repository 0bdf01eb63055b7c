"""MTCNN face detector (Zhang et al., "Joint Face Detection and Alignment using Multitask Cascaded
Convolutional Networks", IEEE SPL 2016) via ``facenet_pytorch.MTCNN`` (github.com/timesler/facenet-pytorch),
whose P/R/O-Net weights ship inside the package: works offline."""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import torch

from afwpipe.errors import WeightsError
from afwpipe.faces.detections import Detections
from afwpipe.faces.detector import DetectorConfig, FaceDetector
from afwpipe.faces.registry import register_detector

default_cfgs = {
    # facenet-pytorch's defaults (MTCNN.__init__), which follow the original MTCNN release.
    "mtcnn": DetectorConfig(
        name="mtcnn",
        weights=f"facenet-pytorch=={version('facenet-pytorch')}:pnet,rnet,onet",
        source="Zhang et al. 2016 (MTCNN); github.com/timesler/facenet-pytorch",
        min_face_size=20,
        pyramid_factor=0.709,
        stage_thresholds=(0.6, 0.7, 0.7),
        score_threshold=0.0,
    ),
}


@register_detector("mtcnn", default_cfg=default_cfgs["mtcnn"])
class MTCNNDetector(FaceDetector):
    """MTCNN on a whole batch at once (``facenet_pytorch.MTCNN.detect`` on ``[B, H, W, 3]``).

    Args:
        weights: ``None`` (the bundled weights); anything else raises.
        device: torch device string.
        **kw: overrides of :data:`default_cfgs` ``["mtcnn"]`` fields.

    Raises:
        WeightsError: ``weights`` is not ``None`` (MTCNN only has its bundled weights).
    """

    default_cfg = default_cfgs["mtcnn"]

    def __init__(self, weights: str | None = None, device: str = "cpu", **kw) -> None:
        if weights is not None:
            raise WeightsError(f"mtcnn: only the weights bundled with facenet-pytorch are supported, got {weights!r}")
        from facenet_pytorch import MTCNN

        self.cfg = self.default_cfg.replace(**kw)
        self.device = device
        self.model = MTCNN(
            min_face_size=self.cfg.min_face_size,
            thresholds=list(self.cfg.stage_thresholds),
            factor=self.cfg.pyramid_factor,
            select_largest=False,
            keep_all=True,
            device=torch.device(device),
        ).eval()

    def _detect(self, frames: np.ndarray) -> list[Detections]:
        boxes, probs, points = self.model.detect(frames, landmarks=True)
        out = []
        for b, p, lm in zip(boxes, probs, points):
            if b is None:
                out.append(Detections.empty())
                continue
            dets = Detections(np.asarray(b, np.float32), np.asarray(lm, np.float32), np.asarray(p, np.float32))
            keep = dets.scores > self.cfg.score_threshold
            out.append(Detections(dets.boxes[keep], dets.landmarks[keep], dets.scores[keep]))
        return out
