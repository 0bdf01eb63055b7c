"""``logmel``: 80-bin log-Mel spectrogram, no weights. whisper's ``log_mel_spectrogram``
(25 ms Hann window, 10 ms hop, log10 with an 8-decade floor below the file's maximum, scaled
(x + 4) / 4), one state per 10 ms, averaged over each video frame's span."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from whisper.audio import HOP_LENGTH, N_FFT, log_mel_spectrogram

from .base import AUDIO_SAMPLE_RATE, AudioEncoder, EncoderConfig
from .registry import register_encoder
from .weights import resolve_weights

N_MELS = 80

default_cfgs = {
    "logmel": EncoderConfig(
        name="logmel", modality="audio", dim=N_MELS, weights="none", sample_rate=AUDIO_SAMPLE_RATE,
        hop_s=HOP_LENGTH / AUDIO_SAMPLE_RATE,
        extra={"n_mels": N_MELS, "window_s": N_FFT / AUDIO_SAMPLE_RATE, "source": "whisper.audio.log_mel_spectrogram"}),
}


class LogMelEncoder(AudioEncoder):
    mel_input = True

    def states(self, wave: torch.Tensor) -> torch.Tensor:
        n = wave.numel()
        wave = F.pad(wave, (0, max(N_FFT - n, 0)))  # the centred STFT needs a few hundred samples
        with torch.autocast(self.device.type, enabled=False):
            mel = log_mel_spectrogram(wave.float(), N_MELS)
        return self.view_mel(mel[:, :max(1, n // HOP_LENGTH)].T)


@register_encoder("logmel", default_cfg=default_cfgs["logmel"])
def logmel(weights=None, device: str = "cpu") -> LogMelEncoder:
    """80-bin log-Mel features; ``weights`` must be None or ``"random"`` (both mean none)."""
    resolved = resolve_weights("logmel", None, None if weights == "random" else weights)
    if resolved.path is not None:
        from ..errors import EncoderError
        raise EncoderError(f"logmel has no weights; got weights={weights!r}")
    return LogMelEncoder(default_cfgs["logmel"], device)
