"""RetinaFace without its weights (none can be downloaded here): the batched detector against
retinaface-pytorch's own predictor (``Model.predict_jsons``) on the same seeded random weights, output shapes,
the batched decoding on hand-made priors, the mapping back to frame pixels, and where weights come from."""

from __future__ import annotations

import hashlib
import math
import urllib.error
import warnings
import zipfile

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from afwpipe.errors import WeightsError
from afwpipe.faces import Detections, create_detector
from afwpipe.faces.retinaface import WEIGHTS_URL, decode, default_weights_path, prior_boxes


@pytest.fixture(scope="module")
def random_retinaface():
    torch.manual_seed(0)
    return create_detector("retinaface", weights="random", max_size=320, score_threshold=0.5)


@pytest.fixture(scope="module")
def detector_and_package_model():
    """afwpipe's detector and retinaface-pytorch's ``Model`` holding the same seeded random weights, both at
    ``max_size=320`` and the package's default thresholds (confidence 0.7, NMS 0.4). With seed 0 the
    untrained network scores a few anchors of the test's blurred-noise frames above 0.7 (4 to 7 faces per
    frame; the scores nearest the threshold are 0.7015 and 0.6937, far from it compared with the 1e-3
    tolerance): enough detections to compare, none that a rounding difference could flip."""
    from retinaface.predict_single import Model

    torch.manual_seed(0)
    detector = create_detector("retinaface", weights="random", max_size=320)
    with warnings.catch_warnings():  # torchvision's deprecation of `pretrained=`, used by the package
        warnings.simplefilter("ignore", UserWarning)
        model = Model(max_size=320)
    model.load_state_dict(detector.net.state_dict())
    model.eval()
    return detector, model


