"""Stage ``evaluate``: scores of every fold and of the ensemble, before and after post-processing.

Reads: params.yaml (dataset, workdir, evaluate), index.json, labels.zarr, post/ of the postprocess stage.
Writes: <workdir>/<dataset>/eval/metrics.json (dvc metrics), per_class.csv, plots/*.csv (dvc plots) and
report.png.
"""

from afwpipe import evaluate
from afwpipe.config import dataset_and_workspace
from afwpipe.entry import stage_main


def run(params: dict):
    _, ws = dataset_and_workspace(params)
    return evaluate.main(ws, evaluate.EvalConfig.from_params(params.get("evaluate")))


if __name__ == "__main__":
    stage_main(run)
