"""Every task of a dataset, one head each, in one run: params ``train.tasks: [auto]``.

DVC expands ``dvc.yaml``'s ``train`` matrix (``task: ${train.tasks}`` x ``fold: ${train.folds}``) from
params.yaml when it parses the file, before any stage runs, so the matrix cannot hold the tasks a dataset's
manifest entry declares (DVC's templating reads params only, and a bare string such as ``auto`` is not a list it
can iterate). ``train.tasks: [auto]`` is a list of one name: the matrix gives one stage per fold,
``train@auto-<fold>``, and that stage trains here every task the index holds (a generic reader's declared tasks,
or Aff-Wild2's AU, EXPR and VA; ``mtl`` is not one of them: list it to train it), one head each, in the order of
the index. A dataset with other tasks needs no change to params.yaml or dvc.yaml.

What it writes (:mod:`afwpipe.layout`, :mod:`afwpipe.curves`): the stage owns two folders, the outputs dvc.yaml
declares for ``task=auto``:

    models/auto-<head>-<fold>/<task>-<head>-<fold>/model.pt, metrics.json   each task's ordinary model folder
    curves/auto-<fold>/metrics.json, plots/metrics/<task>/loss.tsv ...      one DVCLive folder, a prefix per task

Prediction, post-processing, evaluation and the summary find a grouped model folder as they find any other
(:func:`afwpipe.layout.model_folders`, :func:`afwpipe.layout.model_dir`). Scene heads (``train_scene``) take
named tasks only.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping

from . import layout, store
from .curves import EpochCurves, curves_dir
from .datasets.base import index_tasks
from .errors import TrainError
from .records import IndexFile
from .train import TrainConfig, TrainResult, train


def auto_tasks(index: IndexFile) -> list[str]:
    """The tasks ``train.tasks: [auto]`` trains: every task of ``index.json`` (:func:`afwpipe.datasets.base.index_tasks`:
    the declared tasks of a generic reader, else ``au``, ``expr``, ``va``), in index order.

    Raises:
        TrainError: the index holds no task.
    """
    tasks = list(index_tasks(index))
    if not tasks:
        raise TrainError(f"train.tasks [auto]: the index of {index.dataset!r} holds no task to train")
    return tasks


def train_all(ws: store.Workspace, section: Mapping | None, fold, *, progress: bool = True,
              **overrides) -> list[TrainResult]:
    """Train one head per task of the index (:func:`auto_tasks`) for ``fold``, into the group folder
    ``models/auto-<head>-<fold>/`` (removed first: the run owns it) and the curves folder ``curves/auto-<fold>/``.

    Args:
        ws: the workspace (``index.json``, ``labels.zarr``, the feature stores of ``train.features``).
        section: params ``train`` (:class:`afwpipe.train.TrainConfig`; ``train.features`` may be per task).
        fold: ``"official"``, ``"all"`` or a fold number.
        progress: tqdm bars.
        overrides: further :class:`~afwpipe.train.TrainConfig` fields (the command line's options); not ``task``
            or ``scene``.

    Returns:
        One :class:`~afwpipe.train.TrainResult` per task, in :func:`auto_tasks` order.

    Raises:
        TrainError: a scene in ``overrides`` (scene heads take named tasks), no task in the index, and whatever
            :func:`afwpipe.train.train` raises for a task (the run stops there; the earlier tasks' folders stay).
    """
    if overrides.get("scene"):
        raise TrainError("train.tasks [auto] trains whole-dataset heads; a scene head (train_scene) needs named "
                         "tasks: list them in train.tasks")
    tasks = auto_tasks(ws.read_index())
    configs = [TrainConfig.from_params(section, task=t, fold=fold, **overrides) for t in tasks]
    group = layout.group_dir(ws, configs[0].head, configs[0].fold)
    if group.exists():
        shutil.rmtree(group)
    curves = EpochCurves(curves_dir(ws, layout.AUTO, configs[0].fold))
    results = []
    try:
        for cfg in configs:
            result = train(ws, cfg, progress, out_dir=group / cfg.run_name, curves=curves.scoped(cfg.task))
            print(result.line())
            results.append(result)
    finally:
        curves.close()
    return results


__all__ = ["auto_tasks", "train_all"]
