"""What every encoder is: a config (data, written into the feature store) and one encode method.

Two kinds, by modality:

* :class:`VisualEncoder`: ``encode_crops(crops uint8 [B,S,S,3] RGB) -> float32 [B,D]``. The encoder
  resizes and normalises itself, so preprocessing always travels with the weights.
* :class:`AudioEncoder`: ``encode_audio(wave float32 [N] at 16 kHz, frame_times float64 [T] s)
  -> float32 [T,D]``: model states on a fixed hop, averaged over each video frame's span
  (:func:`afwpipe.encoders.align.average_per_frame`).

Inference runs under ``torch.inference_mode``; on CUDA under bf16 autocast, on CPU in fp32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..device import autocast
from ..labels import AUDIO_SAMPLE_RATE
from .align import average_per_frame, stats_per_frame
from .audio_options import POOLS, peak_normalize



@dataclass(frozen=True)
class EncoderConfig:
    """An encoder's "pretrained config" (timm ``default_cfgs`` style): everything needed to reproduce
    its features, stored as attributes of ``features/<encoder>.zarr``.

    Attributes:
        name: registry name, e.g. ``"mae"`` or ``"timm:resnet18"``.
        modality: ``"visual"`` or ``"audio"``.
        dim: feature size D of one frame.
        weights: weights identity: a hub id (``"timm/vit_base_patch16_224.mae"``, with ``@<commit>``
            when the cache says which), ``"sha256:<hex>"`` of an explicit file, ``"random"``, or
            ``"none"`` (no weights, e.g. ``logmel``).
        input_size: side in pixels of the square model input (visual).
        mean, std: per-channel normalisation applied to [0,1] pixels (visual).
        interpolation: resize mode from the crop size to ``input_size`` (visual).
        sample_rate: audio rate in Hz (audio).
        hop_s: seconds between successive model states (audio).
        extra: encoder-specific settings (model id, hidden layer, window length...).
    """

    name: str
    modality: str
    dim: int
    weights: str = "unset"
    input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    sample_rate: int | None = None
    hop_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> "EncoderConfig":
        """A copy with some fields changed (e.g. the resolved ``weights`` identity)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists, ``None`` fields dropped, ``extra`` merged in)."""
        d = asdict(self)
        extra = d.pop("extra")
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if v is not None}
        out.update(extra)
        return out


class Encoder:
    """Common part: the config and the device. Subclasses hold the torch module (if any)."""

    def __init__(self, cfg: EncoderConfig, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)

    @property
    def config(self) -> dict[str, Any]:
        """The config as a plain dict, to write into the feature store's attributes."""
        return self.cfg.to_dict()

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def frame_arrays(self, feats: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
        """Extra per-frame arrays the extract step stores beside ``emb`` (name -> ``[T]`` array), computed
        from this video's float32 features ``feats [T, D]`` and ``present [T]``; none by default (``vad``:
        ``speech``)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cfg.name!r}, dim={self.cfg.dim}, weights={self.cfg.weights!r})"


class VisualEncoder(Encoder):
    """Face crops in, one vector per crop out. Subclasses implement :meth:`forward`."""

    batch_size = 64

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,S,S] float in [0,1] -> model input: resized to ``input_size``, normalised."""
        size = self.cfg.input_size
        if x.shape[-1] != size or x.shape[-2] != size:
            mode = self.cfg.interpolation if self.cfg.interpolation in ("bilinear", "bicubic") else "bilinear"
            x = F.interpolate(x, size=(size, size), mode=mode, align_corners=False, antialias=True)
        mean = torch.tensor(self.cfg.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.cfg.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed batch -> [B,D] features."""
        raise NotImplementedError

    def encode_crops(self, crops: np.ndarray | torch.Tensor) -> np.ndarray:
        """Encode face crops.

        Args:
            crops: uint8 [B,S,S,3] RGB (numpy or torch, a torch tensor possibly on the encoder's device, e.g.
                JPEG crops decoded there by nvJPEG), any square size S.

        Returns:
            float32 [B,D] numpy array.

        Raises:
            ValueError: not uint8 or not [B,S,S,3].
        """
        x = torch.as_tensor(crops)
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] != x.shape[2]:
            raise ValueError(f"{self.name}: crops must be uint8 [B,S,S,3] RGB, got {x.dtype} {tuple(x.shape)}")
        out = []
        with torch.inference_mode():
            for i in range(0, x.shape[0], self.batch_size):
                xb = x[i:i + self.batch_size]
                if self.device.type == "cuda" and xb.device.type == "cpu":  # pinned host memory: the copy
                    xb = xb.pin_memory().to(self.device, non_blocking=True)  # overlaps the previous batch
                else:
                    xb = xb.to(self.device)
                xb = xb.permute(0, 3, 1, 2).float().div_(255.0)
                with autocast(self.device):
                    out.append(self.forward(self.preprocess(xb)).float().cpu())
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return torch.cat(out).numpy().astype(np.float32, copy=False)


class AudioEncoder(Encoder):
    """A 16 kHz waveform in, one vector per video frame out. Subclasses implement :meth:`states`.
    :meth:`set_audio_options` adds peak normalisation of the wave and statistics pooling
    (:mod:`afwpipe.encoders.audio_options`)."""

    #: True for encoders that compute a log-Mel spectrogram from the wave and pass it through :meth:`view_mel`
    #: (they take the audio views of :mod:`afwpipe.audio_views`)
    mel_input = False
    #: ``[M frames, F bands] -> [M, F]`` transform of the log-Mel (an audio view), or None
    mel_view = None

    def view_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel [M frames, F bands]`` through :attr:`mel_view` (unchanged without one)."""
        return mel if self.mel_view is None else self.mel_view(mel)

    def set_audio_options(self, pool: str = "mean", peak_normalize: bool = False) -> None:
        """Read the wave peak-normalised and / or pool the states of a frame as ``[mean, std]`` (dim doubles);
        recorded in ``cfg.extra`` (``pool: stats``, ``peak_normalize: true``) only when not the defaults.

        Raises:
            ValueError: ``pool`` not one of :data:`~afwpipe.encoders.audio_options.POOLS`.
        """
        if pool not in POOLS:
            raise ValueError(f"{self.name}: pool={pool!r} is not one of {', '.join(POOLS)}")
        extra = dict(self.cfg.extra)
        dim = self.cfg.dim
        if pool != "mean" and extra.get("pool", "mean") == "mean":
            extra["pool"], dim = pool, 2 * dim
        if peak_normalize:
            extra["peak_normalize"] = True
        self.cfg = self.cfg.with_(dim=dim, extra=extra)

    def states(self, wave: torch.Tensor) -> torch.Tensor:
        """float32 [N] waveform (on the device) -> [S,D] states, state j covering
        [j*hop_s, (j+1)*hop_s) seconds."""
        raise NotImplementedError

    def encode_audio(self, wave: np.ndarray | torch.Tensor, frame_times: np.ndarray) -> np.ndarray:
        """Encode a waveform and align it to the video's frames.

        Args:
            wave: float32 [N] mono samples at 16 kHz (``cfg.sample_rate``), N > 0.
            frame_times: float64 [T] start time in seconds of each video frame (non-decreasing).

        Returns:
            float32 [T,D]: states averaged over [t_i, t_{i+1}) (see ``average_per_frame``); with ``pool: stats``
            their mean and std (``stats_per_frame``, D = twice the states' size). With ``peak_normalize`` the
            wave is first divided by its peak absolute sample.

        Raises:
            ValueError: wave not 1-D or empty; frame_times not 1-D or decreasing.
        """
        w = torch.as_tensor(np.asarray(wave, dtype=np.float32) if not torch.is_tensor(wave) else wave)
        if w.ndim != 1 or w.numel() == 0:
            raise ValueError(f"{self.name}: wave must be a non-empty 1-D float array, got shape {tuple(w.shape)}")
        if self.cfg.extra.get("peak_normalize"):
            w = peak_normalize(w.float())
        times = np.asarray(frame_times, dtype=np.float64)
        if times.ndim != 1:
            raise ValueError(f"{self.name}: frame_times must be 1-D, got shape {times.shape}")
        if times.size == 0:
            return np.zeros((0, self.dim), np.float32)
        with torch.inference_mode(), autocast(self.device):
            s = self.states(w.float().to(self.device))
        pool = stats_per_frame if self.cfg.extra.get("pool") == "stats" else average_per_frame
        return pool(s.float().cpu().numpy(), self.cfg.hop_s, times)
