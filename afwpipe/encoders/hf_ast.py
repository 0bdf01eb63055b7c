"""Audio Spectrogram Transformer (AST; Gong, Chung and Glass 2021, "AST: Audio Spectrogram Transformer",
Interspeech) from transformers: ``ASTModel`` on the log-Mel input its own ``ASTFeatureExtractor`` makes.
Built by ``hf:<repo_id>`` when the model's ``model_type`` is ``audio-spectrogram-transformer`` (e.g.
``hf:MIT/ast-finetuned-audioset-10-10-0.4593``, the alias ``ast``); see :mod:`afwpipe.encoders.hf_audio`.

Input: Kaldi-compatible filter banks (25 ms window, 10 ms hop, ``num_mel_bins`` bands, 128 in the AudioSet
models), normalised with the extractor's dataset mean and std, ``max_length`` frames per forward pass (1024:
10.24 s), the last window padded by the extractor as in training. The model cuts the (frame, band) plane into
16 x 16 patches every ``time_stride`` frames and ``frequency_stride`` bands (10 and 10) and adds two tokens
(CLS, distillation) in front.

States: for each time column of patches, the mean of its ``(num_mel_bins - 16) // frequency_stride + 1``
frequency patches' hidden states (the tokens are dropped): one state every ``time_stride`` frames (100 ms),
``(max_length - 16) // time_stride + 1`` per window (101). Successive windows start ``that many x
time_stride`` frames apart (1010 frames, overlapping by 14), so the states lie on one 100 ms grid over the
whole file. State j's patches cover [0.1 j, 0.1 j + 0.175) s: their centre is 37.5 ms after the grid's
(``align.average_per_frame`` takes state j at (j + 0.5) x 0.1 s), less than one frame at 25 fps.

``layer``: ``0`` the patch embeddings (with position embeddings), ``1..L-1`` the output of each Transformer
layer, ``L`` (= ``-1``, default) the model's ``last_hidden_state`` (the last layer after the final
LayerNorm); or the mean of a range (:mod:`afwpipe.encoders.layers`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import WeightsError
from .base import AUDIO_SAMPLE_RATE, AudioEncoder, EncoderConfig
from .layers import layer_label, layer_range

MODEL_TYPE = "audio-spectrogram-transformer"
FBANK_WINDOW, FBANK_HOP = 400, 160  # samples: the extractor's 25 ms frames every 10 ms


def grid(config) -> tuple[int, int]:
    """``(frequency patches, time patches)`` of one window of an ``ASTConfig`` (ASTEmbeddings.get_shape)."""
    f = (config.num_mel_bins - config.patch_size) // config.frequency_stride + 1
    t = (config.max_length - config.patch_size) // config.time_stride + 1
    return f, t


class AstEncoder(AudioEncoder):
    """AST states on its time-patch grid (module docstring); ``batch_size`` windows per forward pass."""

    mel_input = True

    def __init__(self, cfg: EncoderConfig, model: torch.nn.Module, extractor, device: str = "cpu",
                 batch_size: int = 4):
        super().__init__(cfg, device)
        self.model = model.eval().to(self.device)
        self.extractor = extractor
        c = model.config
        self.n_freq, self.n_time = grid(c)
        self.stride = int(c.time_stride)
        self.first, self.last = layer_range(cfg.name, cfg.extra["layer"], c.num_hidden_layers + 1)
        self.batch_size = batch_size

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, tokens, D]`` hidden state (or mean of the layer range) of input features ``x``."""
        out = self.model(x, output_hidden_states=True)
        layers = list(out.hidden_states)
        layers[-1] = out.last_hidden_state  # layer L: after the final LayerNorm
        chosen = layers[self.first:self.last + 1]
        return chosen[0] if len(chosen) == 1 else torch.stack(chosen).mean(0)

    def states(self, wave: torch.Tensor) -> torch.Tensor:
        """``(ceil(N / (time_stride x 160)), D)`` states of ``wave`` (N float32 samples at 16 kHz)."""
        n = wave.numel()
        n_states = max(1, math.ceil(n / (self.stride * FBANK_HOP)))
        step = self.n_time * self.stride * FBANK_HOP  # samples between windows
        length = (self.model.config.max_length - 1) * FBANK_HOP + FBANK_WINDOW  # samples of a full window
        wave_np = wave.float().cpu().numpy()
        starts = list(range(0, n_states * self.stride * FBANK_HOP, step))
        out = []
        for i in range(0, len(starts), self.batch_size):
            segs = [wave_np[s:s + length] for s in starts[i:i + self.batch_size]]
            segs = [np.pad(seg, (0, max(0, FBANK_WINDOW - seg.size))) for seg in segs]
            with torch.autocast(self.device.type, enabled=False):  # the filter banks in fp32, as the extractor
                x = self.extractor(segs, sampling_rate=AUDIO_SAMPLE_RATE, return_tensors="pt")["input_values"]
                if self.mel_view is not None:  # an audio view of each window's filter banks [frames, bands]
                    x = torch.stack([self.view_mel(w) for w in x])
            h = self._hidden(x.to(self.device))[:, 2:]  # the patches, frequency-major (ASTPatchEmbeddings)
            h = h.reshape(h.shape[0], self.n_freq, self.n_time, h.shape[-1]).mean(1)
            out.extend(h)
        return torch.cat(out)[:n_states]


