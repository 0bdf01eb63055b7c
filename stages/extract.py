"""Stage ``extract@<encoder>``: run one frozen encoder over every video's crops or audio.

Reads: params.yaml (dataset, workdir, extract), faces.zarr and audio.zarr of the face stage.
Writes: <workdir>/<dataset>/features/<encoder>.zarr. Complete videos with the same encoder identity
are skipped. Exit code 1 when a video failed (all others are still processed), unless accept_failures.
Usage: python -m stages.extract ENCODER
"""

from __future__ import annotations

import sys

from afwpipe.config import dataset_and_workspace, load_params
from afwpipe.device import resolve_device
from afwpipe.errors import stage_main
from afwpipe.extract import ExtractConfig, run_extract


def run(params: dict, encoder: str, manifest="data_manifest.yaml", weights=None, accept_failures=False,
        names=None, progress: bool = True, scheduler: str | None = None) -> int:
    _, ws = dataset_and_workspace(params, manifest)
    p = params["extract"]
    weights = weights if weights is not None else (p.get("weights") or {}).get(encoder)
    cfg = ExtractConfig(encoder=encoder, weights=weights, device=resolve_device(p["device"]),
                        batch_size=int(p["batch_size"]))
    summary = run_extract(ws, cfg, names=names, progress=progress, scheduler=scheduler)
    print(summary.line())
    print(f"features in {ws.features(encoder)} (weights: {summary.weights})")
    for r in summary.failures:
        print(f"FAILED {r.name}: {r.error}")
    return 1 if summary.failures and not accept_failures else 0


if __name__ == "__main__":
    stage_main(run, load_params(), sys.argv[1])
