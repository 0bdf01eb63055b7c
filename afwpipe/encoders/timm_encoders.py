"""Visual encoders built with timm: ``mae``, ``convnext`` and any ``timm:<model_id>``.

* ``mae``: ViT-B/16 MAE (He et al. 2022, https://github.com/facebookresearch/mae), timm
  ``vit_base_patch16_224.mae``; feature = mean of the 196 patch tokens after the final LayerNorm
  (the Netease Fuxi ABAW5/6 recipe uses a face-pretrained MAE ViT-B the same way). A face-pretrained
  MAE checkpoint (e.g. MAE-Face ``mae_face_pretrain_vit_base.pth``, state dict under key ``model``)
  loads with ``weights=FILE``; decoder and mask-token keys are dropped, every encoder key must be present.
* ``convnext``: ConvNeXt V2 base (Woo et al. 2023), timm ``convnextv2_base.fcmae_ft_in22k_in1k``;
  feature = timm's pre-logits (global average pool + head LayerNorm), as used by USTC ABAW8.
* ``timm:<model_id>``: any timm model with ``num_classes=0`` (its pooled pre-logits features). Input size,
  interpolation and mean / std come from the model's timm ``pretrained_cfg`` (crop_pct is not used: an
  aligned face crop is resized whole, not centre-cropped). Two options (params ``extract.options``):

  - ``input_size``: a smaller (or larger) square input than the pretrained one, for models whose timm
    constructor takes ``img_size`` (ViT, DeiT, BEiT, EVA, CLIP ViTs, DINOv2: absolute position
    embeddings are resampled by timm when the weights load); it must be a multiple of the patch size
    (DINOv2: 518 px pretrained, 224 = 16 x 14 for 224-px faces). Fully convolutional models take any
    size without ``img_size``; the resize of the crops follows ``input_size`` either way.
  - ``layer``: a Transformer block's output instead of the pooled head (int, negative from the end, or
    the mean of a range ``"A-B"``, :mod:`afwpipe.encoders.layers`), through timm's
    ``forward_intermediates`` (timm >= 1.0) with the model's final norm applied (``norm=True``; BEiT's
    mean-pooling models have an identity there and normalise after pooling, which is not applied), then
    the mean of the patch tokens (CLS and other prefix tokens excluded). Mean-pooled normalised patch
    tokens are the MAE recipe above, and half of DINOv2's linear-probe input
    (``dinov2/eval/linear.py`` ``create_linear_input``: CLS token concatenated with the mean of the
    normalised patch tokens, from ``get_intermediate_layers(..., norm=True)``); the mean alone keeps the
    feature at the model's width and needs no CLS token (some models have none).
"""

from __future__ import annotations

import logging

import timm
import torch

from ..errors import EncoderError, WeightsError
from .base import EncoderConfig, VisualEncoder
from .layers import layer_label, layer_range
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


