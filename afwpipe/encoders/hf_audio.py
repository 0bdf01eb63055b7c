"""Speech encoders from transformers: the family ``hf:<repo_id>`` and its aliases ``hubert``, ``wav2vec2``.

* ``hf:<repo_id>``: any Hugging Face speech model with wav2vec 2.0's convolutional waveform front end and
  a Transformer over its states, loaded with transformers' ``AutoModel``: WavLM (``hf:microsoft/wavlm-large``),
  HuBERT (``hf:facebook/hubert-large-ll60k``), wav2vec 2.0 (``hf:facebook/wav2vec2-large-960h-lv60-self``),
  data2vec-audio (``hf:facebook/data2vec-audio-large``) ...
* ``hubert``: HuBERT base (Hsu et al. 2021), ``facebook/hubert-base-ls960``.
* ``wav2vec2``: wav2vec 2.0 base fine-tuned on LibriSpeech 960 h (Baevski et al. 2020),
  ``facebook/wav2vec2-base-960h``.
* ``ast``: the Audio Spectrogram Transformer fine-tuned on AudioSet (Gong et al. 2021),
  ``MIT/ast-finetuned-audioset-10-10-0.4593``. ``hf:<repo_id>`` of any AST model (``model_type``
  ``audio-spectrogram-transformer``) builds the same encoder: log-Mel input, states every 100 ms
  (:mod:`afwpipe.encoders.hf_ast`, which says how; nothing below about the conv front end or chunks applies).

The aliases are this family with a default repo id and, for a bare state-dict file or
``weights="random"``, the base model's architecture (transformers' default config of that model type);
``hf:<repo_id>`` reads its architecture from the model's ``config.json`` (an HF cache entry or a
``weights=DIR`` model folder).

All: a conv feature extractor (receptive field and hop from the config's ``conv_kernel`` and
``conv_stride``: 400 and 320 samples, 25 ms / 20 ms at 16 kHz, in every model above), a positional
convolution over the states, then L Transformer layers. ``layer`` picks the hidden state
(``hidden_states`` of transformers: ``0`` the input of the first Transformer layer, ``L`` (= ``-1``, the
default) the output of the last, after the final LayerNorm in "stable layer norm" models), or the mean
of a range (``"6-12"``; :mod:`afwpipe.encoders.layers`). Long audio runs in chunks of ``chunk_s``
seconds; state j always covers samples [hop j, hop j + receptive field), so the grid stays exact across
chunks.

Chunk borders (measured in tests/test_audio_encoders_reference.py and tests/test_encoders_hf.py on small
random models against one pass over the whole wave). The positional convolution lets a state see 64
states each side (half its 128 taps; data2vec-audio stacks 5 convolutions of 19 taps: 45), so a bare
border changes the states within that reach of it and only those (hidden state 0 with a
layer-normalised conv extractor: exact beyond them, differences up to 20-30 % of the states' scale
within). Each chunk is therefore run with ``chunk_context_states`` = that reach of extra states (1.28 s
for 64) each side, which are dropped: that hidden state then equals the whole-wave one everywhere. What
no context can remove: attention spans the chunk, and the base checkpoints' GroupNorm
(``feat_extract_norm="group"``) normalises the first conv over the chunk, so every state of a chunked
run differs a little from a whole-wave run (measured, random weights, after the context: about 1e-3 of
the scale through two attention layers, 2-3 % with GroupNorm, 20-60 % at a bare border).
The waveform is normalised to zero mean / unit variance when the model's ``preprocessor_config.json``
says ``do_normalize`` (transformers' ``Wav2Vec2FeatureExtractor``); without that file the aliases keep
their published setting and ``hf:<repo_id>`` the feature extractor's default (normalise).
"""

from __future__ import annotations

import json
import math
import re
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import EncoderError, WeightsError
from . import hf_ast
from .base import AUDIO_SAMPLE_RATE, AudioEncoder, EncoderConfig
from .layers import layer_label, layer_range
from .registry import ENCODERS, register_encoder
from .weights import HubRepo, _host_resolves, hf_cache_dir, load_checkpoint, offline, resolve_weights

HOP = 320  # samples between states in every model named here (product of the conv strides 5*2*2*2*2*2*2)

