import dataclasses
import json
import logging
import os
import shutil

import numpy as np
import pytest
import yaml
import zarr
from click.testing import CliRunner

from afwpipe.cli import main
from afwpipe.errors import DatasetError
from afwpipe.index import assign_folds, build_index, format_table
from afwpipe.manifest import DatasetSpec, dataset_spec
from afwpipe.store import Workspace

from conftest import REPO
from synth import make_affwild2_tree, make_video, write_annotation


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
    recs = index.by_name
    assert set(recs) == {"1-30-64x48", "5-60-64x48-1", "10-60-64x48_left", "10-60-64x48_right", "166"}
    assert recs["166"].split == "test" and recs["166"].labelled == {"au": 0, "expr": 0, "va": 0}
    assert recs["5-60-64x48-1"].split == "val" and not recs["5-60-64x48-1"].has_audio
    assert recs["10-60-64x48_left"].side == "left"
    assert recs["10-60-64x48_left"].fold == recs["10-60-64x48_right"].fold  # same video, same fold
    assert recs["1-30-64x48"].annotation_frames["va"] == 15 and recs["1-30-64x48"].n_frames == 12
    assert "15 annotated frames but the video decodes to 12; truncated" in caplog.text
    assert [o["name"] for o in index.orphan_annotations] == ["ghost"]
    assert "ghost" in caplog.text and "no video" in caplog.text
    labels = zarr.open_group(str(ws.labels), mode="r")
    au = labels["1-30-64x48/au"][...]
    assert au.shape == (12, 12) and au.dtype == np.int8 and (au[-2:] == -1).all()
    assert labels["1-30-64x48/va"].shape == (12, 2) and labels["166/expr"][...].tolist() == [-1] * 12
    assert json.loads(ws.index.read_text())["videos"] == [r.to_json() for r in index.records]


def test_truncated_video_is_reported_and_others_indexed(tmp_path):
    root = make_affwild2_tree(tmp_path / "aw")
    bad = root / "batch1" / "1-30-64x48.mp4"
    bad.write_bytes(bad.read_bytes()[:800])
    index = build_index(_spec(root), Workspace(tmp_path / "work"), progress=False)
    assert [f["video"] for f in index.failures] == ["1-30-64x48"]
    assert "1-30-64x48.mp4" in index.failures[0]["error"]
    assert len(index.records) == 4


def test_malformed_annotation_is_reported_and_others_indexed(tmp_path):
    root = make_affwild2_tree(tmp_path / "aw")
    p = root / "annotations/6th_ABAW_Annotations/EXPR_Recognition_Challenge/Validation_Set/5-60-64x48-1.txt"
    p.write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n1\nx\n")
    index = build_index(_spec(root), Workspace(tmp_path / "work"), progress=False)
    (fail,) = index.failures
    assert fail["path"].endswith("5-60-64x48-1.txt") and "non-numeric" in fail["error"]
    rec = index.by_name["5-60-64x48-1"]
    assert rec.labelled["expr"] == 0 and rec.labelled["au"] == 10


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
    known = ", ".join(sorted(yaml.safe_load((REPO / "data_manifest.yaml").read_text())["datasets"]))
    assert "affwild2" in known and "sample" in known
    assert res.exit_code == 2 and f"unknown dataset 'nope'; known: {known}" in res.output


def _index(root, tmp_path, **kw):
    return build_index(dataclasses.replace(_spec(root), **kw), Workspace(tmp_path / "work"), progress=False)


