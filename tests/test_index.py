import json
import logging

import numpy as np
import pytest
import yaml
import zarr
from click.testing import CliRunner

from afwpipe.cli import main
from afwpipe.errors import DatasetError
from afwpipe.index import assign_folds, build_index
from afwpipe.manifest import DatasetSpec, dataset_spec
from afwpipe.store import Workspace

from conftest import REPO
from synth import make_affwild2_tree, write_annotation


def _spec(root, k=2):
    return DatasetSpec(name="aw", root=root, video_dirs=(root / "batch1", root / "batch2", root / "new_vids"),
                       annotations=root / "annotations", folds_k=k, folds_seed=0)


def test_synthetic_affwild2_index(tmp_path, caplog):
    root = make_affwild2_tree(tmp_path / "aw", "abaw3", n_frames=12)
    # an annotation longer than its video is truncated with a warning
    write_annotation(root / "annotations/Third ABAW Annotations/VA_Estimation_Challenge/Train_Set/1-30-64x48.txt",
                     "va", 15)
    ws = Workspace(tmp_path / "work")
    with caplog.at_level(logging.WARNING):
        index = build_index(_spec(root), ws, progress=False)
    recs = {r["name"]: r for r in index["videos"]}
    assert set(recs) == {"1-30-64x48", "5-60-64x48-1", "10-60-64x48_left", "10-60-64x48_right", "166"}
    assert recs["166"]["split"] == "test" and recs["166"]["labelled"] == {"au": 0, "expr": 0, "va": 0}
    assert recs["5-60-64x48-1"]["split"] == "val" and not recs["5-60-64x48-1"]["has_audio"]
    assert recs["10-60-64x48_left"]["side"] == "left"
    assert recs["10-60-64x48_left"]["fold"] == recs["10-60-64x48_right"]["fold"]  # same video, same fold
    assert recs["1-30-64x48"]["annotation_frames"]["va"] == 15 and recs["1-30-64x48"]["n_frames"] == 12
    assert "15 annotated frames but the video decodes to 12; truncated" in caplog.text
    assert [o["name"] for o in index["orphan_annotations"]] == ["ghost"]
    assert "ghost" in caplog.text and "no video" in caplog.text
    labels = zarr.open_group(str(ws.labels), mode="r")
    au = labels["1-30-64x48/au"][...]
    assert au.shape == (12, 12) and au.dtype == np.int8 and (au[-2:] == -1).all()
    assert labels["1-30-64x48/va"].shape == (12, 2) and labels["166/expr"][...].tolist() == [-1] * 12
    assert json.loads(ws.index.read_text())["videos"] == index["videos"]


def test_truncated_video_is_reported_and_others_indexed(tmp_path):
    root = make_affwild2_tree(tmp_path / "aw")
    bad = root / "batch1" / "1-30-64x48.mp4"
    bad.write_bytes(bad.read_bytes()[:800])
    index = build_index(_spec(root), Workspace(tmp_path / "work"), progress=False)
    assert [f["video"] for f in index["failures"]] == ["1-30-64x48"]
    assert "1-30-64x48.mp4" in index["failures"][0]["error"]
    assert len(index["videos"]) == 4


def test_malformed_annotation_is_reported_and_others_indexed(tmp_path):
    root = make_affwild2_tree(tmp_path / "aw")
    p = root / "annotations/6th_ABAW_Annotations/EXPR_Recognition_Challenge/Validation_Set/5-60-64x48-1.txt"
    p.write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n1\nx\n")
    index = build_index(_spec(root), Workspace(tmp_path / "work"), progress=False)
    (fail,) = index["failures"]
    assert fail["path"].endswith("5-60-64x48-1.txt") and "non-numeric" in fail["error"]
    rec = {r["name"]: r for r in index["videos"]}["5-60-64x48-1"]
    assert rec["labelled"]["expr"] == 0 and rec["labelled"]["au"] == 10


def test_missing_dataset_root(tmp_path):
    with pytest.raises(DatasetError, match="nowhere: dataset root of 'aw' does not exist"):
        build_index(_spec(tmp_path / "nowhere"), Workspace(tmp_path / "work"), progress=False)


def test_affwild2_root_needs_env_or_param(monkeypatch, tmp_path):
    monkeypatch.delenv("AFFWILD2_ROOT", raising=False)
    with pytest.raises(DatasetError, match="AFFWILD2_ROOT is not set"):
        dataset_spec("affwild2", REPO / "data_manifest.yaml")
    spec = dataset_spec("affwild2", REPO / "data_manifest.yaml", root=tmp_path)
    assert spec.video_dirs[0] == tmp_path / "batch1" and spec.cropped_aligned == tmp_path / "cropped_aligned"


def test_folds_are_seeded_and_balanced():
    vids = [f"v{i}" for i in range(10)]
    a, b = assign_folds(vids, 3, 0), assign_folds(list(reversed(vids)), 3, 0)
    assert a == b and sorted(np.bincount(list(a.values()))) == [3, 3, 4]
    assert assign_folds(vids, 3, 1) != a


@pytest.mark.sample
def test_cli_index_on_the_sample(sample_videos, tmp_path, monkeypatch):
    manifest = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
    sample = manifest["datasets"]["sample"]
    sample["root"] = str(REPO / "data" / "sample")
    sample["videos"] = [str(next(iter(sample_videos.values())).parent)]
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(manifest))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"dataset": {"name": "sample"}, "workdir": str(tmp_path / "w")}))
    res = CliRunner().invoke(main, ["--params", str(tmp_path / "p.yaml"), "--manifest", str(tmp_path / "m.yaml"),
                                    "index"])
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line.split() for line in res.output.splitlines()
            if line.split() and line.split()[0] in {"WolfgangLanger_Pexels", "single_face", "face_noface",
                                                    "noface_face", "no_face"}}
    assert {k: int(v[1]) for k, v in rows.items()} == {
        "WolfgangLanger_Pexels": 472, "single_face": 72, "face_noface": 169, "noface_face": 169, "no_face": 95}
    assert rows["no_face"][4] == "test" and rows["single_face"][4] == "val"
    assert "5 videos indexed" in res.output


def test_cli_unknown_dataset_is_a_clean_error(tmp_path):
    res = CliRunner().invoke(main, ["--params", str(tmp_path / "none.yaml"), "--manifest",
                                    str(REPO / "data_manifest.yaml"), "--dataset", "nope", "index"])
    assert res.exit_code == 2 and "unknown dataset 'nope'; known: affwild2, sample" in res.output