default_cfgs = {
    "hubert": EncoderConfig(
        name="hubert", modality="audio", dim=768, sample_rate=AUDIO_SAMPLE_RATE, hop_s=HOP / AUDIO_SAMPLE_RATE,
        extra={"repo_id": "facebook/hubert-base-ls960", "architecture": "hubert", "layer": -1, "chunk_s": 30.0,
               "chunk_context_states": 64, "normalize": False}),
    "wav2vec2": EncoderConfig(
        name="wav2vec2", modality="audio", dim=768, sample_rate=AUDIO_SAMPLE_RATE, hop_s=HOP / AUDIO_SAMPLE_RATE,
        extra={"repo_id": "facebook/wav2vec2-base-960h", "architecture": "wav2vec2", "layer": -1, "chunk_s": 30.0,
               "chunk_context_states": 64, "normalize": True}),
    "ast": EncoderConfig(
        name="ast", modality="audio", dim=768, sample_rate=AUDIO_SAMPLE_RATE, hop_s=0.1,
        extra={"repo_id": "MIT/ast-finetuned-audioset-10-10-0.4593", "architecture": hf_ast.MODEL_TYPE,
               "layer": -1, "normalize": True}),
}
# What every ``hf:<repo_id>`` shares; dim, architecture, hop and normalisation come from the model.
hf_family_cfg = EncoderConfig(name="hf:<repo_id>", modality="audio", dim=0, sample_rate=AUDIO_SAMPLE_RATE,
                              extra={"layer": -1, "chunk_s": 30.0})

# A hub repo id: ``owner/name`` (or a bare legacy name), characters the hub allows.
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def conv_geometry(config) -> tuple[int, int]:
    """(hop, receptive field) in samples of the conv feature extractor of a transformers speech config
    (``conv_stride``, ``conv_kernel``): hop = product of the strides; field = 1 + sum (k_i - 1) * (product
    of the strides before layer i). 320 and 400 for kernels 10,3,3,3,3,2,2 and strides 5,2,2,2,2,2,2."""
    hop, field = 1, 1
    for k, s in zip(config.conv_kernel, config.conv_stride):
        field += (k - 1) * hop
        hop *= s
    return hop, field


class HfAudioEncoder(AudioEncoder):
    """A transformers speech model's hidden state (or the mean of a range of them) on its hop (20 ms)."""

    def __init__(self, cfg: EncoderConfig, model: torch.nn.Module, device: str = "cpu"):
        super().__init__(cfg, device)
        self.model = model.eval().to(self.device)
        self.hop, self.field = conv_geometry(model.config)
        self.first, self.last = layer_range(cfg.name, cfg.extra["layer"], model.config.num_hidden_layers + 1)
        self.chunk = max(1, round(cfg.extra["chunk_s"] * AUDIO_SAMPLE_RATE / self.hop))  # kept states per chunk
        # extra states computed each side of a chunk and dropped (default: the positional conv's reach)
        self.context = int(cfg.extra.get("chunk_context_states", pos_conv_reach(model)))

    def states(self, wave: torch.Tensor) -> torch.Tensor:
        """(ceil(N / hop), dim) float32 hidden states of ``wave`` (N float32 samples at 16 kHz)."""
        if self.cfg.extra["normalize"]:
            wave = (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)
        n_states = max(1, math.ceil(wave.numel() / self.hop))
        out = []
        for first in range(0, n_states, self.chunk):
            last = min(first + self.chunk, n_states)  # states kept from this chunk
            lo, hi = max(0, first - self.context), min(n_states, last + self.context)  # states computed
            length = (hi - lo - 1) * self.hop + self.field
            seg = wave[lo * self.hop:lo * self.hop + length]
            seg = F.pad(seg, (0, length - seg.numel()))
            hidden = self.model(seg[None], output_hidden_states=True).hidden_states[self.first:self.last + 1]
            h = hidden[0] if len(hidden) == 1 else torch.stack(hidden).mean(0)
            out.append(h[0, first - lo:last - lo])
        return torch.cat(out)


