"""Stage ``train_scene@<task>-<fold>-<scene>``: one fusion head for one (task, fold) on one scene's videos.

Run as ``python -m stages.train_scene task=<task> fold=<fold> scene=<scene>`` (DVC's matrix over params
``train.tasks`` x ``train.folds`` x ``train.scenes``). ``train.scenes`` must equal the scenes of the dataset in
data_manifest.yaml (:func:`afwpipe.scenes.check_scene_params`: DVC cannot read the manifest in a matrix).
Reads: params.yaml (dataset, workdir, train), data_manifest.yaml, <workdir>/<dataset>/index.json, labels.zarr
and features/<encoder>.zarr of the encoders in ``train.features``.
Writes: <workdir>/<dataset>/models/<task>-<head>-<fold>-<scene>/model.pt and metrics.json.
"""

from afwpipe import train
from afwpipe.config import dataset_and_workspace
from afwpipe.entry import stage_main
from afwpipe.errors import TrainError
from afwpipe.layout import AUTO
from afwpipe.scenes import check_scene_params


def run(params: dict, task: str, fold: str | int, scene: str):
    spec, ws = dataset_and_workspace(params)
    if task == AUTO:
        raise TrainError("train.tasks [auto] with train.scenes: a scene head needs named tasks; list them in "
                         "train.tasks, or set train.scenes: []")
    check_scene_params(spec, (params.get("train") or {}).get("scenes"))
    return train.main(ws, train.TrainConfig.from_params(params.get("train"), task=task, fold=fold, scene=scene))


if __name__ == "__main__":
    stage_main(run)
