"""Stage ``index``: probe every video, align annotations, assign per-track splits and folds.

Reads: params.yaml (dataset, workdir), data_manifest.yaml, the dataset's videos, annotations and test lists.
Writes: <workdir>/<dataset>/index.json and labels.zarr. Prints the table of indexed videos.
"""

from afwpipe import index
from afwpipe.config import dataset_and_workspace
from afwpipe.entry import stage_main


def run(params: dict):
    spec, ws = dataset_and_workspace(params)
    return index.main(spec, ws)


if __name__ == "__main__":
    stage_main(run)
