"""Wrong faces out: the manifest's ``exclude`` (frame ranges and a detector-score floor) is read and checked by
the index (an unknown video, a range past the video's end), recorded in index.json, and makes the frames invalid
wherever labels are read (training, post-processing, evaluation); labels.zarr and faces.zarr keep their data;
the contact sheet marks the excluded frames."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import zarr
from sklearn.metrics import f1_score

from afwpipe import store
from afwpipe.contact_sheet import EXCLUDED_RGB, contact_sheet, video_sheet
from afwpipe.crop_codec import parse_crop_codec
from afwpipe.errors import DatasetError, TrainError
from afwpipe.evaluate import EvalConfig, run_evaluate
from afwpipe.exclusions import excluded_mask, parse_exclude
from afwpipe.index import build_index, format_table
from afwpipe.postprocess import PostConfig, run_postprocess
from afwpipe.readers import load_labels
from afwpipe.train import TrainConfig, train

from synth import make_affwild2_tree
from test_clips import make_workspace
from test_index import _spec
from test_postprocess import labels_of, make_post_workspace

WHERE = "data_manifest.yaml: datasets.aw.exclude"


# -- reading the manifest entry ---------------------------------------------------------------------------
def test_exclude_entry_is_read_into_ranges_and_a_floor():
    ranges, floor = parse_exclude({"frames": [{"video": "v", "frames": [3, 5]}], "score_below": 0.9}, WHERE)
    assert [(r.video, r.first, r.last) for r in ranges] == [("v", 3, 5)] and floor == 0.9
    assert parse_exclude(None, WHERE) == ((), None)


@pytest.mark.parametrize("value, match", [
    ({"frame": []}, r"unknown key\(s\) frame; known: frames, score_below"),
    ({"frames": [{"video": "v", "frames": [5, 3]}]}, r"frames\[0\] \(v\): frames \[5, 3\] must satisfy 0 <= first <= last"),
    ({"frames": [{"video": "v", "frames": [-1, 3]}]}, r"must satisfy 0 <= first"),
    ({"frames": [{"video": "v", "frames": [1.5, 3]}]}, r"two whole frame numbers"),
    ({"frames": [{"video": "v", "frames": "1-3"}]}, r"two whole frame numbers"),
    ({"frames": [{"frames": [1, 3]}]}, r"frames\[0\]: expected \{video: NAME, frames: \[first, last\]\}"),
    ({"score_below": 1.5}, r"score_below: 1.5 is not a detector score in \[0, 1\]"),
    ({"score_below": "high"}, r"score_below: 'high' is not a number"),
])
def test_a_malformed_exclude_entry_names_the_entry(value, match):
    with pytest.raises(DatasetError, match=rf"{WHERE}.*{match}"):
        parse_exclude(value, WHERE)


def test_excluded_mask_ranges_include_both_ends_and_the_floor_skips_frames_without_a_face():
    score = np.array([0.99, 0.5, 0.0, 0.95, 0.7, 0.99])
    present = np.array([True, True, False, True, True, True])
    assert excluded_mask(6, [[1, 2]]).tolist() == [False, True, True, False, False, False]
    assert excluded_mask(6, [], 0.9, score, present).tolist() == [False, True, False, False, True, False]
    assert excluded_mask(6, [[5, 5]], 0.9, score, present).tolist() == [False, True, False, False, True, True]


# -- the index checks and records them --------------------------------------------------------------------
def test_the_index_records_the_ranges_per_name_and_keeps_the_labels(tmp_path):
    root = make_affwild2_tree(tmp_path / "aw", n_frames=12)
    exclude = {"frames": [{"video": "1-30-64x48", "frames": [2, 4]},
                          {"video": "10-60-64x48", "frames": [11, 11]},  # a video stem: both people's names
                          {"video": "10-60-64x48_left", "frames": [0, 1]}], "score_below": 0.9}
    ws = store.Workspace(tmp_path / "work")
    index = build_index(dataclasses.replace(_spec(root), exclude=exclude), ws, progress=False)
    recs = index.by_name
    assert recs["1-30-64x48"].excluded_frames == [[2, 4]]
    assert recs["10-60-64x48_left"].excluded_frames == [[11, 11], [0, 1]]
    assert recs["10-60-64x48_right"].excluded_frames == [[11, 11]]
    assert recs["5-60-64x48-1"].excluded_frames == []
    assert index.exclude_frames == [["1-30-64x48", 2, 4], ["10-60-64x48", 11, 11], ["10-60-64x48_left", 0, 1]]
    assert index.score_below == 0.9
    assert json.loads(ws.index.read_text())["exclude"] == {"frames": index.exclude_frames, "score_below": 0.9}
    stored = zarr.open_group(str(ws.labels), mode="r")["1-30-64x48/expr"][...]
    assert (stored[2:5] >= 0).all()  # labels.zarr keeps the annotation
    # 3 frames of 1-30-64x48, frame 11 of both people of 10-60-64x48, frames 0-1 of its left person
    assert "excluded (invalid for training and evaluation): 7 frames in 3 manifest range(s); face frames with " \
           "detector score < 0.9" in format_table(index)


@pytest.mark.parametrize("entry, match", [
    ({"video": "nope", "frames": [0, 1]}, r"frames\[0\]: unknown video 'nope': no name or video file of the index"),
    ({"video": "1-30-64x48", "frames": [10, 12]},
     r"frames\[0\]: 1-30-64x48 frames \[10, 12\] run past the video's end: 1-30-64x48 has 12 frames \(0..11\)"),
])
def test_an_unknown_video_or_a_range_past_the_end_stops_the_index_before_it_writes(tmp_path, entry, match):
    root = make_affwild2_tree(tmp_path / "aw", n_frames=12)
    ws = store.Workspace(tmp_path / "work")
    with pytest.raises(DatasetError, match=rf"{WHERE}.{match}"):
        build_index(dataclasses.replace(_spec(root), exclude={"frames": [entry]}), ws, progress=False)
    assert not ws.index.exists() and not ws.labels.exists()


# -- the readers apply them: training and evaluation ------------------------------------------------------
def _write_faces(ws: store.Workspace, name: str, score: np.ndarray, present: np.ndarray, size: int = 8) -> None:
    g = store.begin_video(ws.faces, name)
    store.write_time_array(g, "score", score.astype(np.float32))
    store.write_time_array(g, "present", present)
    codec = parse_crop_codec("zstd")
    crops = np.full((len(score), size, size, 3), 90, np.uint8)
    codec.create(g, len(score), size)[...] = codec.encode(crops)
    store.mark_complete(g)


def _exclude(ws: store.Workspace, ranges: dict, floor: float | None = None) -> None:
    index = ws.read_index()
    records = [dataclasses.replace(r, excluded_frames=ranges.get(r.name, [])) for r in index.records]
    dataclasses.replace(index, records=records, score_below=floor,
                        exclude_frames=[[n, a, b] for n, rs in ranges.items() for a, b in rs]).save(ws.index)


def test_load_labels_marks_excluded_frames_invalid(tmp_path):
    ws = make_workspace(tmp_path / "ws", n_videos=2, n_frames=40, n_val=1)
    before = load_labels(ws, ["v0", "v1"])
    _exclude(ws, {"v0": [[30, 34]]})
    after = load_labels(ws, ["v0", "v1"])
    assert (after["v0"]["au"][30:35] == -1).all() and (after["v0"]["expr"][30:35] == -1).all()
    assert (after["v0"]["va"][30:35] == -5).all()
    for t in ("au", "expr", "va"):
        np.testing.assert_array_equal(np.delete(after["v0"][t], range(30, 35), 0), np.delete(before["v0"][t],
                                                                                              range(30, 35), 0))
        np.testing.assert_array_equal(after["v1"][t], before["v1"][t])
    # the floor: face frames with a low detector score; frames without a face keep their labels
    score = np.full(40, 0.99)
    score[[12, 13, 14]] = 0.5
    present = np.ones(40, bool)
    present[14] = False
    for name in ("v0", "v1"):
        _write_faces(ws, name, score, present)
    _exclude(ws, {}, floor=0.9)
    floor = load_labels(ws, ["v1"])["v1"]
    assert (floor["au"][[12, 13]] == -1).all() and (floor["au"][14] == before["v1"]["au"][14]).all()
    assert (before["v1"]["au"][12:15] >= 0).all()
    np.testing.assert_array_equal(np.delete(floor["va"], [12, 13], 0), np.delete(before["v1"]["va"], [12, 13], 0))


def test_the_floor_without_detected_faces_is_an_error_naming_the_store(tmp_path):
    ws = make_workspace(tmp_path / "ws", n_videos=2, n_frames=40, n_val=1)
    _exclude(ws, {}, floor=0.9)
    with pytest.raises(TrainError, match=r"faces.zarr: no complete faces of v0; the manifest's exclude.score_below"):
        load_labels(ws, ["v0"])


def test_training_never_sees_excluded_frames(tmp_path):
    ws = make_workspace(tmp_path / "ws", n_videos=4, n_frames=40, n_val=1)
    cfg = TrainConfig(task="au", head="tcn", features=["vis", "aud"], fold="official", k=16, epochs=1, device="cpu")
    _exclude(ws, {f"v{i}": [[0, 39]] for i in range(3)})  # every frame of the three training videos
    with pytest.raises(TrainError, match="no labelled AU frame in the training videos"):
        train(ws, cfg, progress=False)


def test_evaluation_scores_no_excluded_frame(tmp_path):
    ws = make_post_workspace(tmp_path / "ws", tasks=("expr",))
    cfg = PostConfig(smooth={t: {"method": "none"} for t in ("au", "expr", "va")}, au_thresholds=0.5)
    run_postprocess(ws, cfg, progress=False)
    full = run_evaluate(ws, EvalConfig(plot_system="official")).metrics["expr"]["official"]
    _exclude(ws, {"a": [[0, 24]]})  # official scores a and b; a keeps frames 25..39
    run_postprocess(ws, cfg, progress=False)
    cut = run_evaluate(ws, EvalConfig(plot_system="official")).metrics["expr"]["official"]
    assert full["frames"] - cut["frames"] == 25
    from afwpipe.readers import read_post

    true = np.concatenate([labels_of("a")["expr"][25:], labels_of("b")["expr"]])
    pred = np.concatenate([read_post(ws, "expr-official", "a")["after"][25:],
                           read_post(ws, "expr-official", "b")["after"]])
    assert cut["after"]["f1"] == pytest.approx(f1_score(true, pred, labels=range(8), average="macro", zero_division=0))


# -- the contact sheet marks them -------------------------------------------------------------------------
def _amber(tile: np.ndarray) -> int:
    return int(np.all(tile == np.array(EXCLUDED_RGB, np.uint8), axis=-1).sum())


def test_the_contact_sheet_marks_excluded_frames(tmp_path):
    crops = np.full((3, 16, 16, 3), 90, np.uint8)
    sheet = contact_sheet(crops, excluded=np.array([False, True, False]), cols=3, tile=32)
    assert _amber(sheet[:, :32]) == 0 and _amber(sheet[:, 32:64]) > 100 and _amber(sheet[:, 64:]) == 0
    ws = make_workspace(tmp_path / "ws", n_videos=1, n_frames=20, n_val=0)
    _write_faces(ws, "v0", np.full(20, 0.99), np.ones(20, bool))
    _exclude(ws, {"v0": [[5, 9]]})
    sheet = video_sheet(ws, "v0", every=5, cols=4, tile=32)  # frames 0, 5, 10, 15
    assert [_amber(sheet[:, i * 32:(i + 1) * 32]) > 100 for i in range(4)] == [False, True, False, False]
