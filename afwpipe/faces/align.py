"""Face alignment: a similarity transform of the five landmarks onto the ArcFace template.

Template: the 5-point reference of ArcFace's 112x112 crops (Deng et al., "ArcFace: Additive Angular Margin
Loss for Deep Face Recognition", CVPR 2019; ``arcface_dst`` in insightface ``python-package/insightface/utils/
face_align.py``, github.com/deepinsight/insightface), scaled to the crop size.
"""

from __future__ import annotations

import cv2
import numpy as np

#: ``[5, 2] float32`` ``(x, y)`` pixels in a 112x112 crop: left eye, right eye, nose, left and right mouth
#: corner (image-left/right, the order of :data:`afwpipe.faces.detections.LANDMARK_NAMES`).
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def template(size: int = 224) -> np.ndarray:
    """The ArcFace template scaled to a ``size x size`` crop: ``[5, 2] float32`` pixels."""
    return ARCFACE_TEMPLATE_112 * (size / 112.0)


def similarity_matrix(landmarks5: np.ndarray, size: int = 224) -> np.ndarray:
    """The similarity transform (rotation, uniform scale, translation) taking ``landmarks5`` closest to
    :func:`template` ``(size)`` (``cv2.estimateAffinePartial2D``, LMEDS).

    Args:
        landmarks5: ``[5, 2]`` ``(x, y)`` pixels in the frame.
        size: crop side, pixels.

    Returns:
        ``[2, 3] float64`` matrix mapping frame pixels to crop pixels (``cv2.warpAffine`` convention).

    Raises:
        ValueError: landmarks not ``[5, 2]``, not finite, or degenerate (no transform found).
    """
    src = np.asarray(landmarks5, dtype=np.float32)
    if src.shape != (5, 2) or not np.isfinite(src).all():
        raise ValueError(f"expected 5 finite (x, y) landmarks [5, 2], got {src.shape}: {src.tolist()}")
    matrix, _ = cv2.estimateAffinePartial2D(src, template(size), method=cv2.LMEDS)
    if matrix is None:
        raise ValueError(f"no similarity transform fits landmarks {src.tolist()}")
    return matrix


def align_face(frame: np.ndarray, landmarks5: np.ndarray, size: int = 224) -> np.ndarray:
    """Crop one face aligned to the ArcFace template.

    Args:
        frame: ``uint8 [H, W, 3]`` RGB.
        landmarks5: ``[5, 2]`` ``(x, y)`` pixels in ``frame``.
        size: crop side, pixels.

    Returns:
        ``uint8 [size, size, 3]`` RGB; outside the frame is black. Bilinear interpolation.

    Raises:
        ValueError: see :func:`similarity_matrix`.
    """
    matrix = similarity_matrix(landmarks5, size)
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def align_faces(frames: np.ndarray, landmarks: np.ndarray, size: int = 224) -> np.ndarray:
    """:func:`align_face` for a batch; frames without a face give a black crop.

    Args:
        frames: ``uint8 [B, H, W, 3]`` RGB.
        landmarks: ``[B, 5, 2]`` ``(x, y)`` pixels; a row with any NaN means "no face".
        size: crop side, pixels.

    Returns:
        ``uint8 [B, size, size, 3]``.

    Raises:
        ValueError: ``frames`` and ``landmarks`` disagree on ``B``, or finite landmarks are degenerate.
    """
    landmarks = np.asarray(landmarks, dtype=np.float32)
    if len(frames) != len(landmarks):
        raise ValueError(f"{len(frames)} frames but {len(landmarks)} landmark sets")
    crops = np.zeros((len(frames), size, size, 3), dtype=np.uint8)
    for i, (frame, lm) in enumerate(zip(frames, landmarks)):
        if not np.isnan(lm).any():
            crops[i] = align_face(frame, lm, size)
    return crops
