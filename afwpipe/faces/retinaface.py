"""RetinaFace face detector (Deng et al., "RetinaFace: Single-Shot Multi-Level Face Localisation in the Wild",
CVPR 2020), ResNet-50 weights of ``retinaface-pytorch`` (github.com/ternaus/retinaface), batched here.

``retinaface.predict_single.Model.predict_jsons`` handles one image at a time; :class:`RetinaFaceDetector`
runs the same network (``retinaface.network.RetinaFace``) on a whole batch of same-size frames with the
predictor's rules: longest side resized to ``max_size`` (``cv2.INTER_LINEAR``, as albumentations
``LongestMaxSize``), ImageNet normalisation, zero padding centred to a ``max_size`` square
(``iglovikov_helper_functions`` ``pad_to_size``), the package's prior boxes and box/landmark decoding, then per
frame the score threshold and NMS (``torchvision.ops.nms``) before mapping back to frame pixels.
"""

from __future__ import annotations

import io
import os
import urllib.error
import warnings
import zipfile
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from afwpipe.errors import WeightsError
from afwpipe.fetch import sha256_file
from afwpipe.faces.detections import Detections
from afwpipe.faces.detector import DetectorConfig, FaceDetector
from afwpipe.faces.registry import register_detector

#: The package's only weights (``retinaface.pre_trained_models.models["resnet50_2020-07-20"]``).
WEIGHTS_URL = (
    "https://github.com/ternaus/retinaface/releases/download/0.01/retinaface_resnet50_2020-07-20-f168fae3c.zip"
)

default_cfgs = {
    # Preprocessing and thresholds of retinaface.predict_single.Model.predict_jsons: longest side resized to
    # max_size, albumentations Normalize (ImageNet mean/std), centred padding to a max_size square,
    # confidence 0.7, NMS IoU 0.4.
    "retinaface": DetectorConfig(
        name="retinaface",
        weights="retinaface_resnet50_2020-07-20",
        source="Deng et al. CVPR 2020 (RetinaFace); github.com/ternaus/retinaface",
        url=WEIGHTS_URL,
        file_name=os.path.basename(WEIGHTS_URL),
        max_size=960,
        score_threshold=0.7,
        nms_threshold=0.4,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    ),
}

#: Anchor layout and box-coding variances of the ResNet-50 model (retinaface.predict_single.Model).
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)


@lru_cache(maxsize=8)
def prior_boxes(height: int, width: int) -> torch.Tensor:
    """Anchors for a ``height x width`` network input: ``[P, 4] float32 (cx, cy, w, h)`` as fractions of the
    input's width/height (``retinaface.prior_box.priorbox``; cached per size)."""
    from retinaface.prior_box import priorbox

    return priorbox(min_sizes=MIN_SIZES, steps=STEPS, clip=False, image_size=(height, width))


def decode(
    loc: torch.Tensor, landm: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a batch of network offsets against the priors (``retinaface.box_utils.decode``/``decode_landm``).

    Args:
        loc: ``[B, P, 4]`` box offsets ``(dcx, dcy, dlog_w, dlog_h)`` in variance units.
        landm: ``[B, P, 10]`` landmark offsets ``(dx, dy)`` x 5 in variance units.
        priors: ``[P, 4]`` ``(cx, cy, w, h)`` fractions of the input size.
        variances: centre and size variances of the box coding.

    Returns:
        boxes ``[B, P, 4]`` ``(x1, y1, x2, y2)`` and landmarks ``[B, P, 5, 2]`` ``(x, y)``, as fractions of
        the network input's width/height (multiply by ``(W, H)`` for pixels).
    """
    from retinaface.box_utils import decode as decode_boxes
    from retinaface.box_utils import decode_landm

    b, p = loc.shape[:2]
    flat = priors.to(loc.dtype).expand(b, p, 4).reshape(b * p, 4)
    boxes = decode_boxes(loc.reshape(b * p, 4), flat, variances).reshape(b, p, 4)
    landmarks = decode_landm(landm.reshape(b * p, 10), flat, variances).reshape(b, p, 5, 2)
    return boxes, landmarks


def default_weights_path() -> Path:
    """Where ``retinaface.pre_trained_models.get_model`` caches the weights: ``<torch hub dir>/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / default_cfgs["retinaface"].file_name


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth`` or from the release's zip holding one (torch's legacy zip wrapping)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            if len(members) == 1 and not members[0].is_dir():  # torch.hub's test for the legacy wrapping
                return torch.load(io.BytesIO(zf.read(members[0])), map_location="cpu", weights_only=True)
    return torch.load(path, map_location="cpu", weights_only=True)


