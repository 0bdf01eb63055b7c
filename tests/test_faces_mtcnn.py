"""MTCNN on the real sample videos: one face with plausible landmarks, no false faces, batch = per-image,
and two people side by side found and told apart."""

from __future__ import annotations

from itertools import islice

import av
import numpy as np
import pytest

from afwpipe.faces import create_detector, select_faces

pytestmark = pytest.mark.sample  # decodes the real sample videos


def decode_frames(path, n: int, step: int = 1) -> np.ndarray:
    """``uint8 [n, H, W, 3]`` RGB: every ``step``-th frame from the start."""
    with av.open(str(path)) as container:
        frames = islice(container.decode(video=0), 0, n * step, step)
        return np.stack([f.to_ndarray(format="rgb24") for f in frames])


@pytest.fixture(scope="module")
def mtcnn():
    return create_detector("mtcnn")


@pytest.fixture(scope="module")
def man_frames(sample_videos):
    return decode_frames(sample_videos["single_face"], 4, step=17)


def test_mtcnn_finds_the_one_face_with_plausible_landmarks(mtcnn, man_frames):
    for det in mtcnn.detect(man_frames):
        assert len(det) == 1
        assert det.boxes.dtype == det.landmarks.dtype == det.scores.dtype == np.float32
        assert det.scores[0] > 0.95
        (x1, y1, x2, y2), lm = det.boxes[0], det.landmarks[0]
        assert 50 < x2 - x1 < 300 and 50 < y2 - y1 < 330  # a face, not the frame
        assert ((lm >= [x1, y1]) & (lm <= [x2, y2])).all()  # landmarks inside the box
        left_eye, right_eye, nose, left_mouth, right_mouth = lm
        assert left_eye[0] < nose[0] < right_eye[0]  # image-left eye first
        assert left_mouth[0] < right_mouth[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])


def test_mtcnn_finds_nothing_in_a_video_without_faces(mtcnn, sample_videos):
    frames = decode_frames(sample_videos["no_face"], 3, step=30)
    assert [len(d) for d in mtcnn.detect(frames)] == [0, 0, 0]


def test_mtcnn_batch_equals_one_frame_at_a_time(mtcnn, man_frames):
    batched = mtcnn.detect(man_frames)
    for frame, det in zip(man_frames, batched):
        (single,) = mtcnn.detect(frame[None])
        np.testing.assert_allclose(det.boxes, single.boxes, atol=1e-2)
        np.testing.assert_allclose(det.landmarks, single.landmarks, atol=1e-2)
        np.testing.assert_allclose(det.scores, single.scores, atol=1e-4)


def test_two_people_side_by_side_are_found_and_told_apart(mtcnn, man_frames, sample_videos):
    woman = decode_frames(sample_videos["WolfgangLanger_Pexels"], 1)[0]
    crops = []
    for frame in (man_frames[0], woman):
        (det,) = mtcnn.detect(frame[None])
        x1, y1, x2, y2 = det.boxes[0].astype(int)
        pad = (x2 - x1) // 3
        crops.append(frame[max(y1 - pad, 0) : y2 + pad, max(x1 - pad, 0) : x2 + pad])
    canvas = np.full((400, 900, 3), 255, np.uint8)
    canvas[20 : 20 + crops[0].shape[0], 20 : 20 + crops[0].shape[1]] = crops[0]  # man on the left
    canvas[20 : 20 + crops[1].shape[0], 480 : 480 + crops[1].shape[1]] = crops[1]  # woman on the right

    dets = mtcnn.detect(canvas[None])
    assert len(dets[0]) == 2
    centres_x = dets[0].centers[:, 0]
    (left,) = select_faces(dets, side="left", frame_width=900)
    (right,) = select_faces(dets, side="right", frame_width=900)
    assert centres_x[left] < 450 < centres_x[right]