def test_per_track_test_lists_sides_and_unlisted_videos(tmp_path):
    root = make_affwild2_tree(tmp_path / "aw", "abaw8", test_lists=True)
    index = _index(root, tmp_path)
    recs = index.by_name
    assert set(recs) == {"1-30-64x48", "5-60-64x48-1", "10-60-64x48_left", "10-60-64x48_right", "166",
                         "20-24-64x48", "30-64x48_left", "30-64x48_right", "300"}
    # VA-train and EXPR-test at once: one record
    assert recs["20-24-64x48"].splits == {"au": None, "expr": "test", "va": "train"}
    assert recs["20-24-64x48"].split == "train" and recs["20-24-64x48"].labelled["va"] == 10
    # a two-person test video nobody annotates: one record per side, its side taken from the name
    for side in ("left", "right"):
        r = recs[f"30-64x48_{side}"]
        assert (r.video, r.side, r.split) == ("30-64x48", side, "test")
        assert r.splits == {"au": "test", "expr": "test", "va": "test"}
    assert "30-64x48" not in recs
    assert recs["166"].splits == {"au": "test", "expr": "test", "va": "test"}
    # with test lists, an unannotated video in no list is indexed but is in no split
    assert recs["300"].splits == {"au": None, "expr": None, "va": None} and recs["300"].split is None
    assert recs["1-30-64x48"].splits == {"au": "train", "expr": "train", "va": "train"}
    lost = {o["name"]: o for o in index.orphan_annotations}["lost_test"]
    assert lost["files"][0].endswith("Action_Unit_Detection_Challenge_test_set_release.txt")
    assert {t: p.rsplit("/", 1)[-1] for t, p in index.reader_fields["test_lists"].items()} == {
        "au": "Action_Unit_Detection_Challenge_test_set_release.txt",
        "expr": "Expression_Recognition_Challenge_test_set_release.txt",
        "va": "Valence_Arousal_Estimation_Challenge_test_set_release.txt"}
    rows = {line.split()[0]: line.split() for line in format_table(index).splitlines()[2:] if line.strip()}
    assert rows["20-24-64x48"][6:] == ["-", "test", "train:10"]
    assert rows["300"][4:] == ["-", "-1", "-", "-", "-"]
    assert "NO VIDEO for lost_test" in format_table(index)
    assert json.loads((tmp_path / "work" / "index.json").read_text())["test_lists"] == index.reader_fields["test_lists"]


def test_test_lists_from_the_manifest_and_the_annotations_root(tmp_path):
    root = make_affwild2_tree(tmp_path / "aw", "abaw6", test_lists=True)
    lists = root / "annotations/6th_ABAW_Annotations/names_of_videos_in_each_test_set"
    lists.rename(root / "annotations" / lists.name)  # beside the editions: still found
    recs = _index(root, tmp_path).by_name
    assert recs["20-24-64x48"].splits["expr"] == "test"
    (root / "my_va.txt").write_text("300\n")
    index = _index(root, tmp_path, test_lists={"va": root / "my_va.txt"})
    recs = index.by_name
    assert recs["300"].splits == {"au": None, "expr": None, "va": "test"}
    assert recs["166"].splits == {"au": "test", "expr": "test", "va": None}
    assert index.reader_fields["test_lists"]["va"].endswith("my_va.txt")


def _two_editions(tmp_path):
    root = make_affwild2_tree(tmp_path / "aw", "abaw6")
    make_affwild2_tree(root, "abaw3", videos=False)
    # only the ABAW3 tree validates on 1-30-64x48: tells which edition was read
    third = root / "annotations/Third ABAW Annotations"
    for p in third.glob("*/Train_Set/1-30-64x48.txt"):
        p.rename(p.parent.parent / "Validation_Set" / p.name)
    return root


@pytest.mark.parametrize("edition, used, split", [
    (None, "6th_ABAW_Annotations", "train"), (3, "Third ABAW Annotations", "val"),
    ("Third ABAW Annotations", "Third ABAW Annotations", "val"), ("6", "6th_ABAW_Annotations", "train")])
def test_editions_side_by_side_choose_by_setting_or_newest(tmp_path, edition, used, split):
    index = _index(_two_editions(tmp_path), tmp_path, edition=edition)
    assert index.reader_fields["editions"] == {"found": ["6th_ABAW_Annotations", "Third ABAW Annotations"], "used": used}
    assert index.by_name["1-30-64x48"].split == split
    assert f"annotation editions: 6th_ABAW_Annotations, Third ABAW Annotations; used {used}" in format_table(index)


def test_ambiguous_editions_ask_for_dataset_edition(tmp_path):
    root = _two_editions(tmp_path)
    shutil.copytree(root / "annotations/6th_ABAW_Annotations", root / "annotations/my_copy")
    with pytest.raises(DatasetError, match="no edition number in 'my_copy'.*set dataset.edition"):
        _index(root, tmp_path)
    with pytest.raises(DatasetError, match="dataset.edition 5 matches no annotation edition"):
        _index(root, tmp_path, edition=5)
    assert _index(root, tmp_path, edition="my_copy").reader_fields["editions"]["used"] == "my_copy"


def test_edition_from_params_reaches_the_index(tmp_path):
    root = _two_editions(tmp_path)
    manifest = {"datasets": {"aw": {"root": str(root), "videos": ["batch1", "batch2", "new_vids"]}}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(manifest))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"dataset": {"name": "aw", "edition": 3},
                                                     "workdir": str(tmp_path / "w")}))
    res = CliRunner().invoke(main, ["--params", str(tmp_path / "p.yaml"), "--manifest", str(tmp_path / "m.yaml"),
                                    "index"])
    assert res.exit_code == 0, res.output
    assert "annotation editions: 6th_ABAW_Annotations, Third ABAW Annotations; used Third ABAW Annotations" \
        in res.output
    assert json.loads((tmp_path / "w/aw/index.json").read_text())["editions"]["used"] == "Third ABAW Annotations"


