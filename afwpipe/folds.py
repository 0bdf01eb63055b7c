"""Which videos train and which validate a head: the official split and the seeded video-level folds.

Fold ``"official"`` trains on the videos of the task's official ``train`` split and validates (early
stopping) on its ``val`` split; fold ``i`` validates on the labelled videos of fold ``i`` of the index and
trains on the labelled videos of the other folds, never on a name that is ``test`` for the task.
Fold ``"all"`` (:data:`ALL`) trains on every labelled video of the task's official ``train`` and ``val``
splits (never a ``test`` one) and has no validation video: the
whole-dataset member of the fold vote (Netease Fuxi ABAW5/6 vote over their five fold models and one model
trained on all labelled videos). It is never scored on its own, since it trained on every labelled video.
``scene`` keeps only the videos listed under that scene in the index (from the manifest). Splits are per
track (:func:`split_of`).
"""

from __future__ import annotations

import numpy as np

from . import layout, store
from .errors import TrainError
from .records import IndexFile, IndexRecord

#: the fold of the whole-dataset member (module docstring) and how a fold names a model folder live in
#: afwpipe.layout, beside the folder names; they are this module's too
ALL, parse_fold = layout.ALL, layout.parse_fold


#: Official splits of an index record, per track (``rec.splits``): ``train``, ``val``, ``test`` or None.
SPLITS = ("train", "val", "test")


def split_of(rec: IndexRecord, task: str) -> str | None:
    """The official split of index record ``rec`` for ``task``.

    ``rec.splits`` maps each track (``au``, ``expr``, ``va``) to ``"train"`` / ``"val"`` (the track
    annotates the name in that folder), ``"test"`` (the name is in the track's test list, or no track
    annotates the video and the dataset has no test lists), or None (the track neither annotates nor
    tests the name). A name can be VA-train and EXPR-test at once. ``task="mtl"`` (all tracks) gives
    ``"val"`` when any track validates on the name, else ``"train"`` when any trains on it, else
    ``"test"`` when any tests it, else None (:func:`summary_split`). A record without ``splits`` (an index
    written before per-track splits) has its one ``split`` for every track.
    """
    if rec.splits is None:  # an index written before per-track splits: one split for every track
        return rec.split
    if task in rec.splits:
        return rec.splits[task]
    return summary_split(rec.splits)


def summary_split(splits: dict) -> str | None:
    """The ``mtl`` split of per-track ``splits`` (task -> split): ``val`` when any track validates on the name,
    else ``train``, else ``test``, else None (the ``split`` field of an index record)."""
    values = set((splits or {}).values())
    return next((s for s in ("val", "train", "test") if s in values), None)


def split_videos(index: IndexFile, tasks, fold: str | int, scene: str | None = None) -> tuple[list[str], list[str]]:
    """Training and validation video names for ``fold`` (module docstring).

    Only videos with at least one labelled frame of one of ``tasks`` are kept. The split of a name is its
    split for the trained task (:func:`split_of`; ``mtl``, i.e. several ``tasks``, takes the ``mtl``
    summary): ``official`` trains on that task's ``train`` names and validates on its ``val`` names; a
    numbered fold never uses a name that is ``test`` for the task (e.g. an EXPR test name that VA annotates
    stays out of EXPR folds); ``all`` trains on every name of the task's ``train`` and ``val`` splits (never
    a ``test`` one) and validates on none (its validation list is empty by design).

    Raises:
        TrainError: an unknown scene (lists the known ones), a fold outside ``0..k-1``, or an empty side
            (the training side only, for ``all``).
    """
    records = [r for r in index.records if any(r.labelled.get(t, 0) > 0 for t in tasks)]
    if scene is not None:
        scenes = index.scenes
        if scene not in scenes:
            raise TrainError(f"unknown scene {scene!r}; scenes of the index: {', '.join(sorted(scenes)) or '(none)'}")
        members = set(scenes[scene])
        records = [r for r in records if r.name in members or r.video in members]
    task = tasks[0] if len(tasks) == 1 else "mtl"
    split = {r.name: split_of(r, task) for r in records}
    if fold == "official":
        train = [r.name for r in records if split[r.name] == "train"]
        val = [r.name for r in records if split[r.name] == "val"]
    elif fold == ALL:
        train, val = [r.name for r in records if split[r.name] in ("train", "val")], []
    else:
        k = int(index.folds.get("k", 0))
        if not 0 <= fold < k:
            raise TrainError(f"fold {fold} does not exist: the index has {k} folds (0..{k - 1}) and 'official'")
        records = [r for r in records if split[r.name] != "test"]
        train = [r.name for r in records if r.fold >= 0 and r.fold != fold]
        val = [r.name for r in records if r.fold == fold]
    where = f"fold {fold}" + (f", scene {scene!r}" if scene else "")
    for side, names in (("training", train), ("validation", val)):
        if not names and not (side == "validation" and fold == ALL):
            raise TrainError(f"{where}: no {side} video labelled for {'/'.join(t.upper() for t in tasks)}")
    return sorted(train), sorted(val)


def inner_split(index: IndexFile, names, seed: int, frac: float = 0.2,
                min_groups: int = 3) -> tuple[list[str], list[str]]:
    """Split a fold's training names into the names that fit weights and the names that choose the epoch.

    Model selection (the epoch of a head, the step of a fine-tune) must not look at the frames a system is
    then scored on. This carves the selection videos out of the training side instead: a seeded,
    video-level split of ``names``. Names that share a video file (``X``, ``X_left``, ``X_right``: the
    same ``video`` in the index) stay on one side, so one person's frames never choose the epoch for a
    model trained on the other person of the same video.

    Args:
        index: the index (``index.json``), whose records give each name's ``video``.
        names: the training names of one fold (``split_videos``'s first list).
        seed: the seed of the permutation of the videos (the run's ``seed``).
        frac: fraction of the videos (groups) that choose the epoch, rounded up, at least one.
        min_groups: below this many distinct videos there is too little to split: all names fit and
            ``select`` is empty (the caller then trains a fixed number of epochs).

    Returns:
        ``(fit, select)``: sorted name lists, disjoint, their union ``names``.

    Raises:
        TrainError: ``frac`` outside (0, 1).
    """
    if not 0.0 < float(frac) < 1.0:
        raise TrainError(f"the inner selection fraction must lie in (0, 1), got {frac!r}")
    video_of = {r.name: r.video for r in index.records}
    groups: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        groups.setdefault(video_of.get(name, name), []).append(name)
    keys = sorted(groups)
    if len(keys) < max(2, int(min_groups)):
        return sorted(set(names)), []
    order = np.random.default_rng(int(seed)).permutation(len(keys))
    n_select = min(len(keys) - 1, max(1, int(np.ceil(frac * len(keys)))))
    chosen = {keys[i] for i in order[:n_select]}
    fit = sorted(n for k in keys if k not in chosen for n in groups[k])
    select = sorted(n for k in keys if k in chosen for n in groups[k])
    return fit, select


__all__ = ["ALL", "inner_split", "parse_fold", "split_videos", "summary_split"]
