"""The detector registry and config overrides."""

from __future__ import annotations

import numpy as np
import pytest

from afwpipe.errors import AfwpipeError
from afwpipe.faces import create_detector, is_detector, list_detectors, register_detector


def test_both_detectors_are_registered():
    assert {"mtcnn", "retinaface"} <= set(list_detectors())
    assert list_detectors("retina*") == ["retinaface"]
    assert is_detector("mtcnn") and not is_detector("dlib")


def test_unknown_detector_error_lists_the_registry():
    with pytest.raises(AfwpipeError) as err:
        create_detector("dlib")
    assert "dlib" in str(err.value)
    for name in list_detectors():
        assert name in str(err.value)


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="already registered"):
        register_detector("mtcnn")(lambda **kw: None)


def test_config_overrides_reach_the_detector_and_typos_are_rejected():
    det = create_detector("mtcnn", min_face_size=40)
    assert det.cfg.min_face_size == 40 and det.model.min_face_size == 40
    assert det.cfg.as_dict()["stage_thresholds"] == [0.6, 0.7, 0.7]
    with pytest.raises(TypeError, match="min_face_sz"):
        create_detector("mtcnn", min_face_sz=40)


def test_frames_that_are_not_a_uint8_rgb_batch_are_rejected():
    det = create_detector("mtcnn")
    with pytest.raises(ValueError, match=r"uint8 \[B, H, W, 3\]"):
        det.detect(np.zeros((360, 640, 3), np.uint8))
