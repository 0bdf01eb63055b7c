import logging

import numpy as np
import pytest

from afwpipe.datasets.affwild2 import (align_length, find_challenge_dirs, find_videos, read_annotation,
                                       scan_annotations, split_side, valid_mask)
from afwpipe.errors import AnnotationError, DatasetError
from afwpipe.labels import AU_NAMES

from synth import EDITIONS, make_affwild2_tree, write_annotation


def test_sample_annotations_are_read_with_shapes_and_invalid_markers(sample_annotations):
    entries = scan_annotations(sample_annotations)
    assert sorted(entries) == ["WolfgangLanger_Pexels", "face_noface", "noface_face", "single_face"]
    assert {n: e.split for n, e in entries.items()} == {
        "WolfgangLanger_Pexels": "train", "noface_face": "train", "face_noface": "val", "single_face": "val"}
    e = entries["noface_face"]
    au, expr, va = (read_annotation(e.files[t], t) for t in ("au", "expr", "va"))
    assert au.shape == (169, 12) and au.dtype == np.int8
    assert expr.shape == (169,) and expr.dtype == np.int8
    assert va.shape == (169, 2) and va.dtype == np.float32
    # no face in frames 0-95: invalid there, valid on the face span
    assert (au[:96] == -1).all() and (expr[:96] == -1).all() and (va[:96] == -5).all()
    assert valid_mask(au, "au")[96:168].all() and valid_mask(va, "va").sum() == 72


@pytest.mark.parametrize("edition", sorted(EDITIONS))
def test_every_edition_layout_is_found_by_prefix(tmp_path, edition):
    root = make_affwild2_tree(tmp_path, edition)
    dirs = find_challenge_dirs(root / "annotations")
    assert sorted(dirs) == ["au", "expr", "va"]
    entries = scan_annotations(root / "annotations")
    assert set(entries) == {"1-30-64x48", "5-60-64x48-1", "10-60-64x48_left", "10-60-64x48_right", "ghost"}
    assert entries["5-60-64x48-1"].split == "val" and entries["1-30-64x48"].split == "train"
    assert entries["10-60-64x48_right"].video == "10-60-64x48"
    assert entries["10-60-64x48_right"].side == "right"
    assert set(entries["ghost"].files) == {"au", "expr", "va"}


def test_videos_found_in_batch_folders_with_both_extensions(tmp_path, caplog):
    root = make_affwild2_tree(tmp_path)
    with caplog.at_level(logging.WARNING):
        videos = find_videos([root / "batch1", root / "batch2", root / "new_vids", root / "missing_batch"])
    assert videos["5-60-64x48-1"].suffix == ".avi" and videos["166"].parent.name == "batch1"
    assert "missing_batch" in caplog.text


def test_split_side():
    assert split_side("10-60-1280x720_left") == ("10-60-1280x720", "left")
    assert split_side("video2_right") == ("video2", "right")
    assert split_side("5-60-1920x1080-1") == ("5-60-1920x1080-1", None)


def test_missing_header_names_the_file(tmp_path):
    p = write_annotation(tmp_path / "v.txt", "au", 5, header=False)
    with pytest.raises(AnnotationError, match=r"v\.txt: missing header"):
        read_annotation(p, "au")


EXPR_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"


@pytest.mark.parametrize("task, text, message", [
    ("au", ",".join(AU_NAMES) + "\n" + ",".join(["0"] * 12) + "\n" + ",".join(["1"] * 11) + "\n",
     r"bad\.txt: line 3 has 11 values, expected 12"),
    ("va", "valence,arousal,dominance\n0.1,0.2,0.3\n", r"bad\.txt: header has 3 columns, expected 2"),
    ("expr", EXPR_HEADER + "\n1\nhappy\n", r"bad\.txt: line 3 has a non-numeric value"),
    ("expr", EXPR_HEADER + "\n1\n9\n", r"bad\.txt: line 3 value 9 is outside the EXPR range"),
    ("va", "valence,arousal\n0.1,nan\n", r"bad\.txt: line 2 has a NaN/Inf value"),
    ("au", "", r"bad\.txt: empty file"),
], ids=["column-count", "header-width", "non-numeric", "out-of-range", "nan", "empty"])
def test_malformed_file_names_file_and_line(tmp_path, task, text, message):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(AnnotationError, match=message):
        read_annotation(p, task)


def test_missing_annotation_root_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="does_not_exist: annotation folder does not exist"):
        scan_annotations(tmp_path / "does_not_exist")


def test_align_pads_with_invalid_and_truncates_with_a_warning(caplog):
    va = np.zeros((5, 2), np.float32)
    with caplog.at_level(logging.WARNING):
        padded = align_length(va, 8, "va", source="x.txt")
        cut = align_length(np.zeros(10, np.int8), 8, "expr", source="y.txt")
    assert padded.shape == (8, 2) and (padded[5:] == -5).all() and (padded[:5] == 0).all()
    assert cut.shape == (8,)
    assert "x.txt: 5 annotated frames but the video decodes to 8" in caplog.text
    assert "y.txt: 10 annotated frames" in caplog.text
