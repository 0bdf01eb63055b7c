"""Stage ``extract@<encoder>``: run one frozen encoder over every video's crops or audio.

Run as ``python -m stages.extract encoder=<name>`` (DVC's foreach over params ``extract.encoders``).
Reads: params.yaml (dataset, workdir, extract), faces.zarr and audio.zarr of the detect stage.
Writes: <workdir>/<dataset>/features/<encoder>.zarr. Complete videos with the same encoder identity
are skipped. Exit code 1 when a video failed (all others are still processed).
"""

from afwpipe import extract
from afwpipe.config import dataset_and_workspace
from afwpipe.entry import stage_main


def run(params: dict, encoder: str):
    _, ws = dataset_and_workspace(params)
    return extract.main(ws, extract.ExtractConfig.from_params(params.get("extract"), encoder=encoder))


if __name__ == "__main__":
    stage_main(run)
