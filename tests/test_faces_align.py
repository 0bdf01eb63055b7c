"""Alignment maps the five landmarks onto the ArcFace template, in coordinates and in pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from afwpipe.faces import align_face, align_faces, similarity_matrix, template


def rotated_face(size: int = 224):
    """Landmarks = the template under a known similarity (30 deg, x1.7, shifted), in a 480x640 frame."""
    angle, scale, shift = np.deg2rad(30), 1.7, np.array([250.0, 120.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (template(size) @ rot.T + shift).astype(np.float32)
    return np.zeros((480, 640, 3), np.uint8), landmarks


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return cv2.transform(points[None].astype(np.float64), matrix)[0]


@pytest.mark.parametrize("size", [112, 224])
def test_landmarks_land_on_the_template(size):
    _, landmarks = rotated_face(size)
    matrix = similarity_matrix(landmarks, size)
    np.testing.assert_allclose(apply(matrix, landmarks), template(size), atol=0.05)


def test_aligned_crop_shows_the_eyes_at_the_template_positions():
    frame, landmarks = rotated_face()
    for colour, eye in zip([(255, 0, 0), (0, 255, 0)], landmarks[:2]):
        cv2.circle(frame, tuple(int(round(v)) for v in eye), 4, colour, -1)

    crop = align_face(frame, landmarks, size=224)

    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    for channel, eye in zip([0, 1], template(224)[:2]):
        ys, xs = np.nonzero(crop[..., channel] > 128)
        np.testing.assert_allclose([xs.mean(), ys.mean()], eye, atol=1.0)


def test_batch_alignment_gives_black_crops_where_no_face():
    frame, landmarks = rotated_face()
    frame[:] = 200
    crops = align_faces(np.stack([frame, frame]), np.stack([landmarks, np.full((5, 2), np.nan)]), size=64)
    assert crops.shape == (2, 64, 64, 3) and crops.dtype == np.uint8
    np.testing.assert_array_equal(crops[0], align_face(frame, landmarks, size=64))
    assert crops[0].max() == 200 and crops[1].max() == 0


def test_non_finite_landmarks_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        align_face(np.zeros((10, 10, 3), np.uint8), np.full((5, 2), np.nan))
