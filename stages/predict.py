"""Stage ``predict``: every trained head predicts every frame of its evaluation videos.

Reads: params.yaml (dataset, workdir, train.head / tasks / folds, predict), index.json, labels.zarr,
faces.zarr (face masks), features/<encoder>.zarr and models/<task>-<head>-<fold>[-<scene>]/model.pt.
Writes: <workdir>/<dataset>/predictions/<model>.zarr/<video>/{au,expr,va,present} and index.json
(raw outputs of overlapping clips averaged per frame; afwpipe/predict.py).
"""

from __future__ import annotations

from afwpipe.config import dataset_and_workspace, load_params
from afwpipe.errors import stage_main
from afwpipe.predict import PredictConfig, PredictSummary, run_predict


def run(params: dict, manifest="data_manifest.yaml", progress: bool = True) -> PredictSummary:
    _, ws = dataset_and_workspace(params, manifest)
    train, p = params.get("train") or {}, params.get("predict") or {}
    cfg = PredictConfig(head=train.get("head"), tasks=train.get("tasks"), folds=train.get("folds"),
                        batch_size=int(p.get("batch_size", 32)), device=p.get("device", "auto"))
    summary = run_predict(ws, cfg, progress=progress)
    print(summary.line())
    print(f"predictions in {ws.predictions_dir}")
    return summary


if __name__ == "__main__":
    stage_main(run, load_params())
