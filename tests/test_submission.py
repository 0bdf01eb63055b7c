"""ABAW5/6 submission files: headers per track, per-track test sets (one row per decoded frame of each test name,
X_left / X_right each with its own predictions), annotation rows for val names, the uni-task warning,
row format, and the organisers' example file deciding the rows with padding / truncating warnings."""

from __future__ import annotations

import json
import logging

from pathlib import Path

import numpy as np
import pytest

from synth import complete_index
from afwpipe import store
from afwpipe.folds import summary_split
from afwpipe.errors import SubmissionError
from afwpipe.labels import AU_NAMES
from afwpipe.postprocess import PostConfig, run_postprocess
from afwpipe.store import Workspace
from afwpipe.submission import FILE_NAMES, HEADERS, SubmitConfig, main, read_example, write_submission, write_track
from test_postprocess import T, make_post_workspace



def _submit(params: dict, out_dir=None):
    """``afwpipe submit`` with ``params`` (what the command does after reading params.yaml)."""
    ws = Workspace(Path(params["workdir"]) / params["dataset"]["name"])
    return main(ws, SubmitConfig.from_params(params["submit"]), out_dir=out_dir)

def test_headers_and_rows_per_track(tmp_path):
    au = np.zeros((3, 12), np.int8)
    au[1, [0, 11]] = 1
    write_track("au", {"vid_left": au}, tmp_path / "au.txt")
    lines = (tmp_path / "au.txt").read_text().splitlines()
    assert lines[0] == "image_location," + ",".join(AU_NAMES)
    assert lines[1:] == ["vid_left/00001.jpg,0,0,0,0,0,0,0,0,0,0,0,0", "vid_left/00002.jpg,1,0,0,0,0,0,0,0,0,0,0,1",
                         "vid_left/00003.jpg,0,0,0,0,0,0,0,0,0,0,0,0"]
    write_track("expr", {"b": np.array([4, 0], np.int8), "a": np.array([7], np.int8)}, tmp_path / "expr.txt")
    assert (tmp_path / "expr.txt").read_text().splitlines() == [
        "image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other",
        "a/00001.jpg,7", "b/00001.jpg,4", "b/00002.jpg,0"]
    write_track("va", {"v": np.array([[0.25, -0.5]], np.float32)}, tmp_path / "va.txt")
    assert (tmp_path / "va.txt").read_text().splitlines() == ["image_location,valence,arousal",
                                                              "v/00001.jpg,0.250000,-0.500000"]


def test_row_counts_pad_and_truncate_with_warnings(tmp_path, caplog):
    preds = {"a": np.array([1, 2, 3], np.int8), "b": np.array([5, 6, 7, 7, 7], np.int8)}
    with caplog.at_level(logging.WARNING):
        s = write_track("expr", preds, tmp_path / "e.txt", n_rows={"a": 5, "b": 2})
    rows = (tmp_path / "e.txt").read_text().splitlines()[1:]
    assert rows == ["a/00001.jpg,1", "a/00002.jpg,2", "a/00003.jpg,3", "a/00004.jpg,3", "a/00005.jpg,3",
                    "b/00001.jpg,5", "b/00002.jpg,6"]
    assert s.padded == {"a": (3, 5)} and s.truncated == {"b": (5, 2)} and s.rows == 7
    assert "a has 3 predicted frames but 5 rows; padding" in caplog.text
    assert "b has 5 predicted frames but 2 rows; truncating" in caplog.text


def test_example_file_decides_the_rows(tmp_path, caplog):
    example = tmp_path / "example.txt"
    example.write_text("image_location,valence,arousal\nb/00002.jpg,0,0\na/00001.jpg,0,0\na/00004.jpg,0,0\n\n")
    preds = {"a": np.array([[0.1, 0.2], [0.3, 0.4]]), "b": np.array([[0.5, 0.6], [0.7, 0.8], [0.9, 1.0]]),
             "unused": np.zeros((2, 2))}
    with caplog.at_level(logging.WARNING):
        s = write_track("va", preds, tmp_path / "va.txt", example=example)
    assert (tmp_path / "va.txt").read_text().splitlines() == [
        "image_location,valence,arousal", "b/00002.jpg,0.700000,0.800000", "a/00001.jpg,0.100000,0.200000",
        "a/00004.jpg,0.300000,0.400000"]  # a's frame 4 repeats its last prediction
    assert s.rows == 3 and s.videos == 2 and s.padded == {"a": (2, 4)} and s.truncated == {"b": (3, 2)}
    assert "a has 2 predicted frames but 4 rows of" in caplog.text and "truncating" in caplog.text


