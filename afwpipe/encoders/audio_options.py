"""Options that every audio encoder takes in ``extract.options`` beside its own: how the wave is read and how
states become one vector per video frame (and ``views``: the audio views a store caches, checked by the
extract step, :mod:`afwpipe.audio_views`). Both are recorded in the store's encoder config (so a store made
with them is another feature set), and left out of it at their defaults (so existing stores keep their
identity).

* ``peak_normalize: true``: the wave is divided by its peak absolute sample, so it spans [-1, 1] (the audio
  preprocessing of USTC's ABAW8 entry); a silent wave (peak 0) stays as it is. It is applied where an
  encoder reads the wave (``afwpipe extract``, ``afwpipe analyze``), not in ``detect``: ``audio.zarr`` keeps
  the decoded samples, so turning it on reruns only that encoder's extract stage, never ``detect``, and
  every other encoder still reads the raw wave from the same store.
* ``pool: stats``: each video frame gets the mean *and* the standard deviation of the states in its span
  (:func:`afwpipe.encoders.align.stats_per_frame`; dim doubles: ``[mean, std]``) instead of the mean alone
  (``pool: mean``, the default). Attentive statistics pooling (Okabe et al. 2018, "Attentive statistics
  pooling for deep speaker embedding") weights the states by a learned attention; a frozen encoder's
  extract step has nothing to learn it from, so it is not offered here: a head that wants it learns it
  over the frame features (``pool: stats`` gives such a head the spread the mean hides).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import EncoderError

#: keys of ``extract.options.<name>`` read by the extract step itself, not passed to the encoder's factory
AUDIO_OPTIONS = ("pool", "peak_normalize", "views")
POOLS = ("mean", "stats")


def peak_normalize(wave: torch.Tensor) -> torch.Tensor:
    """``wave / max |wave|`` (float32, the same shape); an all-zero wave is returned unchanged.

    Args:
        wave: float ``[N]`` samples.
    """
    peak = wave.abs().max() if wave.numel() else torch.zeros(())
    return wave / peak if float(peak) > 0 else wave


def split_options(name: str, options: dict) -> tuple[dict, dict]:
    """``(factory options, audio options)`` of ``extract.options.<name>``: the keys of :data:`AUDIO_OPTIONS`
    checked and taken out, the rest left for the encoder's factory.

    Raises:
        EncoderError: ``pool`` not one of :data:`POOLS`, or ``peak_normalize`` not a boolean (names the key).
    """
    rest = {k: v for k, v in options.items() if k not in AUDIO_OPTIONS}
    audio = {k: options[k] for k in AUDIO_OPTIONS if k in options}
    if "pool" in audio and audio["pool"] not in POOLS:
        raise EncoderError(f"params extract.options.{name}.pool: {audio['pool']!r} is not one of {', '.join(POOLS)}")
    if "peak_normalize" in audio and not isinstance(audio["peak_normalize"], bool):
        raise EncoderError(f"params extract.options.{name}.peak_normalize: expected true or false, "
                           f"got {audio['peak_normalize']!r}")
    return rest, audio


__all__ = ["AUDIO_OPTIONS", "POOLS", "peak_normalize", "split_options"]
