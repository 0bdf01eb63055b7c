"""What each step writes inside the workspace: the model folders' names (built and parsed here, nowhere
else) and the file names inside the folders that :class:`afwpipe.store.Workspace` owns.

``store.Workspace`` names the folders and stores (``models/``, ``eval/``, ``faces.zarr``, ...); this module
names what goes in them, so no step spells ``"model.pt"`` or ``"metrics.json"`` itself and a reader finds
what a writer wrote (docs/architecture.md, "One config and one main per step")::

    models/<task>-<head>-<fold>[-<scene>]/model.pt        a trained head (afwpipe.inference's checkpoint)
    models/<task>-<head>-<fold>[-<scene>]/metrics.json    its training record (train; honesty, summary read it)
    models/auto-<head>-<fold>/<task>-<head>-<fold>/       the same folders, grouped by one train@auto-<fold> run
    eval/metrics.json, eval/per_class.csv, eval/report.png, eval/plots/<name>.csv    evaluate
    <step>_failures[_<store>].json                        the videos a step failed on, with their errors

A model folder's name is ``<task>-<head>-<fold>[-<scene>]``: ``task`` one of ``labels.TRAIN_TASKS``, ``head``
a registered head (no ``-``), ``fold`` as :func:`afwpipe.folds.parse_fold` reads it, ``scene`` a scene of
the manifest (it may hold ``-``).

Params ``train.tasks: [auto]`` trains every task the dataset declares in one DVC stage per fold
(``train@auto-<fold>``, :mod:`afwpipe.train_all`): that stage owns the group folder ``models/auto-<head>-<fold>/``
and writes each task's ordinary model folder inside it. Readers find a model folder in either place
(:func:`model_folders`, :func:`model_dir`), so nothing after training knows how the heads were grouped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TrainError
from .labels import TRAIN_TASKS
from .store import Workspace

#: a trained head's checkpoint inside its model folder (afwpipe.inference.save_checkpoint writes it)
MODEL_FILE = "model.pt"
#: a trained head's training record inside its model folder (train writes it)
RUN_RECORD = "metrics.json"
#: evaluate's scores, per-class table and report inside ``eval/``; its plot tables in ``eval/plots/``
EVAL_METRICS = "metrics.json"
EVAL_PER_CLASS = "per_class.csv"
EVAL_REPORT = "report.png"
EVAL_PLOTS = "plots"
#: evaluate's plot tables, ``eval/plots/<name>.csv`` (the summary copies them for ``dvc plots``)
EVAL_PLOT_NAMES = ("au_f1", "expr_f1", "expr_confusion", "va_trace")


#: the fold of the whole-dataset member (afwpipe.folds' docstring)
ALL = "all"
#: params ``train.tasks: [auto]``: every task of the dataset, one head each (module docstring)
AUTO = "auto"


def parse_fold(fold) -> str | int:
    """A fold as it names a model folder (``models/<task>-<head>-<fold>``): ``"official"``, ``"all"`` or a fold
    number (int, or a string of digits).

    Raises:
        TrainError: anything else.
    """
    if isinstance(fold, (int, np.integer)) and not isinstance(fold, bool):
        return int(fold)
    if isinstance(fold, str) and fold.strip().lstrip("-").isdigit():
        return int(fold)
    if fold in ("official", ALL):
        return fold
    raise TrainError(f"fold must be 'official', '{ALL}' or a fold number, got {fold!r}")


def model_name(task: str, head: str, fold, scene: str | None = None) -> str:
    """``<task>-<head>-<fold>[-<scene>]``, the model folder's name (module docstring). ``fold``: ``"official"``,
    ``"all"`` or a fold number."""
    return "-".join([task, head, str(fold)] + ([scene] if scene else []))


@dataclass(frozen=True)
class ModelRef:
    """A trained head's folder ``models/<task>-<head>-<fold>[-<scene>]`` (:func:`model_name`)."""

    name: str
    path: Path
    task: str
    head: str
    fold: str | int
    scene: str | None = None

    @property
    def checkpoint(self) -> Path:
        """``<folder>/model.pt``."""
        return self.path / MODEL_FILE

    @property
    def record(self) -> Path:
        """``<folder>/metrics.json``, the training record."""
        return self.path / RUN_RECORD


