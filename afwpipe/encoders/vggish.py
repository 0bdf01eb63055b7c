"""``vggish``: VGGish (Hershey et al. 2017, "CNN architectures for large-scale audio classification",
ICASSP), the AudioSet embedding network that Fuxi's ABAW5/ABAW6 entries pair with HuBERT for EXPR and VA.

Front end (Google's reference, tensorflow/models ``research/audioset/vggish``: ``vggish_params.py``,
``mel_features.py``, ``vggish_input.py``): 16 kHz mono; frames of 25 ms (400 samples) every 10 ms (160
samples), no centring (frame i covers samples [160 i, 160 i + 400)); a periodic Hann window; the
*magnitude* of a 512-point real FFT (257 bins); 64 Mel bands from 125 to 7500 Hz on the HTK Mel scale
(``1127 ln(1 + f / 700)``), triangles linear in Mel, unnormalised, the DC bin zeroed; ``log(mel + 0.01)``.
Examples are 0.96 s patches of 96 frames x 64 bands.

Network: four VGG blocks (3x3 convolutions 64 | 128 | 256, 256 | 512, 512, each block followed by 2x2 max
pooling) then 4096 -> 4096 -> 128 fully connected layers; the convolution output is flattened in
TensorFlow's (time, frequency, channel) order. The 128-D embedding has no ReLU, as ``vggish_slim.py``
defines it today (``fc2`` with ``activation_fn=None``); ``relu=True`` adds the ReLU of the older
definition that the PyTorch port harritaylor/torchvggish kept. The AudioSet release's PCA whitening and
8-bit quantisation (``vggish_postprocess.py``) are not applied: they are a linear map plus a loss of
precision, and the heads standardise every feature anyway.

Weights: the PyTorch conversion of Google's checkpoint that ``torch.hub.load("harritaylor/torchvggish",
"vggish")`` downloads (``vggish-10086976.pth``, a state dict with this module's keys), from torch hub's
checkpoint folder, downloaded when online; ``--weights FILE`` takes that file or any state dict of the same
keys; ``weights="random"`` for tests.

Per video frame: the reference cuts non-overlapping examples (hop 0.96 s). ``example_hop_s`` (a multiple
of 10 ms up to 0.96 s) sets the hop between examples: state j is the embedding of the example centred on
[j hop, (j + 1) hop) (the wave is preceded by ``(96 - hop frames) // 2`` frames of zeros, so the first
examples see silence before the audio, as the last ones after it), and video frames average the states
whose span centre they hold (:func:`afwpipe.encoders.align.average_per_frame`). With the default 0.96 s
a 25 fps video has 24 frames per state; 0.1 s costs 9.6 times the compute and follows faster changes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import EncoderError, WeightsError
from .base import AUDIO_SAMPLE_RATE, AudioEncoder, EncoderConfig
from .registry import register_encoder
from .weights import UrlFile, load_checkpoint, resolve_weights

WINDOW = 400  # samples: 25 ms at 16 kHz (vggish_params.STFT_WINDOW_LENGTH_SECONDS)
HOP = 160  # samples: 10 ms (STFT_HOP_LENGTH_SECONDS)
FFT = 512  # the next power of two of the window, as mel_features.log_mel_spectrogram takes it
N_BANDS = 64  # NUM_MEL_BINS
F_MIN, F_MAX = 125.0, 7500.0  # MEL_MIN_HZ, MEL_MAX_HZ
LOG_OFFSET = 0.01  # LOG_OFFSET: log(mel + 0.01) avoids log(0)
EXAMPLE_FRAMES = 96  # EXAMPLE_WINDOW_SECONDS 0.96 / 10 ms
EMBEDDING = 128  # EMBEDDING_SIZE

WEIGHTS_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"

default_cfgs = {
    "vggish": EncoderConfig(
        name="vggish", modality="audio", dim=EMBEDDING, sample_rate=AUDIO_SAMPLE_RATE,
        hop_s=EXAMPLE_FRAMES * HOP / AUDIO_SAMPLE_RATE,
        extra={"example_s": EXAMPLE_FRAMES * HOP / AUDIO_SAMPLE_RATE, "n_mels": N_BANDS, "fmin": F_MIN,
               "fmax": F_MAX, "log_offset": LOG_OFFSET, "relu": False,
               "source": "Hershey et al. 2017; tensorflow/models research/audioset/vggish"}),
}


def torch_hub_checkpoints():
    """torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``), read at call time."""
    from pathlib import Path
    return Path(torch.hub.get_dir()) / "checkpoints"


def vggish_weights_source() -> UrlFile:
    """The torchvggish release file, checked against the sha256 prefix in its name (torch hub's convention)."""
    return UrlFile(WEIGHTS_URL, folder=torch_hub_checkpoints, sha256_prefix="10086976")


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """HTK Mel scale, ``1127 ln(1 + f / 700)`` (mel_features.hertz_to_mel)."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_matrix(n_bins: int = FFT // 2 + 1, n_bands: int = N_BANDS, sample_rate: int = AUDIO_SAMPLE_RATE,
               fmin: float = F_MIN, fmax: float = F_MAX) -> np.ndarray:
    """float64 ``[n_bins, n_bands]`` weights from an rFFT magnitude spectrum to Mel bands: band b is a triangle
    over ``n_bands + 2`` edges equally spaced in Mel between ``fmin`` and ``fmax``, rising from edge b to its
    centre b + 1 and falling to edge b + 2, evaluated at each FFT bin's Mel frequency; the DC bin gets no
    weight."""
    bins_mel = hz_to_mel(np.linspace(0.0, sample_rate / 2, n_bins))
    edges = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_bands + 2)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    rise = (bins_mel[:, None] - lo) / (mid - lo)
    fall = (hi - bins_mel[:, None]) / (hi - mid)
    w = np.maximum(0.0, np.minimum(rise, fall))
    w[0] = 0.0
    return w


def log_mel(wave: torch.Tensor) -> torch.Tensor:
    """VGGish's log-Mel spectrogram of a 16 kHz wave (module docstring).

    Args:
        wave: float32 ``[N]`` samples at 16 kHz, N >= 400.

    Returns:
        float32 ``[1 + (N - 400) // 160, 64]``: frame i covers samples [160 i, 160 i + 400).

    Raises:
        ValueError: fewer than 400 samples (no whole frame).
    """
    if wave.ndim != 1 or wave.numel() < WINDOW:
        raise ValueError(f"vggish log-Mel needs a 1-D wave of at least {WINDOW} samples, got {tuple(wave.shape)}")
    frames = wave.float().unfold(0, WINDOW, HOP)
    window = torch.hann_window(WINDOW, periodic=True, dtype=torch.float32, device=wave.device)
    mag = torch.fft.rfft(frames * window, n=FFT).abs()
    weights = torch.as_tensor(mel_matrix(), dtype=torch.float32, device=wave.device)
    return torch.log(mag @ weights + LOG_OFFSET)


class VGGishNet(nn.Module):
    """The VGGish network (module docstring) with the state-dict keys of the torchvggish checkpoint:
    ``features.{0,3,6,8,11,13}`` (convolutions), ``embeddings.{0,2,4}`` (fully connected)."""

    def __init__(self, relu: bool = False):
        super().__init__()
        layers, c = [], 1
        for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        fc = [nn.Linear(512 * 6 * 4, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
              nn.Linear(4096, EMBEDDING)]
        self.embeddings = nn.Sequential(*fc, *([nn.ReLU(inplace=True)] if relu else []))

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """``[B, 96, 64]`` log-Mel examples (time, band) -> ``[B, 128]`` embeddings."""
        x = self.features(examples[:, None])  # [B, 512, 6, 4]: (channel, time, band)
        return self.embeddings(x.permute(0, 2, 3, 1).flatten(1))  # TensorFlow's NHWC flatten order


class VGGishEncoder(AudioEncoder):
    """VGGish embeddings of log-Mel examples every ``example_hop_s`` (module docstring)."""

    mel_input = True

    def __init__(self, cfg: EncoderConfig, model: VGGishNet, device: str = "cpu", batch_size: int = 64):
        super().__init__(cfg, device)
        self.model = model.eval().to(self.device)
        self.hop_frames = int(round(cfg.hop_s * AUDIO_SAMPLE_RATE / HOP))
        self.batch_size = batch_size

    def examples(self, wave: torch.Tensor) -> torch.Tensor:
        """``[S, 96, 64]`` log-Mel examples, S = ceil(N / hop samples) (at least 1): example j centred on
        [j hop, (j + 1) hop) seconds, zero samples before and after the wave."""
        h = self.hop_frames
        lead = (EXAMPLE_FRAMES - h) // 2 * HOP
        n_states = max(1, math.ceil(wave.numel() / (h * HOP)))
        need = ((n_states - 1) * h + EXAMPLE_FRAMES - 1) * HOP + WINDOW
        x = F.pad(wave, (lead, max(0, need - lead - wave.numel())))[:need]
        return self.view_mel(log_mel(x)).unfold(0, EXAMPLE_FRAMES, h).transpose(1, 2)

    def states(self, wave: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, enabled=False):  # the log-Mel in fp32, as the reference
            ex = self.examples(wave.float())
        return torch.cat([self.model(ex[i:i + self.batch_size]) for i in range(0, len(ex), self.batch_size)])


def _load(path, relu: bool) -> VGGishNet:
    model = VGGishNet(relu)
    sd = load_checkpoint("vggish", path)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    try:
        model.load_state_dict(sd, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise WeightsError(f"vggish: {path} is not a VGGish state dict (torchvggish's vggish-10086976.pth "
                           f"keys features.* / embeddings.*): {str(e)[:500]}") from e
    return model


@register_encoder("vggish", default_cfg=default_cfgs["vggish"], source=vggish_weights_source())
def vggish(weights=None, device: str = "cpu", example_hop_s: float = 0.96, relu: bool = False,
           batch_size: int = 64) -> VGGishEncoder:
    """VGGish (module docstring).

    Args:
        weights: None (torch hub's ``checkpoints/vggish-10086976.pth``, downloaded when online), a state-dict
            file, or ``"random"`` (recorded as such).
        example_hop_s: seconds between examples (the states' hop), a multiple of 0.01 in [0.01, 0.96];
            0.96 (non-overlapping) is the reference.
        relu: ReLU on the embedding (torchvggish's older definition); False: ``vggish_slim.py`` today.
        batch_size: examples per forward pass.

    Raises:
        EncoderError: ``example_hop_s`` not a multiple of 10 ms in [0.01, 0.96].
        WeightsError: weights missing and not downloadable (says how to get them), or a file that is not a
            VGGish state dict.
    """
    frames = float(example_hop_s) * AUDIO_SAMPLE_RATE / HOP
    if not (1 <= round(frames) <= EXAMPLE_FRAMES and abs(frames - round(frames)) < 1e-6):
        raise EncoderError(f"vggish: example_hop_s={example_hop_s!r} must be a multiple of 0.01 s between 0.01 "
                           f"and 0.96 (the example length)")
    resolved = resolve_weights("vggish", vggish_weights_source(), weights)
    model = VGGishNet(bool(relu)) if resolved.random else _load(resolved.path, bool(relu))
    cfg = default_cfgs["vggish"]
    cfg = cfg.with_(weights=resolved.identity, hop_s=round(frames) * HOP / AUDIO_SAMPLE_RATE,
                    extra={**cfg.extra, "relu": bool(relu)})
    return VGGishEncoder(cfg, model, device, int(batch_size))
