"""Stage ``postprocess``: fill, smooth, threshold, override with scene heads, and ensemble the folds.

Reads: params.yaml (dataset, workdir, postprocess), index.json, labels.zarr (threshold tuning on
out-of-fold frames), models/*/metrics.json (which videos each head saw) and predictions/ of the predict stage.
Writes: <workdir>/<dataset>/post/<track>-<fold|ensemble>.npz (<video>/{prob,before,after}) and systems.json.
"""

from afwpipe import postprocess
from afwpipe.config import dataset_and_workspace
from afwpipe.entry import stage_main


def run(params: dict):
    _, ws = dataset_and_workspace(params)
    return postprocess.main(ws, postprocess.PostConfig.from_params(params.get("postprocess")))


if __name__ == "__main__":
    stage_main(run)