def pos_conv_reach(model: torch.nn.Module) -> int:
    """States on each side of a chunk border that the positional convolution lets see across it: half its
    kernel (``num_conv_pos_embeddings`` taps, 128 in wav2vec2 / HuBERT / WavLM), or, for data2vec-audio's
    stack of ``num_conv_pos_embeddings`` convolutions of ``conv_pos_kernel_size`` taps (5 of 19), the sum
    of their halves."""
    c = model.config
    if hasattr(c, "conv_pos_kernel_size"):
        return int(c.num_conv_pos_embeddings) * (int(c.conv_pos_kernel_size) // 2)
    return int(c.num_conv_pos_embeddings) // 2


def _do_normalize(folder: Path) -> bool | None:
    pre = folder / "preprocessor_config.json"
    return json.loads(pre.read_text()).get("do_normalize") if pre.is_file() else None


def _hub_config(name: str, repo_id: str):
    """transformers config of ``repo_id`` from the HF cache, else downloaded (config.json only) when online.

    Raises:
        WeightsError: not cached and offline / unreachable / failed; the message says how to get it.
    """
    from transformers import AutoConfig
    try:
        return AutoConfig.from_pretrained(repo_id, cache_dir=hf_cache_dir(), local_files_only=True)
    except (OSError, ValueError):
        pass
    why = ("offline mode is set (AFWPIPE_OFFLINE / HF_HUB_OFFLINE)" if offline()
           else None if _host_resolves("huggingface.co") else "huggingface.co cannot be reached")
    if why is None:
        try:
            return AutoConfig.from_pretrained(repo_id, cache_dir=hf_cache_dir())
        except (OSError, ValueError) as e:
            why = f"the download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    raise WeightsError(
        f"{name}: random weights or a bare state-dict file need the model's config.json (its architecture), "
        f"which is not in the HF cache ({hf_cache_dir()}) and {why}.\nTo get it: on a machine with internet "
        f"`hf download {repo_id} config.json` and copy the hub cache folder here, or pass a transformers "
        f"model folder (config.json + weights) with --weights DIR")


def _model_from_folder(name: str, path: Path) -> torch.nn.Module:
    from transformers import AutoModel
    try:
        return AutoModel.from_pretrained(str(path))
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise WeightsError(f"{name}: cannot load a transformers model from {path}: {str(e)[:500]}") from e


def _model_from_state_dict(name: str, config, path: Path) -> torch.nn.Module:
    """``AutoModel`` of ``config`` with a bare state dict (keys of a ``*ForCTC`` checkpoint prefixed by the
    base model's name are accepted); every key but ``masked_spec_embed`` (training only) is required."""
    from transformers import AutoModel
    model = AutoModel.from_config(config)
    sd = load_checkpoint(name, path)
    prefix = f"{model.base_model_prefix}."
    sd = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}
    try:
        missing, _ = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatch
        raise WeightsError(f"{name}: {path} does not fit a {type(model).__name__}: {str(e)[:500]}") from e
    missing = [k for k in missing if k != "masked_spec_embed"]
    if missing:
        raise WeightsError(f"{name}: {path} lacks {len(missing)} keys of a {type(model).__name__}, e.g. {missing[:5]}")
    return model


