"""Stage ``finetune@<encoder>-<task>[-<fold>]``: fine-tune one visual encoder frame by frame on the face crops.

Run as ``python -m stages.finetune run=<encoder>-<task>[-<fold>]`` (DVC's foreach over params ``finetune.runs``);
the same command under ``torchrun --nproc_per_node=N`` trains on N GPUs (DistributedDataParallel).
Reads: params.yaml (dataset, workdir, finetune, extract.weights / extract.options of the encoder),
<workdir>/<dataset>/index.json, labels.zarr and faces.zarr.
Writes: <workdir>/<dataset>/finetune/<run>/ (model.safetensors, head.safetensors, record.json); a killed run
continues from its checkpoint.pt there, a finished one is skipped.
"""

from afwpipe import finetune
from afwpipe.config import dataset_and_workspace
from afwpipe.entry import stage_main


def run(params: dict, run: str):
    _, ws = dataset_and_workspace(params)
    finetune.main(ws, finetune.FinetuneConfig.from_params(params.get("finetune"), params.get("extract"), run=run))


if __name__ == "__main__":
    stage_main(run)
