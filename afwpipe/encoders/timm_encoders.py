"""Visual encoders built with timm: ``mae``, ``convnext`` and any ``timm:<model_id>``.

* ``mae``: ViT-B/16 MAE (He et al. 2022, https://github.com/facebookresearch/mae), timm
  ``vit_base_patch16_224.mae``; feature = mean of the 196 patch tokens after the final LayerNorm
  (the Netease Fuxi ABAW5/6 recipe uses a face-pretrained MAE ViT-B the same way). A face-pretrained
  MAE checkpoint (e.g. MAE-Face ``mae_face_pretrain_vit_base.pth``, state dict under key ``model``)
  loads with ``weights=FILE``; decoder and mask-token keys are dropped, every encoder key must be present.
* ``convnext``: ConvNeXt V2 base (Woo et al. 2023), timm ``convnextv2_base.fcmae_ft_in22k_in1k``;
  feature = timm's pre-logits (global average pool + head LayerNorm), as used by USTC ABAW8.
* ``timm:<model_id>``: any timm model with ``num_classes=0`` (its pooled pre-logits features).
"""

from __future__ import annotations

import logging

import timm
import torch

from ..errors import EncoderError, WeightsError
from .base import EncoderConfig, VisualEncoder
from .registry import ENCODERS, register_encoder
from .weights import HubFile, ResolvedWeights, UrlFile, load_checkpoint, resolve_weights

log = logging.getLogger(__name__)

default_cfgs = {
    "mae": EncoderConfig(
        name="mae", modality="visual", dim=768, input_size=224, interpolation="bicubic",
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        extra={"model_id": "vit_base_patch16_224.mae", "pooling": "mean of patch tokens after final norm"}),
    "convnext": EncoderConfig(
        name="convnext", modality="visual", dim=1024, input_size=224, interpolation="bicubic",
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        extra={"model_id": "convnextv2_base.fcmae_ft_in22k_in1k", "pooling": "timm pre-logits (avg pool + norm)"}),
}
# What every ``timm:<model_id>`` shares; dim, input size, mean/std and interpolation come from the model.
timm_family_cfg = EncoderConfig(name="timm:<model_id>", modality="visual", dim=0, extra={"pooling": "timm pre-logits"})

# Checkpoint keys that belong to MAE's pixel decoder or masking, not to the encoder.
MAE_IGNORED_PREFIXES = ("decoder", "mask_token")


