"""Per-encoder standardisation statistics of cached features (computed on the training videos only)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..errors import TrainError

#: std floor of the standardisation (constant feature channels are centred, not blown up)
STD_EPS = 1e-6

Stats = Mapping[str, tuple[np.ndarray, np.ndarray]]


def feature_stats(videos: Iterable[Mapping[str, tuple[np.ndarray, np.ndarray]]],
                  encoders: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-encoder mean and std ``[D]`` float32 over the frames where the modality is present (all frames
    when it never is), accumulated in float64.

    Args:
        videos: per video, encoder -> ``(emb [T, D], present [T] bool)``.
        encoders: the encoders to compute.

    Raises:
        TrainError: an encoder has no frame at all.
    """
    acc = {e: [0.0, 0.0, 0] for e in encoders}
    acc_all = {e: [0.0, 0.0, 0] for e in encoders}
    for video in videos:
        for enc in encoders:
            emb, present = video[enc]
            x = emb.astype(np.float64)
            for a, rows in ((acc[enc], x[present]), (acc_all[enc], x)):
                a[0] = a[0] + rows.sum(axis=0)
                a[1] = a[1] + (rows * rows).sum(axis=0)
                a[2] += len(rows)
    stats = {}
    for enc in encoders:
        s, ss, n = acc[enc] if acc[enc][2] else acc_all[enc]
        if n == 0:
            raise TrainError(f"encoder {enc!r}: no frame to compute standardisation statistics from")
        mean = np.asarray(s) / n
        std = np.sqrt(np.maximum(np.asarray(ss) / n - mean * mean, 0.0))
        stats[enc] = (mean.astype(np.float32), np.maximum(std, STD_EPS).astype(np.float32))
    return stats


def checked_stats(stats: Stats, encoders: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``stats`` of ``encoders`` as float32 ``(mean, std)``.

    Raises:
        TrainError: an encoder has no statistics.
    """
    missing = [e for e in encoders if e not in stats]
    if missing:
        raise TrainError(f"standardisation statistics lack encoder(s) {', '.join(missing)}")
    return {e: (np.asarray(stats[e][0], np.float32), np.asarray(stats[e][1], np.float32)) for e in encoders}


def standardize(x: np.ndarray, present: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
    """Standardise a batch ``x [B, K, D]`` float32 in place; frames where the modality is absent and stored
    as zeros (``present [B, K]`` False) stay exactly zero."""
    missing = ~present & ~x.any(axis=-1)
    x -= mean
    x /= std
    x[missing] = 0.0
