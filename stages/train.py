"""Stage ``train@<task>-<fold>``: one fusion head for one (task, fold) on the cached features; never reads video.

Run as ``python -m stages.train task=<task> fold=<fold>`` (DVC's matrix over params ``train.tasks`` x
``train.folds``). ``task=auto`` (params ``train.tasks: [auto]``) trains every task of the dataset, one head each
(:mod:`afwpipe.train_all`).
Reads: params.yaml (dataset, workdir, train), <workdir>/<dataset>/index.json, labels.zarr and
features/<encoder>.zarr of the encoders in ``train.features``.
Writes: <workdir>/<dataset>/models/<task>-<head>-<fold>/model.pt and metrics.json, curves/<task>-<fold>/;
with ``task=auto``: models/auto-<head>-<fold>/<task>-<head>-<fold>/ per task and curves/auto-<fold>/.
"""

from afwpipe import layout, train, train_all
from afwpipe.config import dataset_and_workspace
from afwpipe.entry import stage_main


def run(params: dict, task: str, fold: str | int):
    _, ws = dataset_and_workspace(params)
    if task == layout.AUTO:
        return train_all.train_all(ws, params.get("train"), fold)
    return train.main(ws, train.TrainConfig.from_params(params.get("train"), task=task, fold=fold))


if __name__ == "__main__":
    stage_main(run)
