"""The experiment table: small copies of a run's scores at paths that never change with the head, task or
encoder set, so ``dvc exp show`` / ``dvc exp diff`` put every experiment's scores in the same columns and
``dvc plots diff`` compares two experiments' plots.

DVC's own example project keeps its metric and plot files small, at stable paths, tracked by git (DVC
``metrics`` / ``plots`` outputs with ``cache: false``: https://dvc.org/doc/user-guide/experiment-management/
and https://dvc.org/doc/user-guide/project-structure/dvcyaml-files#metrics-and-plots-outputs). The
workspace ``work/<dataset>/`` is git-ignored and its per-model files carry the head's name
(``models/au-tcn-official/metrics.json``), so no experiment commit holds them and two heads never share a
column. This step reads them and writes, relative to ``out`` (the repository root for the DVC stage)::

    metrics/evaluate.json   {track: {system: {before, after, optimistic}}}, system = official | 0 | 1 | ...
                            | ensemble; AU/EXPR the mean F1, VA the mean CCC of valence and arousal
                            (``after_tuned_on_scored`` instead of ``after`` when evaluate wrote that)
                            and, per scene of a system with scene heads, scene_<scene> and
                            scene_<scene>_general (scene heads vs general heads on the scene's videos)
    metrics/train.json      {<task>-<fold>[-<scene>]: {best_epoch, score, epochs}} of every head that
                            predicted (``predictions/index.json``); ``score`` is the head's best validation
                            score (AU mean F1, EXPR macro F1, VA mean CCC, MTL their sum; none for fold
                            ``all``, which has no validation video), ``epochs`` the number it ran
    plots/<name>.csv        copies of ``eval/plots/*.csv`` (per-AU / per-class F1, EXPR confusion, VA trace)

Keys are head-independent by construction: the head is an experiment parameter (``train.head``), shown by
``dvc exp show`` in its own column. The per-epoch curves are not copied here: DVCLive writes them during
training at head-independent paths that dvc.yaml declares as the train stages' plots (:mod:`afwpipe.curves`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import atomic, layout
from .errors import EvaluateError
from .store import Workspace

#: the evaluate plots copied to ``plots/`` (files of ``eval/plots/``)
#: keys of an evaluate metrics.json entry whose headline score goes to ``metrics/evaluate.json``
SCORE_KEYS = ("before", "after", "after_tuned_on_scored")
#: the headline score of each track's before/after dict (evaluate's keys)
HEADLINE = {"au": "f1", "expr": "f1", "va": "ccc"}


@dataclass
class SummaryResult:
    """The files one :func:`main` call wrote (absolute paths)."""

    files: list[Path]


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise EvaluateError(f"{path}: no {what}; run the stages before it (`dvc repro`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise EvaluateError(f"{path}: not valid JSON ({e})") from e


def evaluation_table(metrics: dict, path: Path | str = "eval/metrics.json") -> dict:
    """``{track: {system: {before, after | after_tuned_on_scored, optimistic}}}`` (floats, bool) from an
    evaluate ``metrics.json`` dict (:mod:`afwpipe.evaluate`); ``path`` names it in errors. A system with scene
    heads adds per scene ``scene_<scene>`` (the scene heads' score on the scene's scored videos),
    ``scene_<scene>_general`` (the general heads' on the same frames) and ``scene_<scene>_optimistic``.

    Raises:
        EvaluateError: an unknown track, or an entry without a ``before`` score of its headline metric.
    """
    table = {}
    for track, systems in metrics.items():
        if track not in HEADLINE:
            raise EvaluateError(f"{path}: unknown track {track!r} (expected one of {sorted(HEADLINE)})")
        key = HEADLINE[track]
        table[track] = {}
        for system, entry in systems.items():
            if not isinstance(entry.get("before"), dict) or key not in entry["before"]:
                raise EvaluateError(f"{path}: {track}.{system} has no before.{key} score")
            row = {k: float(entry[k][key]) for k in SCORE_KEYS if isinstance(entry.get(k), dict)}
            row["optimistic"] = bool(entry.get("optimistic", False))
            for scene, s in (entry.get("scenes") or {}).items():  # scene heads vs general heads (afwpipe.scene_scores)
                row[f"scene_{scene}"] = float(s["scene_head"][key])
                row[f"scene_{scene}_general"] = float(s["general_head"][key])
                row[f"scene_{scene}_optimistic"] = bool(s["scene_head"]["optimistic"] or s["general_head"]["optimistic"])
            table[track][str(system)] = row
    return table


def training_table(ws: Workspace) -> dict:
    """``{<task>-<fold>[-<scene>]: {best_epoch, score, epochs}}`` of every head in ``predictions/index.json``,
    read from its ``models/<task>-<head>-<fold>[-<scene>]/metrics.json`` (:mod:`afwpipe.train`).

    Raises:
        EvaluateError: a missing or malformed predictions index or model metrics file (named).
    """
    index = _read_json(ws.predictions_index, "predictions index")
    table = {}
    for rec in index.get("models", []):
        path = layout.run_record(ws, rec["name"])
        m = _read_json(path, "training metrics")
        key = "-".join(str(p) for p in (rec["task"], rec["fold"], rec.get("scene")) if p is not None)
        if m.get("best", {}) is None and not m.get("val_videos", True):  # fold all: no validation video
            table[key] = {"best_epoch": int(m["best_epoch"]), "epochs": len(m.get("epochs", []))}
            continue
        if "best" not in m or "score" not in m["best"]:
            raise EvaluateError(f"{path}: no best.score (not a training metrics file?)")
        table[key] = {"best_epoch": int(m["best_epoch"]), "score": float(m["best"]["score"]),
                      "epochs": len(m.get("epochs", []))}
    return table


def main(ws: Workspace, out: Path | str = ".") -> SummaryResult:
    """Write ``metrics/evaluate.json``, ``metrics/train.json`` and ``plots/*.csv`` under ``out`` from the
    workspace's ``eval/`` and ``models/`` (module docstring); prints one line per file written.

    Raises:
        EvaluateError: a missing or malformed input file (named); nothing is written then.
    """
    out = Path(out)
    path = layout.eval_file(ws, layout.EVAL_METRICS)
    evaluation = evaluation_table(_read_json(path, "evaluation metrics"), path)
    training = training_table(ws)
    plots = [layout.eval_plot(ws, name) for name in layout.EVAL_PLOT_NAMES]
    missing = [str(p) for p in plots if not p.is_file()]
    if missing:
        raise EvaluateError(f"evaluate plots missing: {', '.join(missing)}; run `dvc repro evaluate`")
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    files = [out / "metrics" / "evaluate.json", out / "metrics" / "train.json"]
    for f, table in zip(files, (evaluation, training)):
        atomic.write_text(f, json.dumps(table, indent=1, sort_keys=True) + "\n")
    for p in plots:
        files.append(atomic.copy_file(p, out / "plots" / p.name))
    print(f"summary: {len(evaluation)} tracks, {len(training)} heads -> {out / 'metrics'}, {out / 'plots'}")
    return SummaryResult([f.resolve() for f in files])