def ast_extractor(name: str, config, folder: Path | None):
    """The model folder's ``ASTFeatureExtractor`` (its ``preprocessor_config.json``), else one with the
    model's ``num_mel_bins`` and ``max_length`` and transformers' defaults (AudioSet mean and std).

    Raises:
        WeightsError: the folder's extractor disagrees with the model on bands or frames.
    """
    from transformers import ASTFeatureExtractor
    if folder is not None and (folder / "preprocessor_config.json").is_file():
        fe = ASTFeatureExtractor.from_pretrained(str(folder))
    else:
        fe = ASTFeatureExtractor(num_mel_bins=config.num_mel_bins, max_length=config.max_length)
    if (fe.num_mel_bins, fe.max_length) != (config.num_mel_bins, config.max_length):
        raise WeightsError(f"{name}: {folder}/preprocessor_config.json gives {fe.num_mel_bins} bands x "
                           f"{fe.max_length} frames but the model takes {config.num_mel_bins} x {config.max_length}")
    if fe.sampling_rate != AUDIO_SAMPLE_RATE:
        raise WeightsError(f"{name}: the feature extractor expects {fe.sampling_rate} Hz audio, not 16 kHz")
    return fe


def build_ast(name: str, repo_id: str, model: torch.nn.Module, identity: str, folder: Path | None, layer=-1,
              device: str = "cpu") -> AstEncoder:
    """An :class:`AstEncoder` of a loaded ``ASTModel``.

    Args:
        name, repo_id: as :func:`afwpipe.encoders.hf_audio.build_hf_audio`.
        model: the ``ASTModel``.
        identity: the weights identity to record.
        folder: the model folder (its feature extractor), or None (random weights, a state-dict file).
        layer: hidden state or range (module docstring).

    Raises:
        EncoderError: ``layer`` out of range or malformed.
        WeightsError: see :func:`ast_extractor`.
    """
    c = model.config
    first, last = layer_range(name, layer, c.num_hidden_layers + 1)
    fe = ast_extractor(name, c, folder)
    n_freq, n_time = grid(c)
    extra = {"repo_id": repo_id, "architecture": c.model_type, "layer": layer_label(layer, first, last),
             "num_mel_bins": int(c.num_mel_bins), "max_length": int(c.max_length),
             "time_stride": int(c.time_stride), "frequency_stride": int(c.frequency_stride),
             "frequency_patches": n_freq, "time_patches": n_time, "normalize": bool(fe.do_normalize),
             "fbank_mean": float(fe.mean), "fbank_std": float(fe.std),
             "states": "time-patch column, mean over frequency patches"}
    cfg = EncoderConfig(name=name, modality="audio", dim=int(c.hidden_size), weights=identity,
                        sample_rate=AUDIO_SAMPLE_RATE, hop_s=c.time_stride * FBANK_HOP / AUDIO_SAMPLE_RATE,
                        extra=extra)
    return AstEncoder(cfg, model, fe, device)
