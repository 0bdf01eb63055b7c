"""Typed records (afwpipe.records): index.json and model.pt round-trip, and bad files fail naming file and field."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from afwpipe.errors import RecordError
from afwpipe.index import build_index
from afwpipe.inference import save_checkpoint
from afwpipe.manifest import DatasetSpec
from afwpipe.records import Checkpoint, IndexFile, IndexRecord, load_index
from afwpipe.store import Workspace

from synth import make_affwild2_tree

#: one record as build_index writes it (the sample's first name), key order included
RECORD = {
    "name": "A_left", "video": "A", "path": "data/x/videos/A.mp4", "side": "left", "side_from": "name",
    "splits": {"au": "train", "expr": None, "va": "val"}, "split": "val", "fold": 1, "n_frames": 472,
    "fps": 23.976023976023978, "width": 640, "height": 360, "rotation": 0, "duration": 19.68633333333333,
    "vfr": False, "has_audio": True, "audio_rate": 48000, "audio_channels": 2, "declared_frames": 472,
    "declared_duration": 19.685, "warning": None, "start_time": 0.0, "audio_start": 0.0, "audio_offset": 0.0,
    "annotation_frames": {"au": 472, "va": 470}, "labelled": {"au": 472, "expr": 0, "va": 470},
    "files": {"au": "a/A_left.txt", "va": "v/A_left.txt"}, "excluded_frames": [[2, 4]],
}
INDEX = {
    "version": 1, "dataset": "x", "root": "data/x", "folds": {"k": 2, "seed": 0}, "scenes": {"s": ["A"]},
    "exclude": {"frames": [["A", 2, 4]], "score_below": 0.5},
    "cropped_aligned": None, "video_dirs": ["data/x/videos"], "editions": {"found": ["."], "used": "."},
    "videos": [RECORD], "failures": [{"video": "B", "path": "B.mp4", "error": "cannot open"}],
    "orphan_annotations": [], "warnings": [],
}


def test_an_index_round_trips_byte_for_byte_with_the_reader_fields_in_place():
    index = IndexFile.from_json(copy.deepcopy(INDEX), "index.json")
    assert json.dumps(index.to_json()) == json.dumps(INDEX)  # same keys, same order, same values
    rec = index.records[0]
    assert (rec.name, rec.fps, rec.labelled["va"], rec.excluded_frames) == ("A_left", 23.976023976023978, 470, [[2, 4]])
    assert index.reader_fields == {"cropped_aligned": None, "video_dirs": ["data/x/videos"],
                                   "editions": {"found": ["."], "used": "."}}
    assert (index.exclude_frames, index.score_below) == ([["A", 2, 4]], 0.5)
    assert IndexRecord.from_json(rec.to_json(), "x") == rec


def test_unknown_record_keys_are_kept_and_written_back_after_the_fields():
    rec = IndexRecord.from_json({**RECORD, "gaze": {"yaw": 3}}, "index.json")
    assert rec.extra == {"gaze": {"yaw": 3}}
    assert list(rec.to_json())[-1] == "gaze" and rec.to_json()["gaze"] == {"yaw": 3}


def test_an_index_without_a_version_is_read_as_version_1():
    old = {k: v for k, v in copy.deepcopy(INDEX).items() if k != "version"}
    assert IndexFile.from_json(old, "index.json") == IndexFile.from_json(copy.deepcopy(INDEX), "index.json")


@pytest.mark.parametrize("change, match", [
    (lambda d: d["videos"][0].pop("n_frames"), r"work/index.json: videos\[0\]: record 'A_left': missing field 'n_frames'"),
    (lambda d: d["videos"][0].update(fps="fast"),
     r"work/index.json: videos\[0\]: record 'A_left': field 'fps': expected float, got str 'fast'"),
    (lambda d: d["videos"][0].update(fold=True), r"record 'A_left': field 'fold': expected int, got bool"),
    (lambda d: d["videos"][0].update(side=3), r"record 'A_left': field 'side': expected str or null, got int"),
    (lambda d: d.pop("dataset"), r"work/index.json: missing field 'dataset'"),
    (lambda d: d.pop("videos"), r"work/index.json: missing field 'videos'"),
    (lambda d: d.update(version=2), r"work/index.json: IndexFile version 2 is not supported \(this afwpipe reads "
                                    r"version 1\); rerun `afwpipe index`"),
])
def test_a_missing_field_a_wrong_type_or_an_unknown_version_names_the_file_and_field(tmp_path, change, match):
    d = copy.deepcopy(INDEX)
    change(d)
    path = tmp_path / "work" / "index.json"
    path.parent.mkdir()
    path.write_text(json.dumps(d))
    with pytest.raises(RecordError, match=match):
        load_index(path)


def test_a_missing_or_broken_index_says_to_run_index(tmp_path):
    with pytest.raises(FileNotFoundError, match="no index; run `afwpipe index`"):
        load_index(tmp_path / "index.json")
    (tmp_path / "index.json").write_text("{")
    with pytest.raises(RecordError, match=r"index.json: not JSON"):
        load_index(tmp_path / "index.json")


def test_build_index_writes_a_versioned_index_that_parses_and_matches_what_it_returned(tmp_path):
    root = make_affwild2_tree(tmp_path / "aw", "abaw3", n_frames=12)
    spec = DatasetSpec(name="aw", root=root, video_dirs=(root / "batch1", root / "batch2", root / "new_vids"),
                       annotations=root / "annotations", folds_k=2, folds_seed=0)
    ws = Workspace(tmp_path / "work")
    built = build_index(spec, ws, progress=False)
    raw = json.loads(ws.index.read_text())
    assert raw["version"] == 1 and list(raw)[:6] == ["version", "dataset", "root", "folds", "scenes", "exclude"]
    assert list(raw)[-4:] == ["videos", "failures", "orphan_annotations", "warnings"]
    assert "test_lists" in raw and "editions" in raw  # the affwild2 reader's fields, between exclude and videos
    loaded = load_index(ws.index)
    assert loaded == built and len(loaded.records) == len(raw["videos"]) > 0
    for rec, d in zip(loaded.records, raw["videos"]):
        assert (rec.name, rec.n_frames, rec.fps, rec.split, rec.fold) == \
            (d["name"], d["n_frames"], d["fps"], d["split"], d["fold"])
        assert rec.extra == {}  # build_index writes no field the record does not know


def _checkpoint(path):
    rng = np.random.default_rng(0)
    state = {"w": torch.from_numpy(rng.normal(size=(4, 3)).astype(np.float32)), "b": torch.zeros(4)}
    save_checkpoint(path, state, config={"head": "tcn", "k": 32}, in_dims={"vis": 3}, tasks=["au", "va"],
                    encoders=[{"name": "vis", "dim": 3}], stats={"vis": (np.arange(3.0), np.ones(3))},
                    au_pos_weight=np.full(12, 2.0, np.float32), expr_class_weight=None, best_epoch=3, best_score=0.5,
                    train_videos=["a"], val_videos=["b"], selected_on=["b"], epoch_selection="val")
    return state


def test_a_checkpoint_loads_with_plain_torch_weights_only_and_gives_equal_tensors(tmp_path):
    state = _checkpoint(tmp_path / "model.pt")
    raw = torch.load(tmp_path / "model.pt", weights_only=True)  # no afwpipe class needed to read it
    assert raw["version"] == Checkpoint.VERSION and raw["best_epoch"] == 3
    for k, t in state.items():
        assert torch.equal(raw["state_dict"][k], t)
    ckpt = Checkpoint.load(tmp_path / "model.pt")
    assert torch.equal(ckpt.state_dict["w"], state["w"]) and ckpt.tasks == ["au", "va"]
    np.testing.assert_array_equal(ckpt.stats["vis"]["mean"].numpy(), np.arange(3.0))
    np.testing.assert_array_equal(ckpt.au_pos_weight.numpy(), np.full(12, 2.0, np.float32))
    assert ckpt.expr_class_weight is None and ckpt.selected_on == ["b"] and ckpt.extra == {}
    again = Checkpoint.from_json(ckpt.to_json(), "again")
    assert torch.equal(again.state_dict["w"], ckpt.state_dict["w"]) and again.best_score == 0.5


def test_an_old_checkpoint_without_version_loads_and_a_bad_one_names_file_and_field(tmp_path):
    _checkpoint(tmp_path / "model.pt")
    raw = torch.load(tmp_path / "model.pt", weights_only=True)
    del raw["version"]
    torch.save(raw, tmp_path / "old.pt")
    assert Checkpoint.load(tmp_path / "old.pt").best_epoch == 3
    torch.save({k: v for k, v in raw.items() if k != "in_dims"}, tmp_path / "bad.pt")
    with pytest.raises(RecordError, match=r"bad.pt: missing field 'in_dims'"):
        Checkpoint.load(tmp_path / "bad.pt")
    torch.save({**raw, "best_epoch": "3"}, tmp_path / "typed.pt")
    with pytest.raises(RecordError, match=r"typed.pt: field 'best_epoch': expected int, got str"):
        Checkpoint.load(tmp_path / "typed.pt")
    torch.save({**raw, "au_pos_weight": [1.0]}, tmp_path / "list.pt")
    with pytest.raises(RecordError, match=r"list.pt: field 'au_pos_weight': expected tensor or null, got list"):
        Checkpoint.load(tmp_path / "list.pt")
    torch.save({**raw, "version": 9}, tmp_path / "new.pt")
    with pytest.raises(RecordError, match=r"new.pt: Checkpoint version 9 is not supported .*retrain the head"):
        Checkpoint.load(tmp_path / "new.pt")
