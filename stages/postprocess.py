"""Stage ``postprocess``: fill, smooth, threshold, override with scene heads, and ensemble the folds.

Reads: params.yaml (dataset, workdir, postprocess), index.json, labels.zarr (threshold tuning) and
predictions/ of the predict stage.
Writes: <workdir>/<dataset>/post/<track>-<fold|ensemble>.npz (<video>/{prob,before,after}) and
systems.json (afwpipe/postprocess.py).
"""

from __future__ import annotations

from afwpipe.config import dataset_and_workspace, load_params
from afwpipe.errors import stage_main
from afwpipe.postprocess import PostConfig, PostSummary, run_postprocess


def run(params: dict, manifest="data_manifest.yaml", progress: bool = True) -> PostSummary:
    _, ws = dataset_and_workspace(params, manifest)
    cfg = PostConfig.from_params(params.get("postprocess"))
    summary = run_postprocess(ws, cfg, progress=progress)
    print(summary.line())
    print(f"post-processed predictions in {ws.post_dir}")
    return summary


if __name__ == "__main__":
    stage_main(run, load_params())