def build_hf_audio(name: str, repo_id: str, weights=None, device: str = "cpu", layer=-1, chunk_s: float = 30.0,
                   architecture: str | None = None, normalize: bool = True) -> HfAudioEncoder:
    """A speech encoder from the transformers model ``repo_id``.

    Args:
        name: the encoder name recorded in the store (``hf:<repo_id>``, ``hubert``...).
        repo_id: hub repo of the default weights (HF cache, downloaded when online).
        weights: None (``repo_id`` from the HF cache or the hub), a transformers model folder, a bare
            state-dict file, or ``"random"`` (recorded as such). A file or ``"random"`` needs the
            architecture: ``architecture``'s default config, else ``repo_id``'s cached ``config.json``.
        layer: hidden state, or mean of a range (``"6-12"``); see :mod:`afwpipe.encoders.layers`.
        chunk_s: seconds of audio per forward pass (> 0).
        architecture: transformers ``model_type`` whose default config builds the model for a file or
            random weights (the aliases' base models); None: the repo's config.
        normalize: zero-mean / unit-variance wave unless the model folder's preprocessor config says.

    Raises:
        EncoderError: ``layer`` out of range or malformed, ``chunk_s`` not positive, or the model is neither a
            wav2vec2-style speech model (a convolutional waveform front end) nor an AST (AST ignores
            ``chunk_s``: its window is the model's ``max_length``).
        WeightsError: weights or config missing and not downloadable (the message says how to get them),
            or a folder / file that does not load.
    """
    if not chunk_s > 0:
        raise EncoderError(f"{name}: chunk_s must be positive, got {chunk_s}")
    resolved = resolve_weights(name, HubRepo(repo_id), weights)
    if resolved.random or resolved.path.is_file():
        from transformers import AutoConfig, AutoModel
        config = AutoConfig.for_model(architecture) if architecture else _hub_config(name, repo_id)
        model = (AutoModel.from_config(config) if resolved.random
                 else _model_from_state_dict(name, config, resolved.path))
    else:
        model = _model_from_folder(name, resolved.path)
        said = _do_normalize(resolved.path)
        normalize = normalize if said is None else bool(said)
    c = model.config
    if c.model_type == hf_ast.MODEL_TYPE:
        folder = None if resolved.random or resolved.path.is_file() else resolved.path
        return hf_ast.build_ast(name, repo_id, model, resolved.identity, folder, layer=layer, device=device)
    if not (hasattr(c, "conv_stride") and hasattr(c, "conv_kernel") and hasattr(c, "num_hidden_layers")):
        raise EncoderError(f"{name}: {type(model).__name__} ({c.model_type}) is neither a wav2vec2-style speech "
                           f"model (no convolutional waveform front end) nor an Audio Spectrogram Transformer; "
                           f"hf:<repo_id> takes wav2vec2, HuBERT, WavLM, data2vec-audio ... and AST models")
    first, last = layer_range(name, layer, c.num_hidden_layers + 1)
    hop, field = conv_geometry(c)
    extra = {"repo_id": repo_id, "architecture": c.model_type, "layer": layer_label(layer, first, last),
             "chunk_s": float(chunk_s), "chunk_context_states": pos_conv_reach(model), "normalize": normalize,
             "conv_hop": hop, "conv_receptive_field": field}
    cfg = EncoderConfig(name=name, modality="audio", dim=int(c.hidden_size), weights=resolved.identity,
                        sample_rate=AUDIO_SAMPLE_RATE, hop_s=hop / AUDIO_SAMPLE_RATE, extra=extra)
    return HfAudioEncoder(cfg, model, device)


def create_hf_audio(name: str, weights=None, device: str = "cpu", layer=-1, chunk_s: float = 30.0) -> HfAudioEncoder:
    """Alias ``name`` in ``default_cfgs`` (``hubert``, ``wav2vec2``): :func:`build_hf_audio` with its repo id,
    base architecture and normalisation. ``weights``: None (HF hub cache, downloaded when online), a model
    folder or state-dict file, or ``"random"`` (base config)."""
    x = default_cfgs[name].extra
    return build_hf_audio(name, x["repo_id"], weights, device, layer=layer, chunk_s=chunk_s,
                          architecture=x["architecture"], normalize=x["normalize"])


def hf_model(repo_id: str, weights=None, device: str = "cpu", layer=-1, chunk_s: float = 30.0) -> HfAudioEncoder:
    """``hf:<repo_id>``: any wav2vec2-style transformers speech model; see :func:`build_hf_audio`.

    Raises:
        EncoderError: ``repo_id`` is not a hub repo id; as :func:`build_hf_audio`.
    """
    if not REPO_ID.match(repo_id):
        raise EncoderError(f"unknown encoder 'hf:{repo_id}': {repo_id!r} is not a hub repo id (owner/name); "
                           f"a local model folder goes in with weights=DIR")
    return build_hf_audio(f"hf:{repo_id}", repo_id, weights, device, layer=layer, chunk_s=chunk_s)


for _name, _cfg in default_cfgs.items():
    register_encoder(_name, default_cfg=_cfg, source=HubRepo(_cfg.extra["repo_id"]))(partial(create_hf_audio, _name))
ENCODERS.register_family("hf:", hf_model, describe="<repo_id>", default_cfg=hf_family_cfg,
                         source="HF hub cache, or --weights DIR")
