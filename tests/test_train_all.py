"""params ``train.tasks: [auto]`` (afwpipe/train_all.py): one stage per fold trains every task of the dataset
into a group folder; the heads are those a named-task run trains, and prediction, the run records and the
curves find them; DVC's matrix expands to ``train@auto-<fold>``."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest
import torch

from afwpipe import layout, store
from afwpipe.errors import TrainError
from afwpipe.feature_set import FeatureSetConfig
from afwpipe.predict import find_models
from afwpipe.records import IndexFile
from afwpipe.train import train
from afwpipe.train_all import auto_tasks
from conftest import REPO
from test_clips import make_workspace
from test_train import TCN, _cfg

TRAIN = {"head": "tcn", "features": ["vis", "aud"], "k": 32, "epochs": 3, "patience": 0, "lr": "3e-3",
         "batch_size": 8, "device": "cpu", "seed": 0, "head_kwargs": TCN}


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory):
    from stages import train as stage

    root = tmp_path_factory.mktemp("auto")
    make_workspace(root / "sample", n_videos=8, n_frames=96, n_val=3)
    ws = store.Workspace(root / "sample")
    stale = layout.group_dir(ws, "tcn", 1) / "mtl-tcn-1"  # a folder of an earlier run: the group is the run's
    stale.mkdir(parents=True)
    params = {"dataset": {"name": "sample", "root": None}, "workdir": str(root), "train": dict(TRAIN)}
    return ws, stage.run(params, task="auto", fold="1")


def test_auto_trains_every_task_into_the_group_folder(auto_run):
    ws, results = auto_run
    group = ws.models / "auto-tcn-1"
    assert [r.config.task for r in results] == ["au", "expr", "va"]
    assert sorted(p.name for p in group.iterdir()) == ["au-tcn-1", "expr-tcn-1", "va-tcn-1"]  # stale mtl removed
    for r in results:
        assert r.model_dir == group / r.config.run_name
        assert (r.model_dir / "model.pt").is_file()
        assert json.loads((r.model_dir / "metrics.json").read_text())["task"] == r.config.task


def test_a_grouped_head_is_the_head_a_named_task_run_trains(auto_run, tmp_path):
    ws, results = auto_run
    alone = train(ws, _cfg(task="expr", fold=1, epochs=3, k=32, seed=0), progress=False,
                  out_dir=tmp_path / "expr-tcn-1", curves=tmp_path / "curves")
    grouped = torch.load(results[1].model_dir / "model.pt", weights_only=True)
    single = torch.load(alone.model_dir / "model.pt", weights_only=True)
    assert grouped["tasks"] == single["tasks"] and grouped["best_epoch"] == single["best_epoch"]
    for k, v in single["state_dict"].items():
        assert torch.equal(grouped["state_dict"][k], v), k


def test_prediction_and_records_find_the_grouped_heads(auto_run):
    ws, _ = auto_run
    found = find_models(ws, head="tcn", tasks=["auto"], folds=[1])
    assert [r.name for r in found] == ["au-tcn-1", "expr-tcn-1", "va-tcn-1"]
    assert [r.name for r in find_models(ws, tasks=["va"])] == ["va-tcn-1"]
    assert layout.model_dir(ws, "va-tcn-1") == ws.models / "auto-tcn-1" / "va-tcn-1"
    assert layout.run_record(ws, "va-tcn-1").is_file()
    assert layout.model_dir(ws, "va-tcn-0") == ws.models / "va-tcn-0"  # not trained: the ordinary place


def test_the_curves_folder_holds_every_task_under_its_prefix(auto_run):
    ws, results = auto_run
    curves = ws.root / "curves" / "auto-1"
    latest = json.loads((curves / "metrics.json").read_text())
    assert set(latest) >= {"au", "expr", "va"}
    for r in results:
        rows = list(csv.DictReader((curves / "plots" / "metrics" / r.config.task / "loss.tsv").open(), delimiter="\t"))
        record = json.loads((r.model_dir / "metrics.json").read_text())
        assert [int(x["step"]) for x in rows] == [e["epoch"] for e in record["epochs"]]
        assert [float(x["loss"]) for x in rows] == pytest.approx([e["loss"] for e in record["epochs"]])


def test_auto_tasks_are_a_declared_dataset_s_tasks_in_index_order():
    tasks = {"mimicry": {"level": "video", "type": "regression", "targets": ["a", "b"]},
             "emotion": {"level": "video", "type": "class", "classes": ["x", "y"]}}
    assert auto_tasks(IndexFile(dataset="d", records=[], reader_fields={"tasks": tasks})) == ["mimicry", "emotion"]
    assert auto_tasks(IndexFile(dataset="sample", records=[])) == ["au", "expr", "va"]


def test_scene_heads_need_named_tasks(tmp_path):
    from stages import train_scene

    params = {"dataset": {"name": "sample", "root": None}, "workdir": str(tmp_path), "train": dict(TRAIN)}
    with pytest.raises(TrainError, match=r"auto.*named tasks"):
        train_scene.run(params, task="auto", fold="0", scene="studio")


def test_feature_set_of_auto_reads_every_per_task_entry():
    per_task = {"au": ["mae"], "expr": ["mae", "convnext"], "va": ["whisper"]}
    assert FeatureSetConfig(features=per_task, tasks=["auto"]).encoders == ["mae", "convnext", "whisper"]
    assert FeatureSetConfig(features=["mae", "vad"], tasks=["auto"]).encoders == ["mae", "vad"]


def test_dvc_expands_auto_to_one_train_stage_per_fold(tmp_path):
    """DVC itself parses the project's dvc.yaml with ``train.tasks: [auto]``: one train stage per fold."""
    import yaml

    for f in ("dvc.yaml", "data_manifest.yaml"):
        shutil.copy(REPO / f, tmp_path / f)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["tasks"] = ["auto"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    out = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout.split()
    folds = params["train"]["folds"]
    assert sorted(s for s in out if s.startswith("train@")) == sorted(f"train@auto-{f}" for f in folds)
