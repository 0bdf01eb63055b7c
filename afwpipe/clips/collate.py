"""Stack clips cut from whole-video arrays into one batch of tensors.

A batch is a dict:

- ``x``: encoder -> ``[B, K, D]`` float32 features (standardised when stats are given; padding is 0)
- ``present``: encoder -> ``[B, K]`` bool, False where the modality is missing (no face / no audio) or padded
- ``mask``: ``[B, K]`` bool, True on real frames (False on padding)
- ``labels``: ``au [B, K, 12]`` int64, ``expr [B, K]`` int64, ``va [B, K, 2]`` float32 with the invalid
  markers of :mod:`afwpipe.labels` on invalid and padded frames
- ``valid``: task -> ``[B, K]`` bool (valid label and real frame)
- declared tasks (``tasks`` a mapping of :class:`~afwpipe.datasets.base.TaskSpec`): a frame task's labels
  ``[B, K]`` (class, int64) or ``[B, K, C]`` (multilabel int64, regression float32 with NaN invalid), a video
  task's ``[B]`` / ``[B, C]`` (the clip's video label) and its ``valid`` ``[B]``
- ``video``: ``[B]`` int64 index into the dataset's names; ``start``: ``[B]`` int64 first frame
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from ..labels import TASKS, valid_mask
from .stats import standardize


def collate(clips: np.ndarray, k: int, dims: Mapping[str, int], n_frames: Sequence[int],
            video: Callable[[int], Mapping[str, tuple[np.ndarray, np.ndarray]]],
            labels: Callable[[int], Mapping[str, np.ndarray]], tasks: Sequence[str] | Mapping,
            stats: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict:
    """The batch of clip rows ``clips [B, 2]`` (video index, start frame).

    Args:
        k: clip length; dims: encoder -> feature dim; n_frames: frames per video index.
        video: video index -> encoder -> ``(emb [T, D], present [T])`` (whole video).
        labels: video index -> task -> label array ``[T, ...]`` (``[1, ...]`` for a video task).
        tasks: built-in task names, or task name -> :class:`~afwpipe.datasets.base.TaskSpec` (module docstring).
        stats: encoder -> float32 ``(mean [D], std [D])``, or None for raw features.
    """
    if isinstance(tasks, Mapping):
        return _collate_declared(clips, k, dims, n_frames, video, labels, tasks, stats)
    x, present, mask = _features(clips, k, dims, n_frames, video, stats)
    b = len(clips)
    lab = {}
    for task in tasks:
        _, cols, invalid = TASKS[task]
        shape = (b, k) if task == "expr" else (b, k, len(cols))
        lab[task] = np.full(shape, invalid, np.float32 if task == "va" else np.int64)
    for row, (v, s) in enumerate(clips):
        n = min(k, n_frames[v] - s)
        video_labels = labels(int(v))
        for task in tasks:
            lab[task][row, :n] = video_labels[task][s:s + n]
    return _batch(x, present, mask, lab, {t: valid_mask(lab[t], t) & mask for t in tasks}, clips)


def _batch(x, present, mask, lab, valid, clips) -> dict:
    """The batch dict of the module docstring from numpy arrays."""
    return {
        "x": {e: torch.from_numpy(a) for e, a in x.items()},
        "present": {e: torch.from_numpy(a) for e, a in present.items()},
        "mask": torch.from_numpy(mask),
        "labels": {t: torch.from_numpy(a) for t, a in lab.items()},
        "valid": {t: torch.from_numpy(np.asarray(a)) for t, a in valid.items()},
        "video": torch.from_numpy(clips[:, 0].copy()),
        "start": torch.from_numpy(clips[:, 1].copy()),
    }


def _features(clips, k, dims, n_frames, video, stats) -> tuple[dict, dict, np.ndarray]:
    """``x``, ``present`` and ``mask`` of a batch (standardised when ``stats`` is given)."""
    b = len(clips)
    x = {e: np.zeros((b, k, d), np.float32) for e, d in dims.items()}
    present = {e: np.zeros((b, k), bool) for e in dims}
    mask = np.zeros((b, k), bool)
    for row, (v, s) in enumerate(clips):
        n = min(k, n_frames[v] - s)
        mask[row, :n] = True
        for enc, (emb, pres) in video(int(v)).items():
            x[enc][row, :n] = emb[s:s + n]
            present[enc][row, :n] = pres[s:s + n]
    if stats is not None:
        for enc in dims:
            standardize(x[enc], present[enc], *stats[enc])
    return x, present, mask


def _collate_declared(clips, k, dims, n_frames, video, labels, tasks: Mapping, stats) -> dict:
    """:func:`collate` for declared tasks (module docstring)."""
    x, present, mask = _features(clips, k, dims, n_frames, video, stats)
    b = len(clips)
    lab, valid = {}, {}
    for name, spec in tasks.items():
        rows = (b, k) if spec.level == "frame" else (b,)
        shape = rows if spec.type == "class" else rows + (spec.width,)
        lab[name] = np.full(shape, spec.invalid, np.float32 if spec.type == "regression" else np.int64)
    for row, (v, s) in enumerate(clips):
        n = min(k, n_frames[v] - s)
        video_labels = labels(int(v))
        for name, spec in tasks.items():
            if spec.level == "frame":
                lab[name][row, :n] = video_labels[name][s:s + n]
            else:
                lab[name][row] = video_labels[name][0]
    for name, spec in tasks.items():
        valid[name] = spec.valid(lab[name]) & (mask if spec.level == "frame" else True)
    return _batch(x, present, mask, lab, valid, clips)


def drop_modalities(batch: dict, p: float, rng: np.random.Generator) -> np.ndarray:
    """Modality dropout (USTC's ABAW10 EXPR entry, a cross-attention Transformer with modality dropout and focal
    loss; not in USTC's ABAW8 report): each clip loses each encoder's whole features with probability ``p``,
    never every encoder of a clip; in place, for training batches only.

    A dropped block of ``x`` is set to exactly zero (what a missing modality looks like after
    standardisation, :func:`.stats.standardize`) and its ``present`` to False. The drops are drawn
    independently per (clip, encoder); a clip that drew every encoder keeps one of them, chosen uniformly,
    so the rate per encoder is ``p − p^E / E`` for E encoders.

    Args:
        batch: a batch of :func:`collate` (``x`` and ``present``: encoder -> ``[B, K, …]`` tensors).
        p: drop probability in [0, 1).
        rng: the draws' generator.

    Returns:
        ``[B, E]`` bool, True where encoder ``e`` (in ``batch["x"]`` order) was dropped from clip ``b``.
    """
    encoders = list(batch["x"])
    b = len(batch["mask"])
    drop = rng.random((b, len(encoders))) < p
    full = drop.all(axis=1)
    drop[full, rng.integers(0, len(encoders), int(full.sum()))] = False
    for j, enc in enumerate(encoders):
        rows = torch.from_numpy(np.flatnonzero(drop[:, j]))
        batch["x"][enc][rows] = 0.0
        batch["present"][enc][rows] = False
    return drop


def unbatch(batch):
    """The first item of every tensor of a batch (a single clip without the leading B dimension)."""
    if isinstance(batch, dict):
        return {k: unbatch(v) for k, v in batch.items()}
    return batch[0]