def test_bad_example_files_are_clear_errors(tmp_path, caplog):
    bad = tmp_path / "bad.txt"
    bad.write_text("image_location,valence,arousal\nv/00001.jpg,0,0\nv/frame.jpg,0,0\n")
    with pytest.raises(SubmissionError, match=r"bad.txt, line 3: 'v/frame.jpg' is not"):
        read_example(bad)
    bad.write_text("frame,valence\n")
    with pytest.raises(SubmissionError, match="line 1 should be the header"):
        read_example(bad)
    with pytest.raises(SubmissionError, match="does not exist"):
        read_example(tmp_path / "none.txt")
    ok = tmp_path / "ok.txt"
    ok.write_text("image_location,valence,arousal\nmissing/00001.jpg,0,0\n")
    with pytest.raises(SubmissionError, match=r"1 video\(s\) have no VA predictions: missing"):
        write_track("va", {"v": np.zeros((1, 2))}, tmp_path / "va.txt", example=ok)
    read_example(ok, "au")
    assert "differs from the AU header" in caplog.text


def test_workspace_submission_has_one_row_per_annotated_frame(tmp_path, capsys):
    ws = make_post_workspace(tmp_path / "sample")
    run_postprocess(ws, PostConfig(), progress=False)
    files = write_submission(ws, "ensemble", splits=("val",))
    assert [f.path.name for f in files] == [FILE_NAMES[t] for t in ("au", "expr", "va")]
    for f in files:
        rows = f.path.read_text().splitlines()
        assert len(rows) == 1 + 2 * T  # val videos a and b, every annotated frame
        assert rows[1].startswith("a/00001.jpg,") and rows[-1].startswith(f"b/{T:05d}.jpg,")
    params = {"dataset": {"name": "sample", "root": None}, "workdir": str(tmp_path),
              "submit": {"system": "official", "splits": ["test"]}}
    files = _submit(params, out_dir=tmp_path / "out")
    assert files[0].rows == T and (tmp_path / "out" / FILE_NAMES["va"]).is_file()  # test video t: decoded frames
    assert capsys.readouterr().out.count("submit: ") == 3
    with pytest.raises(SubmissionError, match="no post-processed system '7'"):
        write_submission(ws, "7")


# -- per-track test sets (hand-made index and post/) -----------------------------------------------------
# a: train everywhere; x: VA-train and EXPR-test; p_left / p_right: the two sides of test video p; v: val
_SPLITS = {"a": ("train", "train", "train"), "x": (None, "test", "train"), "p_left": ("test",) * 3,
           "p_right": ("test",) * 3, "v": ("val",) * 3}
_FRAMES = {"a": 4, "x": 5, "p_left": 3, "p_right": 3, "v": 6}
_CLASS = {"x": 1, "p_left": 2, "p_right": 3, "v": 4}  # the EXPR class each predicted name gets, every frame


def _decisions(track: str, name: str) -> np.ndarray:
    """Hand-made 'after' decisions that tell the names apart: AU all AUs = (name is p_left), EXPR _CLASS,
    VA (class / 10, -class / 10)."""
    t, c = _FRAMES[name], _CLASS[name]
    if track == "au":
        return np.full((t, 12), int(name == "p_left"), np.int8)
    if track == "expr":
        return np.full(t, c, np.int8)
    return np.tile(np.array([c / 10, -c / 10], np.float32), (t, 1))


def _hand_workspace(root, sources=None, unpredicted=()) -> store.Workspace:
    """index.json with per-track splits (``_SPLITS`` as au, expr, va) and post/ of system ``official`` for
    every name that is val or test in a track, except ``unpredicted``; ``v``'s annotation has 7 lines."""
    ws = store.Workspace(root)
    records = []
    for name, splits in _SPLITS.items():
        splits = dict(zip(("au", "expr", "va"), splits))
        records.append({"name": name, "video": name.split("_")[0], "side": name.split("_")[1] if "_" in name else None,
                        "split": summary_split(splits), "splits": splits, "fold": -1,
                        "n_frames": _FRAMES[name],
                        "annotation_frames": {t: 7 if name == "v" else _FRAMES[name] for t, s in splits.items()
                                              if s in ("train", "val")}})
    ws.root.mkdir(parents=True)
    ws.index.write_text(json.dumps(complete_index({"dataset": "hand", "videos": records})))
    ws.post_dir.mkdir()
    predicted = [n for n in _CLASS if n not in unpredicted]
    systems = {}
    for track in ("au", "expr", "va"):
        arrays = {}
        for v in predicted:
            after = _decisions(track, v)
            arrays.update({f"{v}/prob": after.astype(np.float32), f"{v}/before": after, f"{v}/after": after})
        np.savez(ws.post(f"{track}-official"), **arrays)
        systems[f"{track}-official"] = {"track": track, "fold": "official", "videos": predicted, "eval_videos": ["v"]}
    config = {"sources": {"au": "au", "expr": "expr", "va": "va", **(sources or {})}}
    ws.post_systems.write_text(json.dumps({"config": config, "systems": systems}))
    return ws


