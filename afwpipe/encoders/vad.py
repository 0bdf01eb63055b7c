"""``vad``: speech activity, the probability that someone speaks, from Silero VAD (Silero Team,
https://github.com/snakers4/silero-vad, MIT licence), the TorchScript model ``silero_vad.jit`` that the
``silero-vad`` wheel carries (``silero_vad/data/silero_vad.jit``, so it works offline).

The model reads 16 kHz audio in windows of 512 samples (32 ms, its only window at 16 kHz), each preceded
by the last 64 samples of the previous window (zeros before the first; ``context_size_samples``), and
emits one speech probability per window through an LSTM state carried from window to window. The last
window is zero-padded to 512 samples. This is exactly the library's ``model.audio_forward(wave, 16000)``
(and ``get_speech_timestamps``' loop); here the STFT and convolutional encoder of the model run on all
windows in one batch and only the LSTM cell steps window by window, which gives the same numbers
(tests/test_vad.py compares with ``audio_forward``) several times faster on CPU.

Per video frame: the mean probability of the windows whose centre lies in the frame's span
(:func:`afwpipe.encoders.align.average_per_frame`, hop 0.032 s), ``emb [T, 1]``. The extract step also
stores ``speech [T] bool``: probability ≥ ``threshold`` (default 0.5, silero's default threshold of
``get_speech_timestamps``) on frames inside the audio track.

The package is located with ``importlib.metadata`` and never imported: ``silero_vad/__init__`` calls
``torch.set_num_threads(1)`` for the whole process.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import EncoderError, WeightsError
from .base import AUDIO_SAMPLE_RATE, AudioEncoder, EncoderConfig
from .registry import register_encoder
from .weights import PackageFile, resolve_weights

WINDOW = 512  #: samples per window (and state) at 16 kHz, silero's only size at this rate
CONTEXT = 64  #: samples of the previous window prepended to each (the model's ``context_size_samples``)
THRESHOLD = 0.5  #: silero's default speech threshold (``get_speech_timestamps(threshold=0.5)``)
BLOCK = 4096  #: windows per batched encoder pass (about 131 s of audio), bounds memory
SOURCE = PackageFile("silero-vad", "silero_vad/data/silero_vad.jit")

default_cfgs = {
    "vad": EncoderConfig(
        name="vad", modality="audio", dim=1, sample_rate=AUDIO_SAMPLE_RATE, hop_s=WINDOW / AUDIO_SAMPLE_RATE,
        extra={"threshold": THRESHOLD, "window_samples": WINDOW, "context_samples": CONTEXT,
               "output": "speech probability in [0, 1]",
               "source": "silero-vad (Silero Team, github.com/snakers4/silero-vad) silero_vad/data/silero_vad.jit"}),
}


def load_silero_jit(path: Path, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """The TorchScript Silero VAD model of ``path`` in eval mode (as ``silero_vad.utils_vad.init_jit_model``).

    Raises:
        WeightsError: the file is not a Silero VAD TorchScript model.
    """
    try:
        with warnings.catch_warnings():  # torch 2.9+ marks torch.jit.load deprecated; the model ships as TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location=device)
        parts = model._model.stft, model._model.encoder, model._model.decoder.rnn, model._model.decoder.decoder
    except Exception as e:  # torch raises RuntimeError / ValueError / AttributeError for other files
        raise WeightsError(f"vad: {path} is not a Silero VAD TorchScript model: {type(e).__name__}: {e}") from e
    del parts
    return model.eval()


class SileroVAD(AudioEncoder):
    """16 kHz wave -> ``[S, 1]`` speech probabilities, one per 512-sample window (see the module docstring)."""

    def __init__(self, cfg: EncoderConfig, model: torch.jit.ScriptModule, device: str = "cpu"):
        super().__init__(cfg, device)
        self.model = model
        self.threshold = float(cfg.extra["threshold"])

    def states(self, wave: torch.Tensor) -> torch.Tensor:
        m = self.model._model
        n = wave.numel()
        win = F.pad(wave.float(), (0, (-n) % WINDOW)).view(-1, WINDOW)
        ctx = torch.cat([win.new_zeros(1, CONTEXT), win[:-1, -CONTEXT:]])
        x = torch.cat([ctx, win], dim=1)  # [S, 576]
        with torch.autocast(self.device.type, enabled=False):
            feats = torch.cat([m.encoder(m.stft(x[i:i + BLOCK])).squeeze(-1) for i in range(0, len(x), BLOCK)])
            h = c = feats.new_zeros(1, feats.shape[1])
            hs = []
            for i in range(len(feats)):  # the LSTM state runs through the windows in order
                h, c = m.decoder.rnn(feats[i:i + 1], (h, c))
                hs.append(h)
            out = m.decoder.decoder(torch.cat(hs).unsqueeze(-1))  # [S, 1, 1]
        return out.squeeze(1).mean(dim=1, keepdim=True).float()

    def frame_arrays(self, feats: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
        """``speech [T] bool``: per-frame probability ≥ ``threshold`` inside the audio track."""
        return {"speech": (feats[:, 0] >= self.threshold) & present}


@register_encoder("vad", default_cfg=default_cfgs["vad"], source=SOURCE)
def vad(weights=None, device: str = "cpu", threshold: float = THRESHOLD) -> SileroVAD:
    """Silero VAD speech probability; ``weights``: None (the installed ``silero-vad`` wheel's
    ``silero_vad.jit``) or a Silero VAD TorchScript file. ``threshold``: the ``speech`` mask's cut.

    Raises:
        EncoderError: ``weights="random"`` (a VAD of random weights detects nothing), or a threshold
            outside [0, 1].
        WeightsError: silero-vad is not installed, or the file is not a Silero VAD model.
    """
    if weights is not None and str(weights) == "random":
        raise EncoderError("vad: weights='random' is not supported; the Silero model ships in the silero-vad "
                           "wheel (pip install silero-vad)")
    if not 0.0 <= float(threshold) <= 1.0:
        raise EncoderError(f"vad: threshold must be in [0, 1], got {threshold}")
    cfg = default_cfgs["vad"]
    resolved = resolve_weights(cfg.name, SOURCE, weights)
    model = load_silero_jit(resolved.path, device)
    extra = {**cfg.extra, "threshold": float(threshold)}
    return SileroVAD(cfg.with_(weights=resolved.identity, extra=extra), model, device)
