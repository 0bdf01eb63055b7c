"""``evaluate`` for a dataset's declared tasks: :func:`afwpipe.evaluate.run_evaluate` hands an index with declared
tasks here.

Every system of ``post/systems.json`` (:mod:`afwpipe.task_post`) is scored on its evaluation videos with the
scores of its task's type (:mod:`afwpipe.task_metrics`: class ``uar`` / ``war`` / ``f1``; multilabel ``f1``;
regression ``ccc`` / ``pearson`` per target and mean), a video task one row per video, a frame task one row per
valid frame. ``eval/metrics.json`` holds them under the task's name, per fold, as for Aff-Wild2::

    {"<task>": {"<fold>": {"before": {...}, "after": {...}, "videos": N, "rows": N, "level": "video",
                           "scored_on": [...], "optimistic": false, "optimistic_reason": null}}}

(``before`` equals ``after``: declared tasks pass through post-processing unchanged.) ``eval/per_class.csv``
lists a class task's recall per class and a regression task's scores per target.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import atomic, layout, store
from .datasets.base import index_tasks
from .readers import load_labels, read_post, read_systems
from .records import IndexFile
from .task_metrics import task_scores


@dataclass
class DeclaredEvalSummary:
    """What :func:`run_evaluate_declared` wrote."""

    metrics: dict
    files: list[Path]
    seconds: float

    def line(self) -> str:
        parts = []
        for task, by_fold in self.metrics.items():
            for fold, r in by_fold.items():
                keys = [k for k in ("uar", "war", "f1", "ccc", "pearson") if k in r["after"]]
                flag = " (optimistic)" if r["optimistic"] else ""
                parts.append(f"{task} {fold} " + " ".join(f"{k} {r['after'][k]:.4f}" for k in keys) + flag)
        return f"evaluate: {'; '.join(parts) or 'no scored system'} in {self.seconds:.1f} s"


def run_evaluate_declared(ws: store.Workspace, index: IndexFile) -> DeclaredEvalSummary:
    """Score every declared-task system of ``post/`` on its evaluation videos; write ``eval/`` (module docstring).

    Raises:
        PostprocessError: no ``post/systems.json`` (run ``afwpipe postprocess``).
    """
    t0 = time.perf_counter()
    tasks = index_tasks(index)
    systems = read_systems(ws)["systems"]
    names = sorted({v for m in systems.values() for v in m["eval_videos"]})
    labels = load_labels(ws, names, tuple(tasks)) if names else {}
    metrics, rows = {}, []
    for name, meta in systems.items():
        spec = tasks[meta["track"]]
        scored = [v for v in meta["eval_videos"] if spec.valid(labels[v][spec.name]).any()]
        if not scored:
            continue
        p = np.concatenate([read_post(ws, name, v)["after"] for v in scored])
        y = np.concatenate([labels[v][spec.name] for v in scored])
        s = task_scores(spec, p, y)
        headline = {k: v for k, v in s.items() if k not in ("per_class", "per_target")}
        metrics.setdefault(spec.name, {})[meta["fold"]] = {
            "before": headline, "after": headline, "videos": len(scored), "rows": int(spec.valid(y).sum()),
            "level": spec.level, "scored_on": scored, "optimistic": meta["optimistic"],
            "optimistic_reason": meta["optimistic_reason"]}
        if spec.type == "class":
            ok = spec.valid(y)
            for c, cls in enumerate(spec.names):
                if (y[ok] == c).any():
                    rows.append([spec.name, name, cls, "recall", float(np.mean(p[ok][y[ok] == c] == c))])
        for target, v in s.get("per_target", {}).items():
            rows += [[spec.name, name, target, k, v[k]] for k in ("ccc", "pearson")]
        for cls, f1 in s.get("per_class", {}).items():
            rows.append([spec.name, name, cls, "f1", f1])
    ws.eval_dir.mkdir(parents=True, exist_ok=True)
    path, csv = layout.eval_file(ws, layout.EVAL_METRICS), layout.eval_file(ws, layout.EVAL_PER_CLASS)
    atomic.write_text(path, json.dumps(metrics, indent=1) + "\n")
    atomic.write_text(csv, "task,system,class,score,value\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return DeclaredEvalSummary(metrics, [path, csv], time.perf_counter() - t0)
