"""Stage ``text@<encoder>``: one ``text:<hf-id>`` encoder over every video's transcript, spread over its frames.

Run as ``python -m stages.text encoder=text:<hf-id> store=<name>`` (DVC's foreach over the mapping params
``text.encoders``, store name -> encoder; the name must be the encoder's store name, ``text_<hf-id>``).
Reads: params.yaml (dataset, workdir, text), faces.zarr (frame times) and transcripts/<text.asr>.zarr, or with
``text.source: descriptions`` descriptions/<text.vlm>.zarr (stage describe).
Writes: <workdir>/<dataset>/features/<encoder>.zarr. Exit code 1 when a video failed.
"""

from afwpipe import text
from afwpipe.config import dataset_and_workspace
from afwpipe.entry import stage_main
from afwpipe.errors import ConfigError
from afwpipe.store import safe_name


def run(params: dict, encoder: str, store: str | None = None):
    if store is not None and store != safe_name(encoder):
        raise ConfigError(f"params text.encoders: key {store!r} of {encoder!r} must be its store name "
                          f"{safe_name(encoder)!r} (the DVC stage's output is features/<key>.zarr)")
    _, ws = dataset_and_workspace(params)
    return text.main(ws, text.TextConfig.from_params(params.get("text"), encoder=encoder))


if __name__ == "__main__":
    stage_main(run)
