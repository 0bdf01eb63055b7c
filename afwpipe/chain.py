"""The per-video post-processing chain of one system, declared once: what :mod:`afwpipe.postprocess` writes to
``post/`` and what ``afwpipe analyze`` writes to its tables are both :meth:`FoldChain.run` (and
:meth:`EnsembleChain.run` for a fold ensemble) on a video's raw head outputs.

A fold system's chain (afwpipe's order, docs/postprocess.md):

1. *nearest-frame fill* of frames without a face (:func:`temporal.fill_nearest`; ``postprocess.fill``);
2. *smoothing* along time with the system's method and its σ / window (:func:`temporal.smooth`), the value
   the system was given or, with ``sigma: tuned`` / ``window: tuned``, the one it chose on out-of-fold frames
   (``smoothing`` of the system in ``post/systems.json``);
3. *decisions*: AU ``prob ≥ threshold`` with the system's per-AU thresholds (``thresholds``), EXPR argmax,
   VA clipped to [-1, 1].

A fold ensemble runs each member fold's chain and combines them (:func:`combine`: ``vote`` of the fold
decisions or ``soft`` mean then the ensemble's thresholds). Which raw outputs go in (the scene head's or the
general head's; predicted with test-time augmentation views and the speech gate of the checkpoint) is the
caller's: :func:`afwpipe.predict.head_outputs` gives them to both.

The choices are read from one system entry of ``post/systems.json`` (:meth:`FoldChain.from_system`), the
entry postprocess itself builds and then runs, so the two can never diverge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from . import temporal
from .decisions import binarize_au, soft_average, vote_au, vote_expr
from .errors import PostprocessError

#: the smoothing parameter of each method (``sigma`` of gaussian, ``window`` of median / mean)
SMOOTH_PARAM = {"gaussian": "sigma", "median": "window", "mean": "window"}


def fill_track(values: np.ndarray, present: np.ndarray | None, fill: bool = True) -> np.ndarray:
    """``values [T, C]`` as float64, frames without a face filled from the nearest one when ``fill`` and
    ``present [T]`` bool is given (:func:`temporal.fill_nearest`)."""
    out = np.asarray(values, dtype=np.float64)
    return temporal.fill_nearest(out, present) if fill and present is not None else out


def smooth_with(values: np.ndarray, method: str, size: float | None) -> np.ndarray:
    """``values [T, C]`` smoothed by ``method`` with σ / window ``size`` frames (:func:`temporal.smooth`);
    ``none``, σ 0 and window 1 return an unsmoothed float64 copy."""
    if method == "none" or (method == "gaussian" and size == 0) or (method != "gaussian" and int(size) == 1):
        return np.array(values, dtype=np.float64)
    return temporal.smooth(values, method, sigma=size, window=None if size is None else int(size))


def decide(track: str, values: np.ndarray, thresholds: float | np.ndarray = 0.5) -> np.ndarray:
    """Decisions from probabilities / values: AU ``[T, 12]`` int8 (``prob ≥ threshold``), EXPR ``[T]`` int8
    (argmax), VA ``[T, 2]`` float32 clipped to [-1, 1]."""
    if track == "au":
        return binarize_au(values, thresholds).astype(np.int8)
    if track == "expr":
        return np.argmax(values, axis=1).astype(np.int8)
    return np.clip(values, -1.0, 1.0).astype(np.float32)


def combine(track: str, values: Sequence[np.ndarray], decisions: Sequence[np.ndarray], method: str = "vote",
            tie: int = 1, thresholds: float | np.ndarray = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Fold ensemble of one video.

    Args:
        values: per fold ``[T, C]`` probabilities (AU, EXPR) or VA values.
        decisions: per fold decisions (:func:`decide`), used by ``vote``.
        method: ``vote``: AU majority per AU (``tie`` when half say 1), EXPR majority class (ties to the
            highest summed probability, then the lowest index), VA mean; ``soft``: mean of ``values``, then
            ``thresholds`` (AU) / argmax (EXPR).

    Returns:
        ``(mean values [T, C] float64, decisions)``.
    """
    mean = soft_average(values)
    if method == "soft" or track == "va":
        return mean, decide(track, mean, thresholds)
    if track == "au":
        return mean, vote_au(decisions, tie=tie).astype(np.int8)
    return mean, vote_expr(decisions, probs=values, n_classes=mean.shape[1]).astype(np.int8)