class TimmEncoder(VisualEncoder):
    """A timm model with ``num_classes=0``: ``model(x)`` are the features."""

    def __init__(self, cfg: EncoderConfig, model: torch.nn.Module, device: str = "cpu"):
        super().__init__(cfg, device)
        self.model = model.eval().to(self.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MaeEncoder(TimmEncoder):
    """ViT whose feature is the mean of its patch tokens (prefix tokens such as CLS excluded)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.model.forward_features(x)
        return tokens[:, self.model.num_prefix_tokens:].mean(dim=1)


def timm_weights_source(model_id: str):
    """Where timm keeps ``model_id``'s default weights: its hub repo, else its URL in torch hub's cache."""
    pc = timm.models.get_pretrained_cfg(model_id)
    if pc is None:
        return None
    if pc.hf_hub_id:
        return HubFile(pc.hf_hub_id)
    if pc.url:
        return UrlFile(pc.url, folder=lambda: torch.hub.get_dir() + "/checkpoints")
    return None


def _register(name: str):
    """``register_encoder`` with ``default_cfgs[name]`` and timm's source of its model's weights."""
    cfg = default_cfgs[name]
    return register_encoder(name, default_cfg=cfg, source=timm_weights_source(cfg.extra["model_id"]))


def _resolve(name: str, model_id: str, weights) -> ResolvedWeights:
    source = timm_weights_source(model_id)
    if source is None and weights is None:
        raise WeightsError(f"{name}: timm has no pretrained weights for {model_id!r}; "
                           f"pass weights=FILE, or weights='random' for a smoke test")
    return resolve_weights(name, source, weights)


def _create(name: str, model_id: str, resolved: ResolvedWeights, timm_loads: bool) -> torch.nn.Module:
    """timm model with ``num_classes=0``: random, loaded by timm from the resolved file
    (``timm_loads``), or bare for the caller to load."""
    if resolved.random or not timm_loads:
        return timm.create_model(model_id, pretrained=False, num_classes=0)
    try:
        return timm.create_model(model_id, pretrained=True, num_classes=0,
                                 pretrained_cfg_overlay={"file": str(resolved.path), "source": ""})
    except Exception as e:  # timm raises RuntimeError (key mismatch), OSError, ValueError...
        raise WeightsError(f"{name}: timm could not load {model_id} weights from {resolved.path}: "
                           f"{type(e).__name__}: {str(e)[:500]}") from e


def load_mae_checkpoint(name: str, model: torch.nn.Module, path) -> None:
    """Load an MAE-style checkpoint into a timm ViT: state dict under ``model`` (or at top level),
    decoder / mask-token keys dropped, every model key required.

    Raises:
        WeightsError: unreadable file, or model keys missing from it (listed).
    """
    sd = load_checkpoint(name, path)
    if isinstance(sd.get("model"), dict):
        sd = sd["model"]
    sd = {k: v for k, v in sd.items() if not k.startswith(MAE_IGNORED_PREFIXES)}
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatch
        raise WeightsError(f"{name}: {path} does not fit a ViT-B/16: {str(e)[:500]}") from e
    if missing:
        raise WeightsError(f"{name}: {path} lacks {len(missing)} encoder keys, e.g. {missing[:5]}")
    if unexpected:
        log.warning("%s: ignoring %d keys of %s not in the encoder, e.g. %s", name, len(unexpected), path, unexpected[:5])


@_register("mae")
def mae(weights=None, device: str = "cpu") -> MaeEncoder:
    """ViT-B/16 MAE, mean-pooled patch tokens, 768-d. ``weights``: None (timm hub cache), an MAE
    checkpoint file (key ``model``), or ``"random"``."""
    cfg = default_cfgs["mae"]
    model_id = cfg.extra["model_id"]
    resolved = _resolve(cfg.name, model_id, weights)
    model = _create(cfg.name, model_id, resolved, timm_loads=False)
    if not resolved.random:
        load_mae_checkpoint(cfg.name, model, resolved.path)
    return MaeEncoder(cfg.with_(weights=resolved.identity), model, device)


@_register("convnext")
def convnext(weights=None, device: str = "cpu") -> TimmEncoder:
    """ConvNeXt V2 base (fcmae, ft in22k->in1k), pooled pre-logits, 1024-d."""
    cfg = default_cfgs["convnext"]
    resolved = _resolve(cfg.name, cfg.extra["model_id"], weights)
    model = _create(cfg.name, cfg.extra["model_id"], resolved, timm_loads=True)
    return TimmEncoder(cfg.with_(weights=resolved.identity), model, device)


def timm_model(model_id: str, weights=None, device: str = "cpu") -> TimmEncoder:
    """Any timm model (``timm:resnet18``, ``timm:vit_small_patch16_224.augreg_in21k``), ``num_classes=0``;
    dim, input size, mean/std and interpolation come from the model's timm pretrained config.

    Raises:
        EncoderError: timm does not know ``model_id``.
    """
    name = f"timm:{model_id}"
    if not timm.is_model(model_id):
        raise EncoderError(f"unknown encoder {name!r}: timm has no model {model_id!r} (see timm.list_models())")
    resolved = _resolve(name, model_id, weights)
    model = _create(name, model_id, resolved, timm_loads=True)
    pc = model.pretrained_cfg
    cfg = timm_family_cfg.with_(
        name=name, dim=int(model.num_features), weights=resolved.identity,
        input_size=int(pc["input_size"][-1]), interpolation=pc.get("interpolation") or "bicubic",
        mean=tuple(float(m) for m in pc["mean"]), std=tuple(float(s) for s in pc["std"]),
        extra={"model_id": model_id, **timm_family_cfg.extra})
    return TimmEncoder(cfg, model, device)


ENCODERS.register_family("timm:", timm_model, describe="<model_id>", default_cfg=timm_family_cfg,
                         source="timm / HF hub cache")