def _rows(summary) -> list[str]:
    return summary.path.read_text().splitlines()[1:]


def test_without_example_each_track_writes_every_decoded_frame_of_its_own_test_names(tmp_path):
    ws = _hand_workspace(tmp_path / "ws")
    au, expr, va = write_submission(ws, "official")
    # x is VA-train but EXPR-test: only the EXPR file has it; AU does not list x at all
    assert _rows(expr) == ([f"p_left/{i:05d}.jpg,2" for i in (1, 2, 3)] + [f"p_right/{i:05d}.jpg,3" for i in (1, 2, 3)]
                           + [f"x/{i:05d}.jpg,1" for i in range(1, 6)])
    # each side carries its own predictions (p_left: every AU 1, p_right: every AU 0)
    assert _rows(au) == [f"p_left/{i:05d}.jpg," + ",".join(["1"] * 12) for i in (1, 2, 3)] + \
        [f"p_right/{i:05d}.jpg," + ",".join(["0"] * 12) for i in (1, 2, 3)]
    assert _rows(va) == [f"p_left/{i:05d}.jpg,0.200000,-0.200000" for i in (1, 2, 3)] + \
        [f"p_right/{i:05d}.jpg,0.300000,-0.300000" for i in (1, 2, 3)]
    assert (au.rows, expr.rows, va.rows) == (6, 11, 6) and expr.videos == 3
    assert expr.line() == "EXPR: 11 rows, one per decoded frame of 3 test names (no example file)"
    assert au.warnings == [] and expr.warnings == []
    # val on request: v gets one row per line of its annotation (7), padding its 6 predictions
    au = write_submission(ws, "official", splits=("val", "test"))[0]
    assert [r.split(",")[0] for r in _rows(au)][6:] == [f"v/{i:05d}.jpg" for i in range(1, 8)]
    assert au.padded == {"v": (6, 7)}
    assert au.line() == ("AU: 13 rows, one per annotation line of 1 val name, one per decoded frame of 2 test names "
                         "(no example file) (1 padded)")
    with pytest.raises(SubmissionError, match=r"submit splits \['tst'\]: use one or more of train, val, test"):
        write_submission(ws, "official", splits=("tst",))


def test_example_file_rows_are_written_with_each_names_own_predictions(tmp_path, capsys):
    ws = _hand_workspace(tmp_path / "sample")
    example = tmp_path / "EXPR_example.txt"
    locs = ["p_right/00001.jpg", "p_left/00001.jpg", "p_right/00003.jpg", "x/00005.jpg", "p_left/00002.jpg"]
    example.write_text(",".join(HEADERS["expr"]) + "\n" + "".join(f"{loc},\n" for loc in locs))
    params = {"dataset": {"name": "sample", "root": None}, "workdir": str(tmp_path),
              "submit": {"system": "official", "examples": {"expr": str(example)}}}
    au, expr, va = _submit(params)
    assert _rows(expr) == ["p_right/00001.jpg,3", "p_left/00001.jpg,2", "p_right/00003.jpg,3", "x/00005.jpg,1",
                           "p_left/00002.jpg,2"]
    assert expr.rows == 5 and expr.videos == 3 and au.rows == 6
    out = capsys.readouterr().out
    assert f"submit: EXPR: 5 rows from example file {example} (1 truncated) -> {expr.path}" in out
    assert f"submit: AU: 6 rows, one per decoded frame of 2 test names (no example file) -> {au.path}" in out


def test_example_name_missing_from_the_index_and_unpredicted_test_names_are_errors(tmp_path):
    ws = _hand_workspace(tmp_path / "ws")
    example = tmp_path / "VA_example.txt"
    example.write_text("image_location,valence,arousal\np_left/00001.jpg,0,0\np/00001.jpg,0,0\n")
    with pytest.raises(SubmissionError, match=rf"{example}: 1 name\(s\) are not in the index .*index.json: p$"):
        write_submission(ws, "official", examples={"va": example})
    ws = _hand_workspace(tmp_path / "ws2", unpredicted=("p_right",))
    with pytest.raises(SubmissionError, match=r"system au-official has no predictions of 1 name\(s\) to write \(p_right\)"):
        write_submission(ws, "official")


