"""Scores of post-processed systems, shared by the postprocess and evaluate steps: one track's score on
concatenated frames (:mod:`afwpipe.metrics`: AU mean F1 over 12 AUs, EXPR macro F1 over 8 classes, VA
mean CCC of valence and arousal), and the one-line before -> after summaries with their caveats.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .decisions import THRESHOLDS_DEFAULT
from .labels import AU_NAMES, EXPR_NAMES, TRACKS, VA_NAMES, valid_mask
from .metrics import au_f1, expr_f1, va_ccc
from .store import ENSEMBLE

CLASSES = {"au": AU_NAMES, "expr": EXPR_NAMES, "va": VA_NAMES}
#: headline metric per track
KEY = {"au": "f1", "expr": "f1", "va": "ccc"}


def score(track: str, pred: np.ndarray, true: np.ndarray) -> dict:
    """Score one track on concatenated frames (:mod:`afwpipe.metrics`; invalid frames left out).

    Args:
        pred: AU ``[T, 12]`` {0,1}, EXPR ``[T]`` classes, VA ``[T, 2]`` values.
        true: labels of the same shape (invalid markers masked by the metric functions).

    Returns:
        AU / EXPR ``{"f1": mean, "per_class": {name: F1}}``; VA ``{"ccc": mean, "valence": c, "arousal": c,
        "per_class": {"valence": c, "arousal": c}}``.

    Raises:
        ValueError: nothing to score (see :mod:`afwpipe.metrics`).
    """
    if track == "au":
        mean, per = au_f1(pred, true)
    elif track == "expr":
        mean, per = expr_f1(pred, true)
    else:
        mean, v, a = va_ccc(pred, true)
        return {"ccc": mean, "valence": v, "arousal": a, "per_class": {"valence": v, "arousal": a}}
    return {"f1": mean, "per_class": dict(zip(CLASSES[track], map(float, per)))}


def labelled(names, labels: Mapping, track: str) -> list[str]:
    """The names of ``names`` that have labels and at least one valid ``track`` label, in order."""
    return [v for v in names if v in labels and valid_mask(labels[v][track], track).any()]


def before_after(track: str, outs: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping, names) -> dict:
    """``{"before": score, "after": score}`` of one track on the concatenated frames of ``names`` (labelled
    videos); ``outs``: video -> ``{"before": decisions, "after": decisions}``."""
    true = np.concatenate([labels[v][track] for v in names])
    return {stage: score(track, np.concatenate([outs[v][stage] for v in names]), true)
            for stage in ("before", "after")}


def headline(scores: Mapping[str, Mapping[str, dict]], notes: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """``au ensemble F1 0.4000 -> 0.5500, va official CCC 0.2860 -> 0.2250 (lower after), …``: per track
    the ensemble's before -> after (else the first scored fold's), with ``notes[track][fold]`` appended.

    Args:
        scores: track -> fold -> ``{"before": score, "after": score}`` (:func:`score` results).
    """
    parts = []
    for track in TRACKS:
        by_fold = scores.get(track) or {}
        fold = ENSEMBLE if ENSEMBLE in by_fold else next(iter(by_fold), None)
        if fold is None:
            continue
        r, key = by_fold[fold], KEY[track]
        before, after = r["before"][key], r["after"][key]
        note = ((notes or {}).get(track) or {}).get(fold)
        extra = (["lower after"] if after < before else []) + ([note] if note else [])
        parts.append(f"{track} {fold} {key.upper()} {before:.4f} -> {after:.4f}"
                     + (f" ({'; '.join(extra)})" if extra else ""))
    return ", ".join(parts) or "(nothing scored)"


def system_notes(meta: Mapping) -> str | None:
    """Short caveats of a system for summary lines: ``optimistic: <reason>`` and the AU threshold fallback
    (``meta``: a systems.json or metrics.json entry)."""
    notes = []
    if meta.get("optimistic"):
        notes.append(f"optimistic: {meta.get('optimistic_reason') or 'see metrics.json'}")
    if meta.get("thresholds_from") == THRESHOLDS_DEFAULT:
        notes.append(f"AU thresholds {THRESHOLDS_DEFAULT}")
    return "; ".join(notes) or None