def test_truncated_tail_is_indexed_with_a_warning(tmp_path):
    root = make_affwild2_tree(tmp_path / "aw")
    cut = make_video(root / "batch1" / "166.mp4", 60, faststart=True)
    cut.write_bytes(cut.read_bytes()[: int(cut.stat().st_size * 0.7)])
    index = _index(root, tmp_path)
    rec = index.by_name["166"]
    assert 2 <= rec.n_frames < 58 and rec.declared_frames == 60 and "truncated" in rec.warning
    (w,) = index.warnings
    assert w["video"] == "166" and w["path"].endswith("166.mp4") and "container declares 60 (2.40 s)" in w["warning"]
    assert not index.failures and f"WARNING {w['path']}: decoded {rec.n_frames} frames" in format_table(index)


@pytest.mark.parametrize("layout", ["videos/batch1", "."])
def test_video_folders_are_found_below_the_root(tmp_path, layout):
    root = make_affwild2_tree(tmp_path / "aw")
    dest = root / layout
    for d in ("batch1", "batch2", "new_vids"):
        for p in (root / d).iterdir():
            dest.mkdir(parents=True, exist_ok=True)
            p.rename(dest / p.name)
        (root / d).rmdir()
    (root / "annotations" / "stray.mp4").write_bytes(b"")  # annotations/ is never searched
    index = _index(root, tmp_path)
    assert index.reader_fields["video_dirs"] == [os.path.relpath(dest)]
    assert len(index.records) == 5 and not index.failures


def test_no_video_anywhere_is_a_dataset_error(tmp_path):
    root = tmp_path / "aw"
    (root / "annotations").mkdir(parents=True)
    (root / "cropped_aligned").mkdir()
    (root / "cropped_aligned" / "x.mp4").write_bytes(b"")
    with pytest.raises(DatasetError, match="no video folder exists.*no video file"):
        _index(root, tmp_path)


def test_test_list_naming_an_annotated_name_is_a_warning(tmp_path):
    root = make_affwild2_tree(tmp_path / "aw", "abaw6", test_lists=True)
    va_list = root / "annotations/6th_ABAW_Annotations/names_of_videos_in_each_test_set" / \
        "Valence_Arousal_Estimation_Challenge_test_set_release.txt"
    va_list.write_text(va_list.read_text() + "1-30-64x48\n")
    index = _index(root, tmp_path)
    assert index.by_name["1-30-64x48"].splits["va"] == "train"
    (w,) = index.warnings
    assert w["video"] == "1-30-64x48" and w["path"].endswith(va_list.name)
    assert "annotated for VA (train); kept as train" in w["warning"]


def test_bare_name_beside_one_side_is_the_other_person_and_the_manifest_overrides(tmp_path):
    root = make_affwild2_tree(tmp_path / "aw")
    for p in (root / "annotations").rglob("10-60-64x48_right.txt"):  # annotated as X + X_left (like video2)
        p.rename(p.with_name("10-60-64x48.txt"))
    manifest = {"datasets": {"aw": {"root": str(root), "videos": ["batch1", "batch2", "new_vids"], "folds": {"k": 2},
                                    "sides": {"166": "right", "nobody": "left"}}}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(manifest))
    index = build_index(dataset_spec("aw", tmp_path / "m.yaml"), Workspace(tmp_path / "work"), progress=False)
    recs = {r.name: (r.side, r.side_from) for r in index.records}
    assert recs["10-60-64x48"] == ("right", "sibling 10-60-64x48_left")
    assert recs["10-60-64x48_left"] == ("left", "name")
    assert recs["166"] == ("right", "manifest") and recs["1-30-64x48"] == ("largest", "no sibling")
    assert [w["video"] for w in index.warnings] == ["nobody"]
    assert "nobody" in format_table(index)
    # the manifest wins over the sibling rule
    manifest["datasets"]["aw"]["sides"] = {"10-60-64x48": "largest"}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(manifest))
    index = build_index(dataset_spec("aw", tmp_path / "m.yaml"), Workspace(tmp_path / "work2"), progress=False)
    assert {r.name: r.side for r in index.records}["10-60-64x48"] == "largest"
    manifest["datasets"]["aw"]["sides"] = {"10-60-64x48": "middle"}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(DatasetError, match=r"m.yaml: datasets.aw.sides: 10-60-64x48: 'middle' not one of left"):
        dataset_spec("aw", tmp_path / "m.yaml")