def test_track_fed_by_heads_of_another_task_is_a_uni_task_warning(tmp_path, caplog, capsys):
    ws = _hand_workspace(tmp_path / "sample", sources={"expr": "mtl", "va": "au"})
    params = {"dataset": {"name": "sample", "root": None}, "workdir": str(tmp_path), "submit": {"system": "official"}}
    with caplog.at_level(logging.WARNING):
        au, expr, va = _submit(params)
    assert au.warnings == []
    assert "EXPR track: predictions come from mtl heads (postprocess.sources.expr = mtl)" in expr.warnings[0]
    assert "VA track: predictions come from au heads" in va.warnings[0] and "uni-task" in va.warnings[0]
    out = capsys.readouterr().out
    assert "submit: WARNING: EXPR track: predictions come from mtl heads" in out
    assert "submit: WARNING: VA track" in out and "submit: WARNING: AU" not in out
    assert caplog.text.count("uni-task") == 2


def test_index_of_a_tree_with_test_lists_gives_the_example_files_rows_with_or_without_them(tmp_path, capsys):
    """Contract with the index builder: on a synthetic Aff-Wild2 tree with per-track test lists and example
    files (tests/synth.py), the names predict chooses cover every test name, and writing without the example
    files gives exactly the example files' rows (one per decoded frame of each test name of the track)."""
    from afwpipe.index import build_index
    from afwpipe.predict import evaluation_videos
    from synth import EXAMPLE_FILES, EXAMPLE_FOLDER, TEST_NAMES, make_affwild2_tree
    from test_index import _spec

    root = make_affwild2_tree(tmp_path / "aw", "abaw8", test_lists=True, examples=True)
    ws = store.Workspace(tmp_path / "sample")
    index = build_index(_spec(root), ws, progress=False)
    predicted = evaluation_videos(index, [])
    assert {n for names in TEST_NAMES.values() for n in names} - {"lost_test"} <= set(predicted)
    # post/ by hand: every frame of name i gets EXPR class i % 8, AU all (i % 2), VA (i / 10, 0)
    ws.post_dir.mkdir()
    systems = {}
    for track in ("au", "expr", "va"):
        arrays = {}
        for i, v in enumerate(predicted):
            n = next(r.n_frames for r in index.records if r.name == v)
            after = {"au": np.full((n, 12), i % 2, np.int8), "expr": np.full(n, i % 8, np.int8),
                     "va": np.tile(np.array([i / 10, 0], np.float32), (n, 1))}[track]
            arrays.update({f"{v}/prob": after, f"{v}/before": after, f"{v}/after": after})
        np.savez(ws.post(f"{track}-ensemble"), **arrays)
        systems[f"{track}-ensemble"] = {"track": track, "fold": "ensemble", "videos": predicted}
    ws.post_systems.write_text(json.dumps({"config": {"sources": {}}, "systems": systems}))
    params = {"dataset": {"name": "sample", "root": None}, "workdir": str(tmp_path), "submit": {}}
    _submit(params, out_dir=tmp_path / "plain")
    plain = {t: (tmp_path / "plain" / f).read_text().splitlines() for t, f in FILE_NAMES.items()}
    params["submit"]["examples"] = {t: str(root / EXAMPLE_FOLDER / f) for t, f in EXAMPLE_FILES.items()}
    _submit(params, out_dir=tmp_path / "given")
    given = {t: (tmp_path / "given" / f).read_text().splitlines() for t, f in FILE_NAMES.items()}
    for track, fname in EXAMPLE_FILES.items():
        example = (root / EXAMPLE_FOLDER / fname).read_text().splitlines()
        assert [r.split(",")[0] for r in plain[track]] == [r.split(",")[0] for r in example]
        assert given[track] == plain[track]
        for row in plain[track][1:]:  # each row carries its own name's predictions
            name, i = row.split("/")[0], predicted.index(row.split("/")[0])
            assert row.split(",", 1)[1] == {"au": ",".join([str(i % 2)] * 12), "expr": str(i % 8),
                                            "va": f"{i / 10:.6f},0.000000"}[track], name
    out = capsys.readouterr().out
    assert "submit: EXPR: 48 rows, one per decoded frame of 4 test names (no example file)" in out
    assert "submit: EXPR: 48 rows from example file" in out
