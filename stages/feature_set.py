"""Stage ``feature_set``: digest the feature stores that training reads into one small file.

Reads: params.yaml (dataset, workdir, train.features, train.tasks, train.speech_gate) and
<workdir>/<dataset>/features/<encoder>.zarr of those encoders (with per-task features, the union of the
trained tasks' lists).
Writes: <workdir>/<dataset>/feature_set.json, rewritten only when a digest changes. The train and predict
stages depend on this file, not on features/, so adding or re-extracting an encoder they do not read
reruns nothing after this stage.
"""

from afwpipe import feature_set
from afwpipe.config import dataset_and_workspace
from afwpipe.entry import stage_main


def run(params: dict):
    _, ws = dataset_and_workspace(params)
    train = params.get("train") or {}
    cfg = feature_set.FeatureSetConfig.from_params(None, features=train.get("features"), tasks=train.get("tasks"),
                                                    speech_gate=train.get("speech_gate"))
    return feature_set.main(ws, cfg)


if __name__ == "__main__":
    stage_main(run)
