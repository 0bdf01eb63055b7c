"""The per-frame result every face detector returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Order of the five landmarks, as in RetinaFace (Deng et al., CVPR 2020) and MTCNN (Zhang et al., 2016):
#: "left" and "right" are image-left and image-right (the subject's right eye is the image-left eye).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")


@dataclass(frozen=True, eq=False)
class Detections:
    """The faces found in one frame, ordered by descending score.

    Attributes:
        boxes: ``[N, 4] float32``, ``(x1, y1, x2, y2)`` in pixels of the original frame.
        landmarks: ``[N, 5, 2] float32``, ``(x, y)`` pixels, in the order of :data:`LANDMARK_NAMES`.
        scores: ``[N] float32``, detector confidence in ``[0, 1]``.

    Raises:
        ValueError: the three arrays disagree on ``N`` or have the wrong trailing shape.
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(-1, 5, 2)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if not len(boxes) == len(landmarks) == len(scores):
            raise ValueError(
                f"Detections: {len(boxes)} boxes, {len(landmarks)} landmark sets and {len(scores)} scores; "
                "expected one of each per face"
            )
        order = np.argsort(-scores, kind="stable")
        object.__setattr__(self, "boxes", boxes[order])
        object.__setattr__(self, "landmarks", landmarks[order])
        object.__setattr__(self, "scores", scores[order])

    @classmethod
    def empty(cls) -> Detections:
        """No face: ``N = 0``."""
        return cls(np.zeros((0, 4)), np.zeros((0, 5, 2)), np.zeros(0))

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def areas(self) -> np.ndarray:
        """``[N] float32`` box areas in square pixels."""
        return (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])

    @property
    def centers(self) -> np.ndarray:
        """``[N, 2] float32`` box centres ``(x, y)`` in pixels."""
        return (self.boxes[:, :2] + self.boxes[:, 2:]) / 2
