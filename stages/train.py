"""Stage ``train``: one fusion head for one (task, fold) on the cached features; never reads video.

Reads: params.yaml (dataset, workdir, train), <workdir>/<dataset>/index.json, labels.zarr and
features/<encoder>.zarr of the encoders in ``train.features``.
Writes: <workdir>/<dataset>/models/<task>-<head>-<fold>[-<scene>]/model.pt and metrics.json.
Run as ``python -m stages.train --task au --fold 0`` (DVC runs it once per task × fold).
"""

from __future__ import annotations

import argparse

from afwpipe.config import dataset_and_workspace, load_params
from afwpipe.errors import stage_main
from afwpipe.labels import TRAIN_TASKS
from afwpipe.train import TrainConfig, TrainResult, train


def run(params: dict, task: str | None = None, fold=None, scene: str | None = None,
        manifest="data_manifest.yaml", progress: bool = True) -> TrainResult:
    _, ws = dataset_and_workspace(params, manifest)
    cfg = TrainConfig.from_params(params.get("train"), task=task, fold=fold, scene=scene)
    result = train(ws, cfg, progress=progress)
    print(result.line())
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=TRAIN_TASKS, help="default: params train.task")
    ap.add_argument("--fold", help="'official' or a fold number; default: params train.fold")
    ap.add_argument("--scene", help="train on one scene subset of the index")
    args = ap.parse_args()
    stage_main(run, load_params(), args.task, args.fold, args.scene)
