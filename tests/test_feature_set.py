"""The feature set file changes exactly when a store that training reads changes, and the train and predict
stages depend on it instead of on the whole features/ folder (so adding an unrelated encoder reruns nothing
after it)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import yaml

from afwpipe import feature_set, store
from afwpipe.errors import TrainError
from conftest import REPO


def _write_store(ws: store.Workspace, encoder: str, videos: dict[str, int], dim: int = 4, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name, n in videos.items():
        g = store.begin_video(ws.features(encoder), name, {"encoder": encoder})
        store.write_time_array(g, "emb", rng.normal(size=(n, dim)).astype(np.float16))
        store.write_time_array(g, "present", np.ones(n, bool))
        store.mark_complete(g, n_frames=n)


@pytest.fixture
def ws(tmp_path):
    ws = store.Workspace(tmp_path / "ws")
    _write_store(ws, "a", {"v1": 30, "v2": 12})
    _write_store(ws, "b", {"v1": 30, "v2": 12}, dim=3, seed=1)
    return ws


def test_an_unrelated_store_leaves_the_file_untouched(ws):
    cfg = feature_set.FeatureSetConfig(features=["a", "b"])
    assert feature_set.main(ws, cfg) == 0
    before = ws.feature_set.read_bytes()
    mtime = ws.feature_set.stat().st_mtime_ns
    _write_store(ws, "vad", {"v1": 30, "v2": 12}, dim=1, seed=2)  # a store training does not read
    feature_set.main(ws, cfg)
    assert ws.feature_set.read_bytes() == before
    assert ws.feature_set.stat().st_mtime_ns == mtime


def test_one_changed_byte_of_a_used_store_changes_the_digest(ws):
    cfg = feature_set.FeatureSetConfig(features=["a", "b"])
    feature_set.main(ws, cfg)
    before = yaml.safe_load(ws.feature_set.read_text())["encoders"]
    # flip one byte of one file of store b, video v2, independently of afwpipe's writer
    files = sorted(p for p in (ws.features("b") / "v2").rglob("*") if p.is_file() and p.name != "zarr.json")
    data = bytearray(files[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    files[0].write_bytes(bytes(data))
    feature_set.main(ws, cfg)
    after = yaml.safe_load(ws.feature_set.read_text())["encoders"]
    assert after["a"] == before["a"]
    assert after["b"]["videos"]["v1"] == before["b"]["videos"]["v1"]
    assert after["b"]["videos"]["v2"] != before["b"]["videos"]["v2"]
    assert after["b"]["digest"] != before["b"]["digest"]


def test_the_digest_covers_every_file_with_its_path(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_bytes(b"abc")
    one = feature_set.digest_files(tmp_path)
    (tmp_path / "x" / "f").rename(tmp_path / "x" / "g")  # same bytes, another name
    assert feature_set.digest_files(tmp_path) != one
    empty = tmp_path / "empty"
    empty.mkdir()
    assert feature_set.digest_files(empty) == hashlib.blake2b(digest_size=32).hexdigest()


def test_only_complete_videos_are_listed_and_a_speech_gate_adds_vad(ws):
    g = store.begin_video(ws.features("a"), "half", {"encoder": "a"})  # a killed run: never marked complete
    store.write_time_array(g, "emb", np.zeros((5, 4), np.float16))
    _write_store(ws, "vad", {"v1": 30}, dim=1)
    data = feature_set.fingerprint(ws, feature_set.FeatureSetConfig(features="a", speech_gate={"encoders": ["a"]}))
    assert list(data["encoders"]) == ["a", "vad"]
    assert sorted(data["encoders"]["a"]["videos"]) == ["v1", "v2"]


def test_a_missing_store_names_the_extract_command(ws):
    with pytest.raises(TrainError, match=r"afwpipe extract --encoder mae"):
        feature_set.fingerprint(ws, feature_set.FeatureSetConfig(features=["a", "mae"]))


def test_train_and_predict_depend_on_the_feature_set_not_on_the_features_folder():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in ("train", "predict"):
        deps = stages[name]["deps"]
        assert "work/${dataset.name}/feature_set.json" in deps, name
        assert not any(d.rstrip("/").endswith("/features") for d in deps), name
    assert "work/${dataset.name}/features" in stages["feature_set"]["deps"]
    assert stages["feature_set"]["outs"] == ["work/${dataset.name}/feature_set.json"]
    # train.tasks: a per-task train.features is digested over the trained tasks (issue 23)
    assert set(stages["feature_set"]["params"]) == {"train.features", "train.tasks", "train.speech_gate"}
