"""Which videos train and which validate a head: the official split and the seeded video-level folds.

Fold ``"official"`` trains on the videos of the task's official ``train`` split and validates (early
stopping) on its ``val`` split; fold ``i`` validates on the labelled videos of fold ``i`` of the index and
trains on the labelled videos of the other folds, never on a name that is ``test`` for the task.
``scene`` keeps only the videos listed under that scene in the index (from the manifest). Splits are per
track (:func:`afwpipe.store.split_of`).
"""

from __future__ import annotations

import numpy as np

from . import store
from .errors import TrainError


def parse_fold(fold) -> str | int:
    """A fold as it names a model folder (``models/<task>-<head>-<fold>``): ``"official"`` or a fold number
    (int, or a string of digits).

    Raises:
        TrainError: anything else.
    """
    if isinstance(fold, (int, np.integer)) and not isinstance(fold, bool):
        return int(fold)
    if isinstance(fold, str) and fold.strip().lstrip("-").isdigit():
        return int(fold)
    if fold == "official":
        return fold
    raise TrainError(f"fold must be 'official' or a fold number, got {fold!r}")


def split_videos(index: dict, tasks, fold: str | int, scene: str | None = None) -> tuple[list[str], list[str]]:
    """Training and validation video names for ``fold`` (module docstring).

    Only videos with at least one labelled frame of one of ``tasks`` are kept. The split of a name is its
    split for the trained task (:func:`afwpipe.store.split_of`; ``mtl``, i.e. several ``tasks``, takes the ``mtl``
    summary): ``official`` trains on that task's ``train`` names and validates on its ``val`` names; a
    numbered fold never uses a name that is ``test`` for the task (e.g. an EXPR test name that VA annotates
    stays out of EXPR folds).

    Raises:
        TrainError: an unknown scene (lists the known ones), a fold outside ``0..k-1``, or an empty side.
    """
    records = [r for r in index["videos"] if any(r.get("labelled", {}).get(t, 0) > 0 for t in tasks)]
    if scene is not None:
        scenes = index.get("scenes") or {}
        if scene not in scenes:
            raise TrainError(f"unknown scene {scene!r}; scenes of the index: {', '.join(sorted(scenes)) or '(none)'}")
        members = set(scenes[scene])
        records = [r for r in records if r["name"] in members or r["video"] in members]
    task = tasks[0] if len(tasks) == 1 else "mtl"
    split = {r["name"]: store.split_of(r, task) for r in records}
    if fold == "official":
        train = [r["name"] for r in records if split[r["name"]] == "train"]
        val = [r["name"] for r in records if split[r["name"]] == "val"]
    else:
        k = int((index.get("folds") or {}).get("k", 0))
        if not 0 <= fold < k:
            raise TrainError(f"fold {fold} does not exist: the index has {k} folds (0..{k - 1}) and 'official'")
        records = [r for r in records if split[r["name"]] != "test"]
        train = [r["name"] for r in records if r["fold"] >= 0 and r["fold"] != fold]
        val = [r["name"] for r in records if r["fold"] == fold]
    where = f"fold {fold}" + (f", scene {scene!r}" if scene else "")
    for side, names in (("training", train), ("validation", val)):
        if not names:
            raise TrainError(f"{where}: no {side} video labelled for {'/'.join(t.upper() for t in tasks)}")
    return sorted(train), sorted(val)


__all__ = ["parse_fold", "split_videos"]
