"""``hubert`` and ``wav2vec2``: self-supervised speech encoders from transformers.

* ``hubert``: HuBERT base (Hsu et al. 2021), ``facebook/hubert-base-ls960``.
* ``wav2vec2``: wav2vec 2.0 base fine-tuned on LibriSpeech 960 h (Baevski et al. 2020),
  ``facebook/wav2vec2-base-960h``.

Both: a conv feature extractor with a 400-sample receptive field and a 320-sample stride (20 ms at
16 kHz), a positional convolution over the states (128 taps), then 12 Transformer layers. ``layer``
picks the hidden state (``-1``, the default, is the last; ``0`` the input of the first Transformer
layer). Long audio runs in chunks of ``chunk_s`` seconds; state j always covers samples
[320 j, 320 j + 400), so the 20 ms grid stays exact across chunks.

Chunk borders (measured in tests/test_audio_encoders_reference.py on small random models against one
pass over the whole wave). The positional convolution lets a state see 64 states each side, so a bare
border changes the 64 states each side of it and only those (hidden state 0 with a layer-normalised
conv extractor: exact beyond them, differences up to 20-30 % of the states' scale within). Each chunk
is therefore run with ``chunk_context_states`` = 64 extra states (1.28 s) each side, which are
dropped: that hidden state then equals the whole-wave one everywhere. What no context can remove:
attention spans the chunk, and the base checkpoints' GroupNorm (``feat_extract_norm="group"``)
normalises the first conv over the chunk, so every state of a chunked run differs a little from a
whole-wave run (measured, random weights, after the context: about 1e-3 of the scale through two
attention layers, 2-3 % with GroupNorm, 20-60 % at a bare border).
The waveform is normalised to zero mean / unit variance when the model's
``preprocessor_config.json`` says ``do_normalize`` (transformers' ``Wav2Vec2FeatureExtractor``).
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import EncoderError, WeightsError
from .base import AUDIO_SAMPLE_RATE, AudioEncoder, EncoderConfig
from .registry import register_encoder
from .weights import HubRepo, load_checkpoint, resolve_weights

HOP = 320  # samples between states (product of the conv strides 5*2*2*2*2*2*2)
RECEPTIVE_FIELD = 400  # samples seen by one state

default_cfgs = {
    "hubert": EncoderConfig(
        name="hubert", modality="audio", dim=768, sample_rate=AUDIO_SAMPLE_RATE, hop_s=HOP / AUDIO_SAMPLE_RATE,
        extra={"repo_id": "facebook/hubert-base-ls960", "architecture": "hubert", "layer": -1, "chunk_s": 30.0,
               "chunk_context_states": 64, "normalize": False}),
    "wav2vec2": EncoderConfig(
        name="wav2vec2", modality="audio", dim=768, sample_rate=AUDIO_SAMPLE_RATE, hop_s=HOP / AUDIO_SAMPLE_RATE,
        extra={"repo_id": "facebook/wav2vec2-base-960h", "architecture": "wav2vec2", "layer": -1, "chunk_s": 30.0,
               "chunk_context_states": 64, "normalize": True}),
}


def _classes(architecture: str):
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model
    return {"hubert": (HubertConfig, HubertModel), "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model)}[architecture]


class HfAudioEncoder(AudioEncoder):
    """A transformers speech model's hidden states at 20 ms."""

    def __init__(self, cfg: EncoderConfig, model: torch.nn.Module, device: str = "cpu"):
        super().__init__(cfg, device)
        self.model = model.eval().to(self.device)
        self.layer = cfg.extra["layer"]
        self.chunk = max(1, round(cfg.extra["chunk_s"] * AUDIO_SAMPLE_RATE / HOP))  # kept states per chunk
        # extra states computed each side of a chunk and dropped (default: the positional conv's reach)
        self.context = int(cfg.extra.get("chunk_context_states", pos_conv_reach(model)))

    def states(self, wave: torch.Tensor) -> torch.Tensor:
        """(ceil(N / 320), dim) float32 hidden states of ``wave`` (N float32 samples at 16 kHz)."""
        if self.cfg.extra["normalize"]:
            wave = (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)
        n_states = max(1, math.ceil(wave.numel() / HOP))
        out = []
        for first in range(0, n_states, self.chunk):
            last = min(first + self.chunk, n_states)  # states kept from this chunk
            lo, hi = max(0, first - self.context), min(n_states, last + self.context)  # states computed
            length = (hi - lo - 1) * HOP + RECEPTIVE_FIELD
            seg = wave[lo * HOP:lo * HOP + length]
            seg = F.pad(seg, (0, length - seg.numel()))
            hidden = self.model(seg[None], output_hidden_states=True).hidden_states[self.layer]
            out.append(hidden[0, first - lo:last - lo])
        return torch.cat(out)


