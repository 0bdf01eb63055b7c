"""Target-face selection: largest face, followed by overlap, or the left/right person."""

from __future__ import annotations

import numpy as np
import pytest

from afwpipe.faces import Detections, select_faces


def faces(*boxes) -> Detections:
    """Detections with the given boxes, scores descending in the given order."""
    n = len(boxes)
    return Detections(np.array(boxes, np.float32).reshape(n, 4), np.zeros((n, 5, 2)), np.linspace(0.99, 0.9, n))


BIG_LEFT, SMALL_RIGHT = (10, 10, 110, 130), (400, 20, 460, 90)


def test_default_picks_the_largest_face_and_minus_one_without_faces():
    chosen = select_faces([faces(SMALL_RIGHT, BIG_LEFT), Detections.empty()])
    assert chosen.tolist() == [1, -1] and chosen.dtype == np.int64


def test_default_keeps_following_the_chosen_face_when_another_grows_larger():
    huge_elsewhere = (300, 0, 600, 300)
    moved = (14, 12, 112, 130)
    dets = [faces(BIG_LEFT), Detections.empty(), faces(huge_elsewhere, moved)]
    assert select_faces(dets).tolist() == [0, -1, 1]


@pytest.mark.parametrize(("side", "expected"), [("left", 1), ("right", 0)])
def test_side_picks_the_leftmost_or_rightmost_person(side, expected):
    background_face = (0, 0, 5, 5)  # a tiny face further left is not a person of the video
    dets = [faces(SMALL_RIGHT, BIG_LEFT, background_face)]
    assert select_faces(dets, side=side, frame_width=640).tolist() == [expected]


def test_a_single_face_on_the_other_half_is_not_taken_for_the_side():
    dets = [faces(SMALL_RIGHT)]
    assert select_faces(dets, side="left", frame_width=640).tolist() == [-1]
    assert select_faces(dets, side="right", frame_width=640).tolist() == [0]


def test_a_single_face_continuing_the_track_is_kept_across_the_middle():
    crossing = (300, 10, 400, 130)  # centre x 350 > 320, but it is the left person moving
    dets = [faces(SMALL_RIGHT, (250, 10, 350, 130)), faces(crossing)]
    assert select_faces(dets, side="left", frame_width=640).tolist() == [1, 0]


def test_unknown_side_is_rejected():
    with pytest.raises(ValueError, match="side"):
        select_faces([], side="middle")
