"""Stage ``describe@<store>``: a vision-language model describes the person's visible behaviour in every segment
of every video.

Run as ``python -m stages.describe vlm=hf:<repo_id> store=<name>`` (DVC's foreach over the mapping params
``describe.vlms``, store name -> VLM; the name must be the VLM's store name, e.g. ``hf_Qwen_Qwen2.5-VL-3B-Instruct``;
an empty mapping, the sample's default, has no describe stage: no VLM weights offline).
Reads: params.yaml (dataset, workdir, describe), index.json, faces.zarr (frame times, face crops; the video files
with ``describe.input: frames``). Writes: <workdir>/<dataset>/descriptions/<store>.zarr. Complete videos with
the same model and options are skipped. Exit code 1 when a video failed (all others are still described).
"""

from afwpipe import describe
from afwpipe.config import dataset_and_workspace
from afwpipe.entry import stage_main
from afwpipe.errors import ConfigError
from afwpipe.store import safe_name


def run(params: dict, vlm: str, store: str | None = None):
    if store is not None and store != safe_name(vlm):
        raise ConfigError(f"params describe.vlms: key {store!r} of {vlm!r} must be its store name "
                          f"{safe_name(vlm)!r} (the DVC stage's output is descriptions/<key>.zarr)")
    _, ws = dataset_and_workspace(params)
    return describe.main(ws, describe.DescribeConfig.from_params(params.get("describe"), vlm=vlm))


if __name__ == "__main__":
    stage_main(run)
