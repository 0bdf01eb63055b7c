"""``whisper`` (= base), ``whisper-tiny`` ... ``whisper-large-v3``, ``whisper-turbo``: the audio encoder
of OpenAI Whisper (Radford et al. 2022, https://github.com/openai/whisper), as in USTC's ABAW8 entry.

The whole waveform becomes one log-Mel spectrogram as ``whisper.transcribe`` makes it
(``log_mel_spectrogram(audio, n_mels, padding=N_SAMPLES)``: 25 ms window, 10 ms hop, the audio
followed by 30 s of zero samples, one floor 8 log10 units below the file's maximum), cut into 30 s
windows (3000 Mel frames -> 1500 states, 20 ms hop). The last window's states are cut to the real
length, ceil(frames / 2).

Padding of the last window: the Mel of the zero samples, i.e. the log of silence (the floor,
``(max - 4) / 4`` after whisper's ``(x + 4) / 4`` scaling, about -1 for speech), not
``whisper.transcribe``'s. transcribe (openai-whisper 20250625, ``transcribe.py``) cuts the last
segment at the audio's end and ``pad_or_trim``s the *Mel* with 0, a flat spectrum at 1e-4 power,
louder than silence. The encoder was trained on 30 s windows of audio (the training code is not
public); whisper's own single-window path, ``model.embed_audio(log_mel_spectrogram(pad_or_trim(audio)))``
(its README; transformers' ``WhisperFeatureExtractor`` does the same), pads the *audio* with zeros,
so we take that as the reference. openai/whisper discussion #838 (and whisper.cpp issue #579) reported
fewer hallucinations with audio padding than with Mel padding. Because attention mixes every
position, the padding changes every kept state of the last window, so the choice matters for
features. With one maximum per file (as transcribe) rather than per window, each window equals
``embed_audio(log_mel_spectrogram(pad_or_trim(window audio)))`` exactly whenever the window holds the
file's Mel maximum and its borders cut no STFT frame (tests/test_audio_encoders_reference.py).
Only the encoder is built and loaded; the decoder weights of the checkpoint are ignored.
"""

from __future__ import annotations

import math
import os
from functools import partial
from pathlib import Path

import torch
import whisper
from whisper.audio import HOP_LENGTH, N_FRAMES, N_SAMPLES, log_mel_spectrogram
from whisper.model import AudioEncoder as WhisperAudioEncoder

from ..errors import WeightsError
from .base import AUDIO_SAMPLE_RATE, AudioEncoder, EncoderConfig
from .registry import register_encoder
from .weights import UrlFile, load_checkpoint, resolve_weights

N_AUDIO_CTX = N_FRAMES // 2  # 1500 states per 30 s window
HOP_S = 2 * HOP_LENGTH / AUDIO_SAMPLE_RATE  # 0.02 s: the encoder's stride-2 conv over 10 ms Mel frames

# Encoder dims of the released checkpoints (their "dims" entry): n_mels, n_audio_state, n_audio_head, n_audio_layer.
WHISPER_DIMS = {
    "tiny": (80, 384, 6, 4),
    "base": (80, 512, 8, 6),
    "small": (80, 768, 12, 12),
    "medium": (80, 1024, 16, 24),
    "large-v2": (80, 1280, 20, 32),
    "large-v3": (128, 1280, 20, 32),
    "turbo": (128, 1280, 20, 32),  # large-v3-turbo: large-v3 encoder, pruned decoder
}


