"""Stage ``transcribe``: every video's words with start / end times and confidence, by one ASR.

Run as ``python -m stages.transcribe``. Reads: params.yaml (dataset, workdir, transcribe), index.json and
audio.zarr of the detect stage. Writes: <workdir>/<dataset>/transcripts/<asr>.zarr. Complete videos with
the same ASR identity are skipped. Exit code 1 when a video failed (all others are still processed).
"""

from afwpipe import transcribe
from afwpipe.config import dataset_and_workspace
from afwpipe.entry import stage_main


def run(params: dict):
    _, ws = dataset_and_workspace(params)
    return transcribe.main(ws, transcribe.TranscribeConfig.from_params(params.get("transcribe")))


if __name__ == "__main__":
    stage_main(run)