def package_predictions(model, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Model.predict_jsons`` as arrays: boxes ``[N, 4]`` (clipped to the frame, as afwpipe does; the
    package returns them unclipped), landmarks ``[N, 5, 2]``, scores ``[N]``."""
    faces = [face for face in model.predict_jsons(frame) if face["bbox"]]  # no face: one empty entry
    height, width = frame.shape[:2]
    boxes = np.array([face["bbox"] for face in faces], np.float64).reshape(-1, 4)
    landmarks = np.array([face["landmarks"] for face in faces], np.float64).reshape(-1, 5, 2)
    scores = np.array([face["score"] for face in faces], np.float64)
    return boxes.clip(0, [width, height, width, height]), landmarks, scores


@pytest.mark.parametrize("height, width", [(320, 320), (180, 320), (360, 640)])
def test_batch_reproduces_the_package_predictor_on_square_and_16_9_frames(detector_and_package_model, height, width):
    detector, model = detector_and_package_model
    rng = np.random.default_rng(height + width)
    frames = np.stack(
        [cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 3) for _ in range(2)]
    )

    detections = detector.detect(frames)  # both frames in one forward pass

    # The package truncates boxes to ints in the padded max_size square, then again after scaling by
    # max(H, W) / 320, and truncates landmarks after scaling: at most coeff + 1 and 1 pixel off.
    coeff = max(height, width) / 320
    for frame, det in zip(frames, detections):
        boxes, landmarks, scores = package_predictions(model, frame)
        assert len(det) == len(scores) >= 3
        iou = box_iou(torch.from_numpy(det.boxes).double(), torch.from_numpy(boxes)).diagonal()
        assert (iou > 0.9).all(), iou
        np.testing.assert_allclose(det.boxes, boxes, atol=coeff + 1 + 1e-3)
        np.testing.assert_allclose(det.scores, scores, atol=1e-3)
        np.testing.assert_allclose(det.landmarks, landmarks, atol=1 + 1e-3)


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """An empty torch hub cache in ``tmp_path`` and no network."""

    def no_network(url, dst, *args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path


def test_random_weights_give_well_formed_batched_detections(random_retinaface):
    frames = np.random.default_rng(0).integers(0, 256, (2, 100, 150, 3), dtype=np.uint8)
    dets = random_retinaface.detect(frames)
    assert random_retinaface.cfg.weights == "random"
    assert len(dets) == 2
    for det in dets:
        assert isinstance(det, Detections) and len(det) > 0
        n = len(det)
        assert det.boxes.shape == (n, 4) and det.landmarks.shape == (n, 5, 2) and det.scores.shape == (n,)
        assert det.boxes.dtype == det.landmarks.dtype == det.scores.dtype == np.float32
        assert (det.scores > 0.5).all() and (np.diff(det.scores) <= 0).all()
        assert (det.boxes >= 0).all() and (det.boxes[:, [0, 2]] <= 150).all() and (det.boxes[:, [1, 3]] <= 100).all()


def test_decode_offsets_on_hand_made_priors():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.1, 0.1]])
    loc = torch.zeros(2, 2, 4)
    loc[1, 0] = torch.tensor([1.0, -1.0, math.log(2) / 0.2, 0.0])  # centre moves 0.1 * size, width doubles
    landm = torch.zeros(2, 2, 10)
    landm[1, 1, 2:4] = torch.tensor([1.0, 2.0])  # right eye moves (0.1, 0.2) * prior size

    boxes, landmarks = decode(loc, landm, priors)

    assert boxes.shape == (2, 2, 4) and landmarks.shape == (2, 2, 5, 2)
    expected = torch.tensor([[0.4, 0.3, 0.6, 0.7], [0.2, 0.7, 0.3, 0.8]])
    torch.testing.assert_close(boxes[0], expected)
    torch.testing.assert_close(boxes[1, 0], torch.tensor([0.32, 0.26, 0.72, 0.66]))
    torch.testing.assert_close(landmarks[0], priors[:, None, :2].expand(2, 5, 2))
    torch.testing.assert_close(landmarks[1, 1, 1], torch.tensor([0.25 + 0.01, 0.75 + 0.02]))


class OnePriorNet(nn.Module):
    """Stands in for the network: zero offsets, every prior background except ``prior`` in each image."""

    def __init__(self, prior: int) -> None:
        super().__init__()
        self.prior = prior

    def forward(self, x):
        b, _, h, w = x.shape
        p = len(prior_boxes(h, w))
        conf = torch.zeros(b, p, 2)
        conf[:, :, 0] = 10.0
        conf[:, self.prior] = torch.tensor([0.0, 10.0])
        return torch.zeros(b, p, 4), conf, torch.zeros(b, p, 10)


def test_boxes_come_back_in_frame_pixels_through_resize_and_padding(random_retinaface, monkeypatch):
    # 640x360 -> resized 320x180 -> padded centred to 320x320 (70 rows above, 70 below): priors are fractions
    # of the padded square, and the frame is twice the resized size.
    priors = prior_boxes(320, 320)
    target = torch.tensor([0.5, 0.4, 64 / 320, 64 / 320])
    k = int((priors - target).abs().sum(1).argmin())
    monkeypatch.setattr(random_retinaface, "net", OnePriorNet(k))

    dets = random_retinaface.detect(np.zeros((2, 360, 640, 3), np.uint8))

    cx, cy, w, h = (priors[k] * 320).tolist()
    cy -= 70
    expected = 2 * np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    for det in dets:
        assert len(det) == 1
        np.testing.assert_allclose(det.boxes[0], expected, rtol=1e-5)
        np.testing.assert_allclose(det.landmarks[0], np.tile([[2 * cx, 2 * cy]], (5, 1)), rtol=1e-5)


def test_a_face_wholly_in_the_padding_is_dropped(random_retinaface, monkeypatch):
    # A 16 px anchor centred 30 px down the padded square lies in the 70 rows of padding above a 16:9 frame.
    priors = prior_boxes(320, 320)
    k = int((priors - torch.tensor([0.5, 30 / 320, 16 / 320, 16 / 320])).abs().sum(1).argmin())
    assert priors[k, 1] * 320 + 8 < 70
    monkeypatch.setattr(random_retinaface, "net", OnePriorNet(k))

    dets = random_retinaface.detect(np.zeros((1, 180, 320, 3), np.uint8))

    assert len(dets[0]) == 0


def test_missing_weights_offline_name_the_file_and_the_url(offline_hub):
    with pytest.raises(WeightsError) as err:
        create_detector("retinaface")
    message = str(err.value)
    assert "retinaface_resnet50_2020-07-20-f168fae3c.zip" in message
    assert WEIGHTS_URL in message
    assert str(offline_hub / "checkpoints") in message


def test_missing_explicit_weights_file_is_named(tmp_path):
    with pytest.raises(WeightsError, match="nope.pth"):
        create_detector("retinaface", weights=str(tmp_path / "nope.pth"))


def test_weights_are_read_from_the_torch_hub_cache_as_released(offline_hub, random_retinaface):
    # The release is a zip holding one legacy-format state dict, as torch.hub caches it.
    pth = offline_hub / "retinaface_resnet50.pth"
    torch.save(random_retinaface.net.state_dict(), pth, _use_new_zipfile_serialization=False)
    cached = default_weights_path()
    cached.parent.mkdir(parents=True)
    with zipfile.ZipFile(cached, "w") as zf:
        zf.write(pth, pth.name)

    det = create_detector("retinaface", max_size=320)

    assert det.cfg.weights == "sha256:" + hashlib.sha256(cached.read_bytes()).hexdigest()
    torch.testing.assert_close(det.net.state_dict(), random_retinaface.net.state_dict())