def parse_model_name(name: str, path: Path | None = None, tasks=TRAIN_TASKS) -> ModelRef | None:
    """``<task>-<head>-<fold>[-<scene>]`` -> :class:`ModelRef` (``path`` defaults to ``Path(name)``), or None when
    ``name`` is not such a folder name (a task not in ``tasks``, no fold, a fold :func:`parse_fold` refuses).
    ``tasks``: the training tasks (Aff-Wild2's, or a dataset's declared tasks and ``mtl``, :mod:`afwpipe.datasets`)."""
    parts = name.split("-", 3)
    if len(parts) < 3 or parts[0] not in tasks:
        return None
    try:
        fold = parse_fold(parts[2])
    except Exception:
        return None
    return ModelRef(name, Path(path) if path is not None else Path(name), parts[0], parts[1], fold,
                    parts[3] if len(parts) == 4 else None)


def group_dir(ws: Workspace, head: str, fold) -> Path:
    """``models/auto-<head>-<fold>``: the folder of one ``train@auto-<fold>`` run, holding a model folder per task."""
    return ws.models / model_name(AUTO, head, fold)


def model_dir(ws: Workspace, name: str) -> Path:
    """A trained head's folder: ``models/<name>``, or ``models/auto-<head>-<fold>/<name>`` when a
    ``train@auto-<fold>`` run wrote it there (and ``models/<name>`` does not exist)."""
    direct = ws.models / name
    parts = name.split("-", 3)
    if direct.is_dir() or len(parts) < 3 or parts[0] == AUTO:
        return direct
    grouped = group_dir(ws, parts[1], parts[2]) / name
    return grouped if grouped.is_dir() else direct


def model_folders(ws: Workspace) -> list[Path]:
    """Every folder under ``models/`` that may be a model folder: ``models/<name>`` and the folders inside each
    group ``models/auto-<head>-<fold>/``, sorted by folder name (the group folders themselves are left out)."""
    if not ws.models.is_dir():
        return []
    out = []
    for d in ws.models.iterdir():
        if not d.is_dir():
            continue
        if d.name.split("-", 1)[0] == AUTO:
            out += [g for g in d.iterdir() if g.is_dir()]
        else:
            out.append(d)
    return sorted(out, key=lambda d: d.name)


def checkpoint(folder: Path) -> Path:
    """``<folder>/model.pt`` of a model folder (one of ``models/`` or one given on the command line)."""
    return Path(folder) / MODEL_FILE


def run_record(ws: Workspace, name: str) -> Path:
    """``models/<name>/metrics.json``: the training record of a trained head."""
    return model_dir(ws, name) / RUN_RECORD


def eval_file(ws: Workspace, name: str) -> Path:
    """``eval/<name>``: one of :data:`EVAL_METRICS`, :data:`EVAL_PER_CLASS`, :data:`EVAL_REPORT`."""
    return ws.eval_dir / name


def eval_plot(ws: Workspace, name: str) -> Path:
    """``eval/plots/<name>.csv``: a plot table of evaluate (``au_f1``, ``expr_f1``, ``expr_confusion``, ``va_trace``)."""
    return ws.eval_dir / EVAL_PLOTS / f"{name}.csv"


def failures_file(ws: Workspace, step: str, store_path: Path | None = None) -> Path:
    """``<step>_failures[_<store stem>].json`` at the workspace root: the videos ``step`` failed on, one per store
    it writes (``extract_failures_mae.json`` for ``features/mae.zarr``)."""
    return ws.root / (f"{step}_failures" + (f"_{Path(store_path).stem}" if store_path is not None else "") + ".json")


__all__ = ["ALL", "AUTO", "EVAL_METRICS", "EVAL_PER_CLASS", "EVAL_PLOT_NAMES", "EVAL_PLOTS", "EVAL_REPORT", "MODEL_FILE", "ModelRef", "RUN_RECORD",
           "checkpoint", "eval_file", "eval_plot", "failures_file", "group_dir", "model_dir", "model_folders", "model_name", "parse_fold", "parse_model_name",
           "run_record"]
