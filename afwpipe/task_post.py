"""``postprocess`` for a dataset's declared tasks: :func:`afwpipe.postprocess.run_postprocess` hands an index with
declared tasks here, so ``dvc repro`` and the commands run in the same order for every dataset.

A system is one declared task of one fold (``<task>-<fold>``), fed by the head of that task and fold (a head of
the task itself before an ``mtl`` head of every task; scene heads are not routed here). Its outputs pass through
unchanged: a video task has nothing along time to smooth, and the frame tasks of the generic readers get no
smoothing or tuned thresholds yet (the AU / EXPR / VA chain of :mod:`afwpipe.postprocess` is Aff-Wild2's).
Decisions: class argmax, multilabel ``prob ≥ 0.5``, regression the values (:func:`afwpipe.task_metrics.decide`);
``before`` and ``after`` are the same.

A fold system is scored on its head's own validation videos (a fold ``all`` head has none: unscored). It is
``optimistic`` when a scored video chose its head's epoch (``train.epoch_selection: val``;
:func:`afwpipe.honesty.chosen_on_scored`). No fold ensemble is built for declared tasks.

Writes ``post/<task>-<fold>.npz`` (``<video>/prob`` float32, ``<video>/before``, ``<video>/after``) and
``post/systems.json`` (per system: track = the task, fold, level, head, videos, eval_videos, optimistic,
optimistic_reason, unscored).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass

import numpy as np

from . import __version__, atomic, store
from .datasets.base import index_tasks
from .errors import PostprocessError
from .folds import ALL
from .honesty import chosen_on_scored, head_videos
from .readers import read_prediction, read_predictions_index
from .records import IndexFile
from .task_metrics import decide


@dataclass
class DeclaredPostSummary:
    """What :func:`run_postprocess_declared` wrote: system name -> its systems.json entry."""

    systems: dict
    seconds: float

    def line(self) -> str:
        tasks = sorted({s["track"] for s in self.systems.values()})
        folds = list(dict.fromkeys(str(s["fold"]) for s in self.systems.values()))
        return (f"postprocess: {len(self.systems)} systems ({', '.join(tasks)} × folds {', '.join(folds)}); declared "
                f"tasks pass through unchanged in {self.seconds:.1f} s")


def _heads_by_system(records: list[dict], tasks) -> dict[tuple[str, str], dict]:
    """(task, fold) -> the predictions record feeding it: the task's own head before an ``mtl`` head."""
    out: dict = {}
    for r in sorted(records, key=lambda r: (r["task"] not in tasks, r["name"])):
        if r.get("scene"):
            continue
        for t in r["tasks"]:
            out.setdefault((t, str(r["fold"])), r)
    return out


def run_postprocess_declared(ws: store.Workspace, index: IndexFile) -> DeclaredPostSummary:
    """Pass every declared task's predictions through as decisions; write ``post/`` (module docstring).

    Raises:
        PostprocessError: no predictions, or no head predicts a declared task.
    """
    t0 = time.perf_counter()
    tasks = index_tasks(index)
    records = read_predictions_index(ws)
    heads = _heads_by_system(records, tasks)
    if not heads:
        raise PostprocessError(f"{ws.predictions_index}: no head predicts any of {', '.join(tasks)}")
    if ws.post_dir.exists():
        shutil.rmtree(ws.post_dir)
    ws.post_dir.mkdir(parents=True)
    meta = {}
    for (task, fold), r in sorted(heads.items()):
        spec, name = tasks[task], f"{task}-{fold}"
        arrays = {}
        for v in r["videos"]:
            prob = read_prediction(ws, r["name"], v)[task]
            d = decide(spec, prob)
            arrays.update({f"{v}/prob": prob.astype(np.float32), f"{v}/before": d, f"{v}/after": d})
        with atomic.open_atomic(ws.post(name), "wb") as f:
            np.savez(f, **arrays)
        scored = [] if r["fold"] == ALL else list(r["val_videos"])
        _, selected = head_videos(ws, index, r)
        reasons = chosen_on_scored(scored, {r["name"]: selected}, [])
        meta[name] = {"track": task, "fold": str(fold), "level": spec.level, "head": r["name"],
                      "videos": list(r["videos"]), "eval_videos": scored, "optimistic": bool(reasons),
                      "optimistic_reason": "; ".join(reasons) or None,
                      "unscored": f"fold {ALL}: trained on every labelled video" if r["fold"] == ALL else None}
    atomic.write_text(ws.post_systems, json.dumps({"afwpipe_version": __version__, "config": {"declared_tasks": True},
                                                   "systems": meta}, indent=1) + "\n")
    return DeclaredPostSummary(meta, time.perf_counter() - t0)
