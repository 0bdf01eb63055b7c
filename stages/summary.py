"""Stage ``summary``: the experiment table of ``dvc exp show`` at stable, git-tracked paths.

Reads: params.yaml (dataset, workdir), eval/metrics.json and eval/plots/*.csv of the evaluate stage,
predictions/index.json and models/*/metrics.json.
Writes: metrics/evaluate.json, metrics/train.json (dvc metrics) and plots/*.csv (dvc plots) at the
repository root, tracked by git (cache: false).
"""

from afwpipe import summary
from afwpipe.config import dataset_and_workspace
from afwpipe.entry import stage_main


def run(params: dict):
    _, ws = dataset_and_workspace(params)
    return summary.main(ws, ".")


if __name__ == "__main__":
    stage_main(run)
