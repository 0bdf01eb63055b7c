"""Scores of every post-processed system, before and after post-processing, as DVC metrics, plots and a PNG.

Systems and decisions come from :mod:`afwpipe.postprocess` (``post/``): a fold system is scored on its own
validation videos, the ensemble on the videos none of its member heads trained or chose its epoch on (when
there is none, on the track's ``val`` split, flagged ``optimistic``). Metrics are the project's own
(:mod:`afwpipe.metrics`): AU mean of the 12 per-AU binary F1, EXPR macro F1 over 8 classes, VA mean of
CCC(valence) and CCC(arousal); invalid frames are left out. A system with no labelled frame to score is skipped with a warning;
the whole-dataset member (fold ``all``, ``unscored`` in post/systems.json) is never scored on its own.

Output (:attr:`Workspace.eval_dir`)::

    eval/metrics.json            {track: {fold|ensemble: {before: {...}, after: {...}, videos, frames,
                                 scored_on, optimistic, ...}}} with AU/EXPR ``f1`` and VA ``ccc``, ``valence``,
                                 ``arousal`` (``dvc metrics show``); see "Honesty keys" below
                                 and, for a system with scene heads, ``scenes``: per scene ``scene_head``
                                 and ``general_head`` (score, heads, optimistic, optimistic_reason),
                                 ``difference``, ``videos``, ``scored_on``, ``frames`` (:mod:`afwpipe.scene_scores`)
    eval/per_class.csv           track, system, class, before, after: every per-AU / per-class F1 and CCC
    eval/plots/au_f1.csv         AU, before, after            F1 per AU of the plotted system
    eval/plots/expr_f1.csv       class, before, after         F1 per EXPR class of the plotted system
    eval/plots/expr_confusion.csv  actual, predicted          one row per valid frame (DVC confusion template)
    eval/plots/va_trace.csv      frame, valence, arousal, valence_true, arousal_true, valence_before,
                                 arousal_before               of one video (``trace_video``)
    eval/report.png              per-class F1 bars, EXPR confusion matrix, VA trace (matplotlib, Agg); below
                                 them one line per scene: scene heads vs general heads

Honesty keys of a metrics.json entry (from post/systems.json):

- ``scored_on``: the names scored (evaluation videos with a valid label of the track);
- ``optimistic``: bool, true exactly when a scored video chose something the system uses
  (:mod:`afwpipe.honesty`): the epoch of one of its heads (``selected_on`` of the head's metrics.json, e.g.
  ``train.epoch_selection: val``, the usual ABAW protocol), its AU thresholds or smoothing (its own or its
  fold systems'), or trained a member (the ensemble scored on the ``val`` split when no unseen labelled
  video existed); ``optimistic_reason`` then says which;
- ``after_tuned_on_scored`` replaces ``after`` when ``postprocess.au_thresholds`` is ``tuned_on_scored``;
- ``thresholds_from`` (AU): ``fixed``, ``out-of-fold frames``, ``0.5 fallback (no out-of-fold frame)`` or
  ``scored frames (optimistic)``; ``warnings`` lists the post-processing warnings of the system;
- ``smoothing`` (only when ``postprocess.smooth`` tuned it): the method, the σ / window chosen (the
  ensemble: per fold) and ``from`` (``out-of-fold frames`` or the default without them).

The summary line gives per track before -> after of the ensemble (else the first scored fold), says
``lower after`` when post-processing lowered the score, and repeats the caveats.

The plotted system is ``plot_system`` (default ``ensemble``; a fold name such as ``official`` also works).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

import numpy as np

from . import atomic, layout, store
from .decisions import THRESHOLDS_SCORED
from .config import FromParams
from .datasets.base import is_generic
from .errors import AfwpipeError, EvaluateError
from .labels import EXPR_NAMES, TRACKS, VA_NAMES, valid_mask
from .readers import load_labels, read_post, read_systems
from .scene_scores import scene_lines, score_scenes
from .scores import CLASSES, before_after, headline, labelled, score, system_notes
from .store import ENSEMBLE
from .task_eval import run_evaluate_declared

log = logging.getLogger(__name__)


def score_system(ws: store.Workspace, name: str, meta: Mapping, labels: Mapping) -> dict | None:
    """``{"before", "after", "videos", "scored_on", "frames"}`` of system ``name`` on its evaluation videos
    (``scored_on``: the names scored, those with a valid label of its track), or None when there is none."""
    track = meta["track"]
    if meta.get("unscored"):  # the whole-dataset member (fold all): scored only inside the ensemble
        log.info("evaluate %s: not scored: %s", name, meta["unscored"])
        return None
    names = labelled(meta["eval_videos"], labels, track)
    if not names:
        log.warning("evaluate %s: no labelled %s frame in its evaluation videos; skipped", name, track.upper())
        return None
    result = before_after(track, {v: read_post(ws, name, v) for v in names}, labels, names)
    result["videos"], result["scored_on"] = len(names), list(names)
    result["frames"] = int(sum(valid_mask(labels[v][track], track).sum() for v in names))
    return result


@dataclass
class EvalConfig(FromParams):
    """Evaluation settings (params.yaml ``evaluate``; every default here equals params.yaml).

    Attributes:
        plot_system: fold (``official``, ``0``, …) or ``ensemble`` whose per-class scores, confusion and VA trace
            are plotted.
        trace_video: video of the VA trace; None: the plotted system's evaluation video with most valid VA frames.
    """

    params_section: ClassVar[str] = "evaluate"
    params_error: ClassVar[type[AfwpipeError]] = EvaluateError

    plot_system: str = ENSEMBLE
    trace_video: str | None = None

    def __post_init__(self):
        self.plot_system = str(self.plot_system)  # YAML reads fold 0 as an int


@dataclass
class EvalSummary:
    metrics: dict
    files: list[Path]
    seconds: float

    def line(self) -> str:
        """``evaluate: before -> after: au ensemble F1 0.4 -> 0.5 (optimistic: …), …`` (per track the ensemble,
        else the first scored fold; caveats from :func:`afwpipe.scores.system_notes`)."""
        scores, notes = {}, {}
        for track, by_fold in self.metrics.items():
            for fold, r in by_fold.items():
                after = r.get("after", r.get(AFTER_SCORED))
                scores.setdefault(track, {})[fold] = {"before": r["before"], "after": after}
                notes.setdefault(track, {})[fold] = system_notes(r)
        return f"evaluate: before -> after: {headline(scores, notes)} in {self.seconds:.1f} s"


#: metrics.json key of the after score when the AU thresholds were tuned on the scored frames themselves
AFTER_SCORED = "after_tuned_on_scored"


def _strip(result: dict, meta: Mapping) -> dict:
    """metrics.json entry: the means (and VA's two CCCs) without per-class tables, and the system's caveats
    from systems.json (module docstring)."""
    mean = {s: {k: v for k, v in result[s].items() if k != "per_class"} for s in ("before", "after")}
    after = AFTER_SCORED if meta.get("thresholds_from") == THRESHOLDS_SCORED else "after"
    out = {"before": mean["before"], after: mean["after"], "videos": result["videos"], "frames": result["frames"],
           "scored_on": result["scored_on"], "optimistic": bool(meta.get("optimistic"))}
    if meta.get("optimistic_reason"):
        out["optimistic_reason"] = meta["optimistic_reason"]
    if meta.get("thresholds_from"):
        out["thresholds_from"] = meta["thresholds_from"]
    if (meta.get("smoothing") or {}).get("from", "fixed") != "fixed":  # what a tuned smoothing chose
        out["smoothing"] = {k: v for k, v in meta["smoothing"].items() if k not in ("videos", "scores")}
    if meta.get("warnings"):
        out["warnings"] = list(meta["warnings"])
    return out


def _scene_scores(ws: store.Workspace, name: str, meta: Mapping, labels: Mapping) -> dict:
    """Each scene's score in system ``name``: its scene heads against the general heads on the system's scored
    videos of the scene (:func:`afwpipe.scene_scores.score_scenes`); ``{}`` without scene heads."""
    scenes = meta.get("scenes") or {}
    evals = set(meta["eval_videos"])
    videos = {v for s in scenes.values() for v in s["videos"] if v in evals and v in labels}
    outs = {}
    for v in videos:
        post = read_post(ws, name, v)
        if "general" not in post:
            raise EvaluateError(f"{ws.post(name)}: video {v} of scene heads has no general head decisions; rerun "
                                "`afwpipe postprocess`")
        outs[v] = post
    return score_scenes(meta["track"], scenes, meta["eval_videos"], outs, labels)


def _write_csv(path: Path, header, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.open_atomic(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def run_evaluate(ws: store.Workspace, cfg: EvalConfig | None = None) -> EvalSummary:
    """Score every system of ``post/`` and write ``eval/`` (module docstring).

    Raises:
        EvaluateError: no post-processed predictions, or ``trace_video`` is not an evaluation video.
    """
    index = ws.read_index()
    if is_generic(index):  # a dataset's declared tasks, scored by type (afwpipe.task_eval)
        return run_evaluate_declared(ws, index)
    t0 = time.perf_counter()
    cfg = cfg or EvalConfig()
    systems = read_systems(ws)["systems"]
    eval_names = sorted({v for m in systems.values() for v in m["eval_videos"]})
    labels = load_labels(ws, eval_names) if eval_names else {}
    metrics: dict = {}
    rows = []
    results = {}
    for name, meta in systems.items():
        r = score_system(ws, name, meta, labels)
        if r is None:
            continue
        results[name] = r
        metrics.setdefault(meta["track"], {})[meta["fold"]] = _strip(r, meta)
        scenes = _scene_scores(ws, name, meta, labels)
        if scenes:
            metrics[meta["track"]][meta["fold"]]["scenes"] = scenes
        for cls in r["after"]["per_class"]:
            rows.append([meta["track"], name, cls, r["before"]["per_class"][cls], r["after"]["per_class"][cls]])
    ws.eval_dir.mkdir(parents=True, exist_ok=True)
    path = layout.eval_file(ws, layout.EVAL_METRICS)
    atomic.write_text(path, json.dumps(metrics, indent=1) + "\n")
    files = [path, _write_csv(layout.eval_file(ws, layout.EVAL_PER_CLASS),
                              ["track", "system", "class", "before", "after"], rows)]
    files += _write_plots(ws, systems, results, labels, cfg, scene_lines(metrics, reasons=False))
    return EvalSummary(metrics, files, time.perf_counter() - t0)


def _write_plots(ws: store.Workspace, systems: Mapping, results: Mapping, labels: Mapping, cfg: EvalConfig,
                 scenes: list[str] = ()) -> list[Path]:
    sys_name = {t: f"{t}-{cfg.plot_system}" for t in TRACKS}
    files = []
    for track, first in (("au", "AU"), ("expr", "class")):
        r = results.get(sys_name[track])
        rows = [] if r is None else [[c, r["before"]["per_class"][c], r["after"]["per_class"][c]]
                                     for c in CLASSES[track]]
        files.append(_write_csv(layout.eval_plot(ws, f"{track}_f1"), [first, "before", "after"], rows))
    # EXPR confusion (after), one row per valid frame
    conf_rows, conf = [], np.zeros((len(EXPR_NAMES), len(EXPR_NAMES)), np.int64)
    if sys_name["expr"] in results:
        for v in systems[sys_name["expr"]]["eval_videos"]:
            if v not in labels:
                continue
            true = labels[v]["expr"]
            pred = read_post(ws, sys_name["expr"], v)["after"]
            ok = true >= 0
            np.add.at(conf, (true[ok].astype(int), pred[ok].astype(int)), 1)
            conf_rows += [[EXPR_NAMES[a], EXPR_NAMES[p]] for a, p in zip(true[ok], pred[ok])]
    files.append(_write_csv(layout.eval_plot(ws, "expr_confusion"), ["actual", "predicted"], conf_rows))
    # VA trace of one video
    trace, video = None, None
    va_meta = systems.get(sys_name["va"])
    if va_meta is not None and sys_name["va"] in results:
        candidates = [v for v in va_meta["eval_videos"] if v in labels]
        video = cfg.trace_video
        if video is not None and video not in candidates:
            raise EvaluateError(f"evaluate trace_video {video!r} is not an evaluation video of {sys_name['va']} "
                               f"({', '.join(candidates)})")
        if video is None and candidates:
            video = max(candidates, key=lambda v: int(valid_mask(labels[v]["va"], "va").sum()))
        if video is not None:
            out = read_post(ws, sys_name["va"], video)
            trace = (labels[video]["va"], out["before"], out["after"])
    rows = []
    if trace is not None:
        true, before, after = trace
        for i in range(len(true)):
            t = [None if x == -5 else float(x) for x in true[i]]
            rows.append([i, float(after[i, 0]), float(after[i, 1]), t[0], t[1], float(before[i, 0]), float(before[i, 1])])
    files.append(_write_csv(layout.eval_plot(ws, "va_trace"), ["frame", "valence", "arousal", "valence_true", "arousal_true",
                                                     "valence_before", "arousal_before"], rows))
    files.append(_report_png(layout.eval_file(ws, layout.EVAL_REPORT), results, sys_name, conf, trace, video, cfg, scenes))
    return files


def _report_png(path: Path, results, sys_name, conf, trace, video, cfg, scenes=()) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    extra = 0.18 * len(scenes)  # inches of text below the plots: one line per (track, system, scene)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8 + extra), dpi=80)
    for ax, track in ((axes[0, 0], "au"), (axes[0, 1], "expr")):
        r = results.get(sys_name[track])
        names = CLASSES[track]
        if r is None:
            ax.set_axis_off()
            ax.set_title(f"{track.upper()}: not scored")
            continue
        x = np.arange(len(names))
        ax.bar(x - 0.2, [r["before"]["per_class"][c] for c in names], 0.4, label=f"before ({r['before']['f1']:.3f})")
        ax.bar(x + 0.2, [r["after"]["per_class"][c] for c in names], 0.4, label=f"after ({r['after']['f1']:.3f})")
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("F1")
        ax.set_title(f"{track.upper()} F1 per {'AU' if track == 'au' else 'class'} ({sys_name[track]})")
        ax.legend(fontsize=8)
    ax = axes[1, 0]
    if conf.sum():
        norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for i, j in zip(*np.nonzero(conf)):
            ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(EXPR_NAMES)), EXPR_NAMES, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(EXPR_NAMES)), EXPR_NAMES, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title(f"EXPR confusion after ({sys_name['expr']}, row-normalised colour, counts)")
    else:
        ax.set_axis_off()
        ax.set_title("EXPR confusion: no labelled frame")
    ax = axes[1, 1]
    if trace is not None:
        true, before, after = trace
        t = np.arange(len(true))
        for j, (name, colour) in enumerate(zip(VA_NAMES, ("tab:blue", "tab:red"))):
            y = np.where(np.isclose(true[:, j], -5), np.nan, true[:, j])
            ax.plot(t, y, color=colour, lw=2, label=f"{name} truth")
            ax.plot(t, before[:, j], color=colour, lw=0.8, ls=":", label=f"{name} before")
            ax.plot(t, after[:, j], color=colour, lw=1.2, ls="--", label=f"{name} after")
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("frame")
        r = results[sys_name["va"]]
        ax.set_title(f"VA of {video} ({sys_name['va']}; CCC {r['before']['ccc']:.3f} -> {r['after']['ccc']:.3f})",
                     fontsize=10)
        ax.legend(fontsize=7, ncol=2)
    else:
        ax.set_axis_off()
        ax.set_title("VA: not scored")
    if scenes:  # each scene's score beside the general heads' (afwpipe.scene_scores)
        fig.text(0.01, 0.005, "\n".join(scenes), fontsize=8, va="bottom", ha="left", family="monospace")
        fig.tight_layout(rect=(0, extra / (8 + extra), 1, 1))
    else:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def main(ws: store.Workspace, cfg: EvalConfig) -> EvalSummary:
    """The evaluate step as ``afwpipe evaluate`` and ``python -m stages.evaluate`` run it: :func:`run_evaluate`,
    then its summary line (before -> after per track, caveats) printed."""
    summary = run_evaluate(ws, cfg)
    print(summary.line())
    for line in scene_lines(summary.metrics):
        print(line)
    print(f"metrics, plots and report in {ws.eval_dir}")
    return summary


__all__ = ["EvalConfig", "EvalSummary", "main", "run_evaluate", "score", "score_system"]

