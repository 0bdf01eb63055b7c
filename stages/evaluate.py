"""Stage ``evaluate``: scores of every fold and of the ensemble, before and after post-processing.

Reads: params.yaml (dataset, workdir, evaluate), index.json, labels.zarr, post/ of the postprocess stage.
Writes: <workdir>/<dataset>/eval/metrics.json (dvc metrics), per_class.csv, plots/*.csv (dvc plots) and
report.png (afwpipe/evaluate.py).
"""

from __future__ import annotations

from afwpipe.config import dataset_and_workspace, load_params
from afwpipe.errors import stage_main
from afwpipe.evaluate import EvalConfig, EvalSummary, run_evaluate


def run(params: dict, manifest="data_manifest.yaml") -> EvalSummary:
    _, ws = dataset_and_workspace(params, manifest)
    summary = run_evaluate(ws, EvalConfig.from_params(params.get("evaluate")))
    print(summary.line())
    print(f"metrics, plots and report in {ws.eval_dir}")
    return summary


if __name__ == "__main__":
    stage_main(run, load_params())
