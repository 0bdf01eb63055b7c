"""Issue 23 §1, a feature set (and clip length) per task: ``train.features`` and ``train.k`` take one value for every
task or a per-task mapping; a head trained for one task reads only its own encoders (feature_set digests the union,
the checkpoint records the head's list and K, predict follows the checkpoint), and bad mappings are clear errors."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import yaml

from afwpipe import feature_set, store
from afwpipe.clips import ClipDataset
from afwpipe.task_settings import per_task
from afwpipe.errors import ConfigError, TrainError
from afwpipe.inference import checkpoint_stats, load_model, predict_frames
from afwpipe.predict import PredictConfig, run_predict
from afwpipe.readers import ZarrFeatures, load_labels, read_prediction
from afwpipe.train import TrainConfig, train
from conftest import REPO
from test_clips import make_workspace

TCN = dict(channels=16, mlp_dim=32, dilations=(1, 2), dropout=0.1)
TASKS = ("au", "expr", "va", "mtl")
#: AU reads the visual store alone; the other tasks read both (the sample's shape, on the synthetic stores)
PER_TASK = {"au": ["vis"], "expr": ["vis", "aud"], "va": ["vis", "aud"], "mtl": ["vis", "aud"]}


def _cfg(**kw) -> TrainConfig:
    base = dict(task="au", head="tcn", features=PER_TASK, fold="official", k=32, epochs=2, patience=0, lr=3e-3,
                batch_size=8, head_kwargs=TCN, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def make_workspace_with_test(root, n_videos: int, n_frames: int) -> store.Workspace:
    """:func:`test_clips.make_workspace` with ``v0 … v<n-3>`` train, ``v<n-2>`` val and the last video a test
    name (split ``test`` in every track, no label counted, features kept)."""
    ws = make_workspace(root, n_videos=n_videos, n_frames=n_frames, n_val=2)
    index = ws.read_index()
    last = dataclasses.replace(index.records[-1], split="test", splits=dict.fromkeys(("au", "expr", "va"), "test"),
                               fold=-1, labelled={"au": 0, "expr": 0, "va": 0})
    dataclasses.replace(index, records=[*index.records[:-1], last]).save(ws.index)
    return ws


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    # v0..v4 train, v5 val, v6 test (no labels, features only): every head predicts v5 and v6
    return make_workspace_with_test(tmp_path_factory.mktemp("pertask"), 7, 96)


# -- parsing -------------------------------------------------------------------------------------------------
def test_one_value_serves_every_task_and_a_mapping_is_read_per_task():
    assert per_task(["a", "b"], ["au", "va"], "train.features", TASKS) == {"au": ["a", "b"], "va": ["a", "b"]}
    assert per_task(100, ["au"], "train.k", TASKS) == {"au": 100}
    assert per_task({"au": 50, "va": 200, "expr": 1}, ["va", "au"], "train.k", TASKS) == {"va": 200, "au": 50}
    with pytest.raises(ConfigError, match=r"train\.features: no entry for task va \(the mapping has au, expr\)"):
        per_task({"au": ["a"], "expr": ["a"]}, ["au", "va"], "train.features", TASKS)
    with pytest.raises(ConfigError, match=r"train\.k: unknown task\(s\) vaa in the per-task mapping"):
        per_task({"au": 1, "vaa": 2}, ["au"], "train.k", TASKS)


def test_train_config_resolves_features_and_k_for_its_task():
    au = _cfg(task="au", k={"au": 16, "expr": 32, "va": 48, "mtl": 32})
    va = _cfg(task="va", k={"au": 16, "expr": 32, "va": 48, "mtl": 32})
    assert (au.features, au.k, au.stride, au.eval_stride) == (["vis"], 16, 8, 8)
    assert (va.features, va.k, va.stride) == (["vis", "aud"], 48, 24)
    assert _cfg(task="expr", features="vis,aud", k=20).features == ["vis", "aud"]  # one list (CLI string): every task
    assert _cfg(task="mtl", features={**PER_TASK, "mtl": "aud"}).features == ["aud"]


@pytest.mark.parametrize("kw, match", [
    (dict(task="va", features={"au": ["vis"], "expr": ["vis"]}), r"train\.features: no entry for task va"),
    (dict(task="mtl", k={"au": 16, "expr": 16, "va": 16}), r"train\.k: no entry for task mtl"),
    (dict(features={**PER_TASK, "vad": ["vis"]}), r"train\.features: unknown task\(s\) vad"),
    (dict(features={**PER_TASK, "au": 3}), r"train\.features \(au\): expected a list of names"),
    (dict(features={**PER_TASK, "au": []}), r"train: no features given"),
    (dict(k={"au": "long", "expr": 1, "va": 1, "mtl": 1}), r"numeric setting is not a number"),
    (dict(task="tcn"), r"no entry for task tcn"),  # not AU/EXPR/VA/MTL: a declared task needs its own entry
])
def test_bad_per_task_settings_name_the_key_and_the_task(kw, match):
    with pytest.raises(TrainError, match=match):
        _cfg(**kw)


def test_a_speech_gate_applies_to_the_tasks_that_read_its_encoders():
    gate = {"encoders": ["aud"], "threshold": 0.4}
    assert _cfg(task="au", speech_gate=gate).speech_gate is None  # AU reads no gated encoder
    assert _cfg(task="va", speech_gate=gate).speech_gate == {"encoders": ["aud"], "threshold": 0.4}
    with pytest.raises(TrainError, match=r"speech_gate: whisper not gateable"):
        _cfg(task="va", speech_gate={"encoders": ["whisper"]})  # in no task's list
    with pytest.raises(TrainError, match=r"speech_gate: aud not gateable"):
        _cfg(task="va", features=["vis"], speech_gate=gate)  # one list: the gate must be in it, as before


def test_the_sample_params_train_au_on_one_encoder_and_va_on_two():
    params = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    got = {t: TrainConfig.from_params(params, task=t).features for t in params["tasks"]}
    assert got["au"] == ["mini_xception"] and got["va"] == ["mini_xception", "logmel"]
    cfg = feature_set.FeatureSetConfig.from_params(None, features=params["features"], tasks=params["tasks"])
    assert cfg.encoders == ["mini_xception", "logmel"]
    assert "all" in params["folds"]


# -- feature_set -------------------------------------------------------------------------------------------
def test_feature_set_digests_the_union_of_the_trained_tasks_encoders(ws, tmp_path):
    from stages import feature_set as stage

    shutil.copytree(ws.root, tmp_path / "sample", ignore=shutil.ignore_patterns("models"))
    params = {"dataset": {"name": "sample", "root": None}, "workdir": str(tmp_path),
              "train": {"tasks": ["au"], "features": PER_TASK}}
    stage.run(params)
    ws2 = store.Workspace(tmp_path / "sample")
    assert list(json.loads(ws2.feature_set.read_text())["encoders"]) == ["vis"]  # AU alone reads vis alone
    params["train"]["tasks"] = ["au", "va"]
    stage.run(params)
    data = json.loads(ws2.feature_set.read_text())["encoders"]
    assert sorted(data) == ["aud", "vis"]
    assert data["aud"]["digest"] == feature_set.digest_files(ws2.features("aud"))
    params["train"]["tasks"] = ["au", "expr"]
    params["train"]["features"] = {"au": ["vis"], "va": ["vis", "aud"]}
    with pytest.raises(TrainError, match=r"train\.features: no entry for task expr \(the mapping has au, va\)"):
        stage.run(params)


# -- training and prediction follow each head's own features ---------------------------------------------------
def test_an_au_head_reads_only_its_encoders_and_predict_follows_the_checkpoint(ws, tmp_path):
    ws2 = store.Workspace(tmp_path / "ws")
    shutil.copytree(ws.root, ws2.root, ignore=shutil.ignore_patterns("models", "aud.zarr"))  # no audio store
    r = train(ws2, _cfg(task="au", k={"au": 16, "expr": 32, "va": 32, "mtl": 32}), progress=False)
    _, ckpt = load_model(r.model_dir / "model.pt")
    assert ckpt.config["features"] == ["vis"] and ckpt.config["k"] == 16
    assert [e["name"] for e in ckpt.encoders] == ["vis"] and list(ckpt.in_dims) == ["vis"]
    with pytest.raises(TrainError, match=r"'aud'"):  # VA reads the audio store too, which is missing here
        train(ws2, _cfg(task="va"), progress=False)
    # predict takes the encoders and K of the checkpoint (params are not even passed to it)
    run_predict(ws2, PredictConfig(head="tcn", device="cpu"), progress=False)
    head, ckpt = load_model(r.model_dir / "model.pt")
    names = ["v5", "v6"]
    labels = load_labels(ws2, ["v5"])
    labels["v6"] = {"au": np.full((96, 12), -1, np.int8), "expr": np.full(96, -1, np.int8),
                    "va": np.full((96, 2), -5.0, np.float32)}
    ds = ClipDataset(ZarrFeatures(ws2, ["vis"]), labels, names, 16, 8, training=False, stats=checkpoint_stats(ckpt))
    want = predict_frames(head, ds, "cpu", 8)
    for name in names:
        np.testing.assert_allclose(read_prediction(ws2, "au-tcn-official", name)["au"], want[name]["au"], atol=1e-6)


def test_cli_features_set_the_list_of_the_chosen_task(ws, tmp_path):
    from click.testing import CliRunner

    from afwpipe.cli import main

    shutil.copytree(ws.root, tmp_path / "sample", ignore=shutil.ignore_patterns("models"))
    params = {"workdir": str(tmp_path), "train": {"head": "tcn", "features": PER_TASK, "k": 32, "patience": 0,
                                                  "epochs": 1, "batch_size": 8, "device": "cpu", "head_kwargs": TCN}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    base = ["--params", str(tmp_path / "p.yaml"), "--manifest", str(REPO / "data_manifest.yaml"), "train"]
    for extra, want in (([], ["vis", "aud"]), (["--features", "aud"], ["aud"])):
        res = CliRunner().invoke(main, base + ["--task", "va"] + extra)
        assert res.exit_code == 0, res.output
        _, ckpt = load_model(tmp_path / "sample" / "models" / "va-tcn-official" / "model.pt")
        assert ckpt.config["features"] == want


@pytest.mark.sample
def test_on_the_sample_params_yaml_trains_au_on_mini_xception_alone_and_va_on_both(sample_workspace, tmp_path):
    """The sample's params.yaml as `dvc repro` reads it (stage train@<task>-all), two epochs: the AU head reads
    mini_xception only, the VA head mini_xception and logmel (the checkpoint's encoders and input dims)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    got = {}
    for task in ("au", "va"):
        cfg = TrainConfig.from_params(params, task=task, fold="all", epochs=2, device="cpu")
        r = train(sample_workspace, cfg, progress=False, out_dir=tmp_path / task)
        _, ckpt = load_model(r.model_dir / "model.pt")
        got[task] = [e["name"] for e in ckpt.encoders]
        assert list(ckpt.in_dims) == got[task] and ckpt.val_videos == [] and r.best is None
    assert got == {"au": ["mini_xception"], "va": ["mini_xception", "logmel"]}