def load_weights(weights: str | os.PathLike | None) -> tuple[dict[str, torch.Tensor], str]:
    """The RetinaFace state dict and its identity.

    Order: an explicit file > the torch hub cache file (:func:`default_weights_path`) > download into that
    cache when online.

    Returns:
        ``(state_dict, identity)``; identity is ``sha256:<hex>`` of the file read.

    Raises:
        WeightsError: an explicit file does not exist, or the default file is absent and cannot be
            downloaded (the message names the file, the URL and where to put it).
    """
    cfg = default_cfgs["retinaface"]
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"retinaface: weights file {path} does not exist")
    else:
        path = default_weights_path()
        if not path.is_file():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(cfg.url, str(path), progress=False)
            except (urllib.error.URLError, OSError) as err:
                raise WeightsError(
                    f"retinaface: weights {cfg.file_name} are not in the torch hub cache and cannot be downloaded "
                    f"({err}). Download {cfg.url} on a machine with internet and put it at {path} "
                    f"(or pass weights=<file>)"
                ) from err
    try:
        state = _load_file(path)
    except Exception as err:  # a truncated download, a file of something else
        raise WeightsError(f"retinaface: cannot read weights file {path}: {err}") from err
    return state, f"sha256:{sha256_file(path)}"


@register_detector("retinaface", default_cfg=default_cfgs["retinaface"])
class RetinaFaceDetector(FaceDetector):
    """RetinaFace (ResNet-50) on a whole batch.

    Reproduces ``retinaface.predict_single.Model(max_size).predict_jsons(frame, score_threshold,
    nms_threshold)`` on each frame of the batch, in one forward pass: each frame is resized with
    ``cv2.INTER_LINEAR`` so its longest side is ``cfg.max_size`` (sides ``round(side * scale)``, as
    albumentations ``LongestMaxSize``), normalised with ``cfg.mean``/``cfg.std``, and zero-padded centred
    (``pad // 2`` top/left) to ``max_size x max_size``: the anchor grid then sits where the package puts it.
    Boxes and landmarks come back as floats in frame pixels (the package truncates them to ints), via the
    package's uniform factor ``max(H, W) / max_size``; boxes are clipped to the frame and a box lying wholly
    outside the frame (in the padding) is dropped (the package drops those right of/below the frame only).

    Args:
        weights: a weights file, ``None`` (cache, then download), or ``"random"`` (untrained network for
            shape/speed tests; ``cfg.weights`` is then ``"random"``).
        device: torch device string; on CUDA the network runs under fp16 autocast when ``amp``.
        amp: use autocast on CUDA.
        **kw: overrides of :data:`default_cfgs` ``["retinaface"]`` fields.

    Raises:
        WeightsError: see :func:`load_weights`.
    """

    default_cfg = default_cfgs["retinaface"]

    def __init__(self, weights: str | None = None, device: str = "cpu", amp: bool = True, **kw) -> None:
        from retinaface.network import RetinaFace

        cfg = self.default_cfg.replace(**kw)
        if weights == "random":
            state, identity = None, "random"
        else:
            state, identity = load_weights(weights)
        self.cfg = cfg.replace(weights=identity)
        self.device = device
        self.amp = amp and torch.device(device).type == "cuda"
        with warnings.catch_warnings():  # torchvision's deprecation of `pretrained=`, used by the package
            warnings.simplefilter("ignore", UserWarning)
            net = RetinaFace(
                name="Resnet50",
                pretrained=False,
                return_layers={"layer2": 1, "layer3": 2, "layer4": 3},
                in_channels=256,
                out_channels=256,
            )
        if state is not None:
            net.load_state_dict(state)
        self.net = net.eval().to(device)
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(cfg.mean, device=device).view(shape) * 255
        self._std = torch.tensor(cfg.std, device=device).view(shape) * 255

    def _input(self, frames: np.ndarray) -> tuple[torch.Tensor, int, int]:
        """Network input ``[B, 3, M, M] float32`` (``M = cfg.max_size``) and the top/left padding, pixels."""
        _, height, width, _ = frames.shape
        size = self.cfg.max_size
        scale = size / max(height, width)
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        if (h, w) != (height, width):
            frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in frames])
        x = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).float()
        x = (x - self._mean) / self._std
        top, left = (size - h) // 2, (size - w) // 2
        return F.pad(x, (left, size - w - left, top, size - h - top)), top, left

    @torch.inference_mode()
    def _detect(self, frames: np.ndarray) -> list[Detections]:
        _, height, width, _ = frames.shape
        x, top, left = self._input(frames)
        size = self.cfg.max_size
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            loc, conf, landm = self.net(x)
        scores = F.softmax(conf.float(), dim=-1)[..., 1]
        boxes, landmarks = decode(loc.float(), landm.float(), prior_boxes(size, size).to(x.device))
        # fractions of the padded square -> its pixels -> unpadded -> pixels of the original frame
        shift = torch.tensor([left, top], dtype=torch.float32, device=x.device)
        coeff = max(height, width) / size
        boxes = (boxes * size - shift.repeat(2)) * coeff
        landmarks = (landmarks * size - shift) * coeff
        limit = torch.tensor([width, height], dtype=torch.float32, device=x.device).repeat(2)
        out = []
        for i in range(len(frames)):
            keep = torch.where(scores[i] > self.cfg.score_threshold)[0]
            keep = keep[nms(boxes[i, keep], scores[i, keep], self.cfg.nms_threshold)]
            b = boxes[i, keep]
            inside = (b[:, 0] < width) & (b[:, 1] < height) & (b[:, 2] > 0) & (b[:, 3] > 0)
            keep = keep[inside]
            b = torch.minimum(boxes[i, keep].clamp(min=0), limit)
            out.append(Detections(b.cpu().numpy(), landmarks[i, keep].cpu().numpy(), scores[i, keep].cpu().numpy()))
        return out
