"""ABAW5/6 submission files: headers per track, one row per annotated frame (decoded frames for test videos),
row format, and the organisers' example file deciding the rows with padding / truncating warnings."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from afwpipe.errors import SubmissionError
from afwpipe.labels import AU_NAMES
from afwpipe.postprocess import PostConfig, run_postprocess
from afwpipe.submission import FILE_NAMES, read_example, write_submission, write_track
from test_postprocess import T, make_post_workspace


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
    from stages import submit as stage

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
    files = stage.run(params, out_dir=tmp_path / "out")
    assert files[0].rows == T and (tmp_path / "out" / FILE_NAMES["va"]).is_file()  # test video t: decoded frames
    assert capsys.readouterr().out.count("submit: ") == 3
    with pytest.raises(SubmissionError, match="no post-processed system '7'"):
        write_submission(ws, "7")