@dataclass(frozen=True)
class FoldChain:
    """The chain of one fold system (module docstring).

    Attributes:
        track: ``au``, ``expr`` or ``va``.
        fill: nearest-frame fill of frames without a face.
        method: ``gaussian``, ``median``, ``mean`` or ``none``.
        size: σ (gaussian) or window (median, mean) in frames; None for ``none``.
        thresholds: AU ``[12]`` float64 (None: 0.5; EXPR and VA ignore it).
    """

    track: str
    fill: bool
    method: str
    size: float | int | None
    thresholds: np.ndarray | None = None

    @classmethod
    def from_system(cls, system: Mapping, fill: bool, name: str = "system") -> "FoldChain":
        """The chain of a ``post/systems.json`` system entry (``track``, ``smoothing``: ``{"method",
        "sigma" | "window"}`` with the value used, ``thresholds``) and ``postprocess.fill``.

        Raises:
            PostprocessError: the entry has no ``smoothing`` with a number for its method (a ``post/`` of an
                older afwpipe: rerun ``afwpipe postprocess``).
        """
        smoothing = system.get("smoothing") or {}
        method = smoothing.get("method")
        param = SMOOTH_PARAM.get(method)
        size = smoothing.get(param) if param else None
        if method is None or (param and not isinstance(size, (int, float))):
            raise PostprocessError(f"post/systems.json {name}: smoothing {smoothing!r} names no method with a "
                                   f"number of frames; rerun `afwpipe postprocess`")
        th = system.get("thresholds")
        return cls(system["track"], bool(fill), method, size, None if th is None else np.asarray(th, np.float64))

    def smooth(self, raw: np.ndarray, present: np.ndarray | None) -> np.ndarray:
        """Steps 1-2: ``[T, C]`` float64 processed probabilities / values of raw outputs ``[T, C]``."""
        return smooth_with(fill_track(raw, present, self.fill), self.method, self.size)

    def run(self, raw: np.ndarray, present: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Steps 1-3 on one video: ``(processed [T, C] float64, decisions)`` (:func:`decide`'s dtypes)."""
        prob = self.smooth(raw, present)
        return prob, decide(self.track, prob, 0.5 if self.thresholds is None else self.thresholds)


@dataclass(frozen=True)
class EnsembleChain:
    """The fold ensemble of one track: its members' chains (fold order of ``post/systems.json``), the
    ensemble method (``vote`` / ``soft``), the AU vote on a tie and the soft ensemble's AU thresholds."""

    track: str
    members: tuple[FoldChain, ...]
    method: str = "vote"
    tie: int = 1
    thresholds: np.ndarray | None = None

    def combine(self, outputs: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Members' ``(processed, decisions)`` of one video -> the ensemble's (:func:`combine`)."""
        th = 0.5 if self.thresholds is None else self.thresholds
        return combine(self.track, [p for p, _ in outputs], [d for _, d in outputs], self.method, self.tie, th)

    def run(self, raws: Sequence[np.ndarray], present: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Each member's chain on its raw outputs (same order as :attr:`members`), then :meth:`combine`."""
        if len(raws) != len(self.members):
            raise ValueError(f"EnsembleChain.run: {len(raws)} raw outputs for {len(self.members)} members")
        return self.combine([m.run(r, present) for m, r in zip(self.members, raws)])


__all__ = ["EnsembleChain", "FoldChain", "SMOOTH_PARAM", "combine", "decide", "fill_track", "smooth_with"]
