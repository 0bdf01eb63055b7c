"""Stage ``detect``: faces (boxes, landmarks, aligned crops, present mask) and 16 kHz audio per video.

Reads: params.yaml (dataset, workdir, detect), <workdir>/<dataset>/index.json, the videos.
Writes: faces.zarr, audio.zarr, detect_failures.json. Videos already complete are skipped.
Exit code 1 when a video failed (all others are still processed).
"""

from afwpipe import detect
from afwpipe.config import dataset_and_workspace
from afwpipe.entry import stage_main


def run(params: dict):
    _, ws = dataset_and_workspace(params)
    return detect.main(ws, detect.DetectConfig.from_params(params.get("detect")))


if __name__ == "__main__":
    stage_main(run)