class TimmBlockEncoder(TimmEncoder):
    """Mean of the patch tokens of Transformer blocks ``first..last`` (normalised by the model's final norm),
    averaged over the blocks: timm's ``forward_intermediates`` stopping after the last block taken."""

    def __init__(self, cfg: EncoderConfig, model: torch.nn.Module, first: int, last: int, device: str = "cpu"):
        super().__init__(cfg, model, device)
        self.indices = list(range(first, last + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.model.forward_intermediates(x, indices=self.indices, norm=True, stop_early=True,
                                                output_fmt="NCHW", intermediates_only=True)
        return torch.stack([m.mean(dim=(2, 3)) for m in maps]).mean(0)  # [B, C, H, W] patch grids -> [B, C]


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


def _create(name: str, model_id: str, resolved: ResolvedWeights, timm_loads: bool, **kwargs) -> torch.nn.Module:
    """timm model with ``num_classes=0`` (and ``kwargs``, e.g. ``img_size``): random, loaded by timm from the
    resolved file (``timm_loads``), or bare for the caller to load."""
    if resolved.random or not timm_loads:
        return timm.create_model(model_id, pretrained=False, num_classes=0, **kwargs)
    try:
        return timm.create_model(model_id, pretrained=True, num_classes=0,
                                 pretrained_cfg_overlay={"file": str(resolved.path), "source": ""}, **kwargs)
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


def patch_size(model: torch.nn.Module) -> int | None:
    """Side in pixels of a ViT-style model's patches (``patch_embed.patch_size``); None for other models."""
    ps = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    return None if ps is None else int(ps[-1] if isinstance(ps, (tuple, list)) else ps)


def _create_sized(name: str, model_id: str, resolved: ResolvedWeights, input_size: int | None) -> torch.nn.Module:
    """The model at its pretrained size, or built for ``input_size`` (``img_size``) when its constructor
    takes it; a model without that argument (a CNN) is built as is and fed ``input_size`` crops."""
    if input_size is None:
        return _create(name, model_id, resolved, timm_loads=True)
    try:
        return _create(name, model_id, resolved, timm_loads=True, img_size=input_size)
    except TypeError as e:  # the constructor has no img_size
        if "img_size" not in str(e):
            raise
        return _create(name, model_id, resolved, timm_loads=True)


def timm_model(model_id: str, weights=None, device: str = "cpu", layer=None, input_size: int | None = None) -> TimmEncoder:
    """Any timm model (``timm:resnet18``, ``timm:vit_large_patch14_dinov2.lvd142m``), ``num_classes=0``;
    dim, input size, mean/std and interpolation come from the model's timm pretrained config.

    Args:
        model_id: a timm model name (with or without its pretrained tag).
        weights: None (timm's hub / torch hub cache, downloaded when online), a file, or ``"random"``.
        device: torch device string.
        layer: None (pooled pre-logits), or a Transformer block / range of blocks (see the module docstring).
        input_size: square input side in pixels; None: the pretrained config's.

    Raises:
        EncoderError: timm does not know ``model_id``; ``input_size`` not positive or not a multiple of the
            patch size; ``layer`` malformed, out of range, or given for a model without Transformer blocks.
        WeightsError: weights missing and not downloadable, or a file that does not load.
    """
    name = f"timm:{model_id}"
    if not timm.is_model(model_id):
        raise EncoderError(f"unknown encoder {name!r}: timm has no model {model_id!r} (see timm.list_models())")
    if input_size is not None and not (isinstance(input_size, int) and input_size > 0):
        raise EncoderError(f"{name}: input_size must be a positive int (pixels), got {input_size!r}")
    resolved = _resolve(name, model_id, weights)
    model = _create_sized(name, model_id, resolved, input_size)
    pc = model.pretrained_cfg
    size = int(input_size or pc["input_size"][-1])
    patch = patch_size(model)
    if patch and size % patch:
        raise EncoderError(f"{name}: input_size={size} is not a multiple of the patch size {patch} "
                           f"(e.g. {size // patch * patch} or {(size // patch + 1) * patch})")
    extra = {"model_id": model_id, **timm_family_cfg.extra}
    if patch:
        extra["patch_size"] = patch
    dim = int(model.num_features)
    if layer is not None:
        blocks = getattr(model, "blocks", None)
        if blocks is None or not hasattr(model, "forward_intermediates"):
            raise EncoderError(f"{name}: layer={layer!r} needs a Transformer with blocks and timm's "
                               f"forward_intermediates (ViT, BEiT, EVA, DINOv2...); {type(model).__name__} has none")
        first, last = layer_range(name, layer, len(blocks))
        extra.update(layer=layer_label(layer, first, last), pooling="mean of patch tokens of the block output(s) "
                     "after the final norm (timm forward_intermediates, norm=True)")
        dim = int(getattr(model, "embed_dim", dim))
    cfg = timm_family_cfg.with_(
        name=name, dim=dim, weights=resolved.identity,
        input_size=size, interpolation=pc.get("interpolation") or "bicubic",
        mean=tuple(float(m) for m in pc["mean"]), std=tuple(float(s) for s in pc["std"]), extra=extra)
    if layer is not None:
        return TimmBlockEncoder(cfg, model, first, last, device)
    return TimmEncoder(cfg, model, device)


ENCODERS.register_family("timm:", timm_model, describe="<model_id>", default_cfg=timm_family_cfg,
                         source="timm / HF hub cache")