def whisper_cache_dir() -> Path:
    """whisper's own download folder (``whisper.load_model``'s default ``download_root``)."""
    return Path(os.getenv("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))) / "whisper"


def whisper_weights_source(size: str) -> UrlFile:
    url = whisper._MODELS[size]
    return UrlFile(url, folder=whisper_cache_dir, sha256=url.split("/")[-2])


def whisper_config(size: str, name: str) -> EncoderConfig:
    n_mels, n_state, _, n_layer = WHISPER_DIMS[size]
    return EncoderConfig(
        name=name, modality="audio", dim=n_state, sample_rate=AUDIO_SAMPLE_RATE, hop_s=HOP_S,
        extra={"size": size, "n_mels": n_mels, "n_layers": n_layer, "window_s": 30.0,
               "alignment": "states averaged over each video frame's span"})


default_cfgs = {"whisper": whisper_config("base", "whisper"),
                **{f"whisper-{size}": whisper_config(size, f"whisper-{size}") for size in WHISPER_DIMS}}


class WhisperEncoder(AudioEncoder):
    """Whisper's audio encoder over 30 s windows; ``batch_size`` windows per forward pass."""

    mel_input = True

    def __init__(self, cfg: EncoderConfig, model: WhisperAudioEncoder, device: str = "cpu", batch_size: int = 4):
        super().__init__(cfg, device)
        self.model = model.eval().to(self.device)
        self.batch_size = batch_size

    def states(self, wave: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, enabled=False):  # the Mel stays fp32 as whisper makes it
            mel = log_mel_spectrogram(wave.float(), self.cfg.extra["n_mels"], padding=N_SAMPLES)
        content = mel.shape[-1] - N_FRAMES  # real Mel frames, N // 160
        if self.mel_view is not None:  # an audio view of the real frames; the padding stays silence
            mel = torch.cat([self.view_mel(mel[:, :content].T).T, mel[:, content:]], dim=1)
        seeks = list(range(0, max(content, 1), N_FRAMES))
        keep = [max(1, min(N_AUDIO_CTX, math.ceil((min(content, s + N_FRAMES) - s) / 2))) for s in seeks]
        out = []
        for i in range(0, len(seeks), self.batch_size):
            batch = torch.stack([mel[:, s:s + N_FRAMES] for s in seeks[i:i + self.batch_size]])
            states = self.model(batch)
            out += [st[:k] for st, k in zip(states, keep[i:i + self.batch_size])]
        return torch.cat(out)


def _load_encoder(name: str, size: str, path: Path) -> WhisperAudioEncoder:
    ckpt = load_checkpoint(name, path)
    try:
        dims, sd = ckpt["dims"], ckpt["model_state_dict"]
        n_mels, n_state, n_head, n_layer = WHISPER_DIMS[size]
        got = (dims["n_mels"], dims["n_audio_state"], dims["n_audio_head"], dims["n_audio_layer"])
    except (KeyError, TypeError) as e:
        raise WeightsError(f"{name}: {path} is not a whisper checkpoint (no dims / model_state_dict)") from e
    if got != (n_mels, n_state, n_head, n_layer):
        raise WeightsError(f"{name}: {path} holds a whisper encoder with dims {got}, not whisper {size}'s "
                           f"{(n_mels, n_state, n_head, n_layer)}")
    model = WhisperAudioEncoder(n_mels, dims["n_audio_ctx"], n_state, n_head, n_layer)
    enc = {k[len("encoder."):]: v.float() for k, v in sd.items() if k.startswith("encoder.")}
    try:
        model.load_state_dict(enc, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{name}: {path}: encoder weights do not fit: {str(e)[:500]}") from e
    return model


def create_whisper(size: str, name: str, weights=None, device: str = "cpu", batch_size: int = 4) -> WhisperEncoder:
    """Whisper encoder of ``size`` (a key of ``WHISPER_DIMS``). ``weights``: None (whisper's cache
    ``~/.cache/whisper/<size>.pt``, downloaded when online), a whisper ``.pt`` file, or ``"random"``."""
    cfg = default_cfgs[name]
    resolved = resolve_weights(cfg.name, whisper_weights_source(size), weights)
    if resolved.random:
        n_mels, n_state, n_head, n_layer = WHISPER_DIMS[size]
        model = WhisperAudioEncoder(n_mels, N_AUDIO_CTX, n_state, n_head, n_layer)
    else:
        model = _load_encoder(cfg.name, size, resolved.path)
    return WhisperEncoder(cfg.with_(weights=resolved.identity), model, device, batch_size)


for _name, _cfg in default_cfgs.items():
    register_encoder(_name, default_cfg=_cfg, source=whisper_weights_source(_cfg.extra["size"]))(
        partial(create_whisper, _cfg.extra["size"], _name))
