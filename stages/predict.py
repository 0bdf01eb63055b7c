"""Stage ``predict``: every trained head predicts every frame of its evaluation videos.

Reads: params.yaml (dataset, workdir, train.head / tasks / folds / scenes, predict), data_manifest.yaml (the
scenes ``train.scenes`` must equal, :func:`afwpipe.scenes.check_scene_params`), index.json, labels.zarr,
faces.zarr (face masks), features/<encoder>.zarr and models/<task>-<head>-<fold>[-<scene>]/model.pt.
Writes: <workdir>/<dataset>/predictions/<model>.zarr/<video>/{au,expr,va,present} and index.json
(raw outputs of overlapping clips averaged per frame).
"""

from afwpipe import predict
from afwpipe.config import dataset_and_workspace
from afwpipe.entry import stage_main
from afwpipe.scenes import check_scene_params


def run(params: dict):
    spec, ws = dataset_and_workspace(params)
    train = params.get("train") or {}
    scenes = check_scene_params(spec, train.get("scenes"))
    cfg = predict.PredictConfig.from_params(params.get("predict"), head=train.get("head"), tasks=train.get("tasks"),
                                            folds=train.get("folds"), scenes=scenes)
    return predict.main(ws, cfg)


if __name__ == "__main__":
    stage_main(run)
