"""Pick the target face in each frame: the largest face followed by box overlap, or the left/right person.

Aff-Wild2 names annotations of videos with two people ``X_left`` / ``X_right`` (ABAW challenge data,
Kollias et al.); ``side="left"`` / ``"right"`` follows that convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torchvision.ops import box_iou

from afwpipe.faces.detections import Detections


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``[N]`` IoU of one ``[4]`` box with ``[N, 4]`` boxes."""
    return box_iou(torch.from_numpy(box[None]), torch.from_numpy(boxes))[0].numpy()


class FaceSelector:
    """Streaming form of :func:`select_faces`: feed batches of frames in order, keep the tracking state.

    ``FaceSelector(side, frame_width).update(dets)`` on consecutive batches gives the same indices as
    one :func:`select_faces` call on all frames (the detect step streams a video batch by batch).

    Raises:
        ValueError: ``side`` is not ``None``, ``"left"`` or ``"right"``.
    """

    def __init__(self, side: Literal["left", "right"] | None = None, frame_width: int | None = None,
                 iou_threshold: float = 0.3) -> None:
        if side not in (None, "left", "right"):
            raise ValueError(f"side must be None, 'left' or 'right', got {side!r}")
        self.side, self.frame_width, self.iou_threshold = side, frame_width, iou_threshold
        self.last_box: np.ndarray | None = None

    def update(self, dets: Sequence[Detections]) -> np.ndarray:
        """``int64 [len(dets)]`` index of the target face per frame, -1 where none is chosen."""
        side, thr = self.side, self.iou_threshold
        chosen = np.full(len(dets), -1, dtype=np.int64)
        for t, d in enumerate(dets):
            if len(d) == 0:
                continue
            last = self.last_box
            overlap = _iou(last, d.boxes) if last is not None else np.zeros(len(d), np.float32)
            if side is None:
                idx = int(np.argmax(overlap)) if overlap.max() >= thr else int(np.argmax(d.areas))
            elif len(d) >= 2:
                two = np.argsort(-d.areas, kind="stable")[:2]
                cx = d.centers[two, 0]
                idx = int(two[np.argmin(cx) if side == "left" else np.argmax(cx)])
            else:
                cx = d.centers[0, 0]
                on_side = self.frame_width is None or (cx < self.frame_width / 2) == (side == "left")
                if not (on_side or overlap[0] >= thr):
                    continue
                idx = 0
            chosen[t] = idx
            self.last_box = d.boxes[idx]
        return chosen


def select_faces(
    dets: Sequence[Detections],
    side: Literal["left", "right"] | None = None,
    frame_width: int | None = None,
    iou_threshold: float = 0.3,
) -> np.ndarray:
    """Index of the target face in each frame's detections, or -1.

    ``side=None``: the face overlapping the last chosen box most (IoU >= ``iou_threshold``; a simple tracker
    that survives frames without faces), else the largest face.
    ``side="left"`` / ``"right"``: among the two largest faces, the one whose box centre is leftmost /
    rightmost. When only one face is found it is taken if it overlaps the last chosen box, or lies on
    that half of the frame (box centre vs ``frame_width / 2``), or ``frame_width`` is ``None``.

    Args:
        dets: per-frame detections, in frame order.
        side: ``None``, ``"left"`` or ``"right"``.
        frame_width: frame width in pixels (used with ``side`` for frames with a single face).
        iou_threshold: overlap that counts as the same face as the last chosen one.

    Returns:
        ``int64 [T]``: index into each frame's :class:`Detections`, -1 where no face is chosen.

    Raises:
        ValueError: ``side`` is not ``None``, ``"left"`` or ``"right"``.
    """
    return FaceSelector(side, frame_width, iou_threshold).update(dets)