def pos_conv_reach(model: torch.nn.Module) -> int:
    """States on each side of a chunk border that the positional convolution (``num_conv_pos_embeddings``
    taps, 128 in the base models) lets see across it: half its kernel."""
    return int(model.config.num_conv_pos_embeddings) // 2


def _load(name: str, architecture: str, path: Path) -> tuple[torch.nn.Module, bool | None]:
    """Model from a transformers folder (config.json + weights) or a bare state-dict file (base
    config); also the folder's ``do_normalize`` when it says."""
    config_cls, model_cls = _classes(architecture)
    if path.is_dir():
        try:
            model = model_cls.from_pretrained(str(path))
        except (OSError, ValueError, RuntimeError) as e:
            raise WeightsError(f"{name}: cannot load a {model_cls.__name__} from {path}: {str(e)[:500]}") from e
        pre = path / "preprocessor_config.json"
        return model, (json.loads(pre.read_text()).get("do_normalize") if pre.is_file() else None)
    sd = load_checkpoint(name, path)
    prefix = f"{architecture}."  # keys of the *ForCTC heads are prefixed by the base model's name
    sd = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}
    model = model_cls(config_cls())
    missing, _ = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k != "masked_spec_embed"]  # only used in training
    if missing:
        raise WeightsError(f"{name}: {path} lacks {len(missing)} keys of a base {model_cls.__name__}, e.g. {missing[:5]}")
    return model, None


def create_hf_audio(name: str, weights=None, device: str = "cpu", layer: int = -1,
                    chunk_s: float = 30.0) -> HfAudioEncoder:
    """``name`` in ``default_cfgs``. ``weights``: None (HF hub cache, downloaded when online), a
    model folder or state-dict file, or ``"random"`` (base config). ``layer``: hidden state index.

    Raises:
        EncoderError: ``layer`` out of range, ``chunk_s`` not positive.
    """
    cfg = default_cfgs[name]
    arch = cfg.extra["architecture"]
    resolved = resolve_weights(name, HubRepo(cfg.extra["repo_id"]), weights)
    normalize = cfg.extra["normalize"]
    if resolved.random:
        model = _classes(arch)[1](_classes(arch)[0]())
    else:
        model, said = _load(name, arch, resolved.path)
        normalize = normalize if said is None else bool(said)
    n = model.config.num_hidden_layers
    if not -(n + 1) <= layer <= n:
        raise EncoderError(f"{name}: layer={layer} out of range; the model has hidden states 0..{n} (or -1..-{n + 1})")
    if not chunk_s > 0:
        raise EncoderError(f"{name}: chunk_s must be positive, got {chunk_s}")
    extra = {**cfg.extra, "layer": layer, "chunk_s": float(chunk_s), "normalize": normalize,
             "chunk_context_states": pos_conv_reach(model)}
    cfg = cfg.with_(weights=resolved.identity, dim=int(model.config.hidden_size), extra=extra)
    return HfAudioEncoder(cfg, model, device)


for _name, _cfg in default_cfgs.items():
    register_encoder(_name, default_cfg=_cfg, source=HubRepo(_cfg.extra["repo_id"]))(partial(create_hf_audio, _name))
