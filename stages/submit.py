"""Command ``submit`` (not a DVC stage: its example files are per challenge edition): ABAW5/6 files.

Reads: params.yaml (dataset, workdir, submit), index.json, post/ of the postprocess stage and, when
given, the organisers' example file of each track.
Writes: <workdir>/<dataset>/submission/{AU_Detection_Challenge,EXPR_Recognition_Challenge,
VA_Estimation_Challenge}.txt (afwpipe/submission.py): per track the example file's rows, else one row per
decoded frame of each name of the track's test split (submit.splits); prints which rule each track used and
warns when a track is fed by heads trained on other labels (postprocess.sources, uni-task rule).
Usage: python -m stages.submit
"""

from __future__ import annotations

from pathlib import Path

from afwpipe.config import dataset_and_workspace, load_params
from afwpipe.errors import stage_main
from afwpipe.submission import DEFAULT_SPLITS, TrackSummary, write_submission


def run(params: dict, manifest="data_manifest.yaml", out_dir: Path | None = None) -> list[TrackSummary]:
    """Write the files; print per track the rule that chose its rows and any uni-task warning."""
    _, ws = dataset_and_workspace(params, manifest)
    p = params.get("submit") or {}
    examples = {t: Path(f) for t, f in (p.get("examples") or {}).items() if f}
    summaries = write_submission(ws, str(p.get("system", "ensemble")), tuple(p.get("splits") or DEFAULT_SPLITS),
                                 examples, out_dir)
    for s in summaries:
        print(f"submit: {s.line()} -> {s.path}")
        for w in s.warnings:
            print(f"submit: WARNING: {w}")
    return summaries


if __name__ == "__main__":
    stage_main(run, load_params())
