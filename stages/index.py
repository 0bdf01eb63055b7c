"""Stage ``index``: probe every video, align annotations, assign splits and folds.

Reads: params.yaml (dataset, workdir), data_manifest.yaml, the dataset's videos and annotations.
Writes: <workdir>/<dataset>/index.json and labels.zarr. Prints the table of indexed videos.
"""

from __future__ import annotations

from afwpipe.config import dataset_and_workspace, load_params
from afwpipe.errors import stage_main
from afwpipe.index import build_index, format_table


def run(params: dict, manifest="data_manifest.yaml") -> dict:
    spec, ws = dataset_and_workspace(params, manifest)
    index = build_index(spec, ws)
    print(format_table(index))
    print(f"wrote {ws.index} and {ws.labels}")
    return index


if __name__ == "__main__":
    stage_main(run, load_params())
