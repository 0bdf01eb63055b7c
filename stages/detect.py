"""Stage ``detect``: faces (boxes, landmarks, aligned crops, present mask) and 16 kHz audio per video.

Reads: params.yaml (dataset, workdir, detect), <workdir>/<dataset>/index.json, the videos.
Writes: faces.zarr, audio.zarr, detect_failures.json. Videos already complete are skipped.
Exit code 1 when a video failed (all others are still processed), unless accept_failures.
"""

from __future__ import annotations

from afwpipe.config import dataset_and_workspace, load_params
from afwpipe.device import resolve_device
from afwpipe.detect import DetectConfig, run_detect
from afwpipe.errors import stage_main


def run(params: dict, manifest="data_manifest.yaml", accept_failures: bool = False, names=None,
        progress: bool = True, scheduler: str | None = None) -> int:
    _, ws = dataset_and_workspace(params, manifest)
    p = params["detect"]
    cfg = DetectConfig(detector=p["detector"], size=int(p["size"]), batch_size=int(p["batch_size"]),
                       device=resolve_device(p["device"]), weights=p.get("weights"),
                       use_cropped=bool(p.get("use_cropped", False)))
    summary = run_detect(ws, cfg, names=names, progress=progress, scheduler=scheduler)
    print(summary.line())
    for r in summary.failures:
        print(f"FAILED {r.name}: {r.error}")
    if summary.failures:
        print(f"failures listed in {ws.root / 'detect_failures.json'}")
    return 1 if summary.failures and not accept_failures else 0


if __name__ == "__main__":
    stage_main(run, load_params())
