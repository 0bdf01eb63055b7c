"""Cached local views of the audio: the log-Mel input of an encoder seen through seeded random time and
frequency crops or frequency masks (USTC's ABAW8 entry builds such local views of the audio beside the global
one; the masking is SpecAugment's, Park et al. 2019). ``afwpipe extract --views`` encodes the wave once per
view and stores ``emb_<view>`` beside ``emb`` (the global view, ``full``), as for face crops
(:mod:`afwpipe.views`).

Only encoders that compute a log-Mel spectrogram from the wave take them (``logmel``, ``whisper*``,
``vggish``, AST models through ``hf:``): their states are then computed from the transformed spectrogram.
The spectrogram is cut into blocks of :data:`BLOCK` frames (1 s at the 10 ms hop every one of them uses),
and each block is transformed with its own random draw, so every second of a video is seen through its own
crop or mask while the states stay on the video's clock (a crop of the whole file, resized back, would move
every state away from its frame).

View names (``X`` a fraction in (0, 1), ``W`` a whole number of bands):

* ``fcrop<X>``: in each block, ``round(X * F)`` consecutive Mel bands at a random offset, linearly resized
  back to the F bands (a zoom on part of the spectrum).
* ``tcrop<X>``: in each block of ``b`` frames, ``round(X * b)`` consecutive frames at a random offset,
  linearly resized back to ``b`` frames (a local time zoom; a frame moves by at most ``(1 - X) * b`` frames,
  0.2 s for ``tcrop0.8``).
* ``tfcrop<X>``: both crops, the frequency crop first.
* ``fmask<W>``: in each block, a band of ``w ~ U{0..W}`` consecutive Mel bands at a random offset set to
  the block's mean log-Mel value (SpecAugment's frequency masking, one mask per block).

Seeds: block draws come from ``numpy.random.default_rng(crc32("<video>/<view>"))``, so a view of a video is
the same on every run and machine, and two views or two videos draw independently.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import torch
import torch.nn.functional as F

#: log-Mel frames per block of independent draws (1 s at 10 ms)
BLOCK = 100
_CROP = re.compile(r"^(fcrop|tcrop|tfcrop)(0?\.\d+)$")
_MASK = re.compile(r"^fmask([1-9]\d*)$")
AUDIO_VIEW_HELP = ("audio views (log-Mel-input encoders: logmel, whisper*, vggish, AST): fcrop<X> | tcrop<X> | "
                   "tfcrop<X> (frequency / time / both crops of X, 0<X<1, resized back, per 1 s block), "
                   "fmask<W> (a band of up to W Mel bands masked per 1 s block)")


def is_audio_view(name: str) -> bool:
    """Whether ``name`` is a well-formed audio view name (crop fraction strictly between 0 and 1)."""
    m = _CROP.match(name)
    return bool(_MASK.match(name)) or (m is not None and 0.0 < float(m.group(2)) < 1.0)


def view_rng(video: str, view: str) -> np.random.Generator:
    """The random generator of ``view`` of ``video`` (module docstring)."""
    return np.random.default_rng(zlib.crc32(f"{video}/{view}".encode()))


def _resize(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """``x`` (2-D) linearly resized to ``size`` along ``dim`` (0 or 1; ``align_corners=False``)."""
    y = x.movedim(dim, -1)[None]
    y = F.interpolate(y.float(), size=size, mode="linear", align_corners=False)[0]
    return y.movedim(-1, dim).to(x.dtype)


def _crop(block: torch.Tensor, frac: float, dim: int, rng: np.random.Generator) -> torch.Tensor:
    n = block.shape[dim]
    keep = min(n, max(1, int(round(frac * n))))
    start = int(rng.integers(0, n - keep + 1))
    return _resize(block.narrow(dim, start, keep), n, dim)


def apply_mel_view(mel: torch.Tensor, view: str, rng: np.random.Generator) -> torch.Tensor:
    """The log-Mel spectrogram ``mel`` seen through audio view ``view``.

    Args:
        mel: ``[M, F]`` log-Mel (frames x bands), float.
        view: an audio view name (:func:`is_audio_view`).
        rng: the generator of the draws (:func:`view_rng`); consumed block by block in time order.

    Returns:
        ``[M, F]`` tensor of the same dtype and device.

    Raises:
        ValueError: ``view`` is not an audio view name, or ``mel`` is not 2-D.
    """
    if not is_audio_view(view):
        raise ValueError(f"unknown audio view {view!r}; {AUDIO_VIEW_HELP}")
    if mel.ndim != 2:
        raise ValueError(f"audio view {view}: log-Mel must be [frames, bands], got shape {tuple(mel.shape)}")
    blocks = []
    for start in range(0, mel.shape[0], BLOCK):
        b = mel[start:start + BLOCK]
        m = _MASK.match(view)
        if m:
            width = int(rng.integers(0, int(m.group(1)) + 1))
            f0 = int(rng.integers(0, max(1, b.shape[1] - width + 1)))
            b = b.clone()
            b[:, f0:f0 + width] = b.mean()
        else:
            kind, frac = _CROP.match(view).group(1), float(_CROP.match(view).group(2))
            if kind in ("fcrop", "tfcrop"):
                b = _crop(b, frac, 1, rng)
            if kind in ("tcrop", "tfcrop"):
                b = _crop(b, frac, 0, rng)
        blocks.append(b)
    return torch.cat(blocks) if blocks else mel


__all__ = ["AUDIO_VIEW_HELP", "BLOCK", "apply_mel_view", "is_audio_view", "view_rng"]
