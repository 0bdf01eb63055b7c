import logging

import numpy as np
import pytest

from afwpipe.datasets.affwild2 import (TEST_LIST_FOLDER, resolve_sides, align_length, choose_edition, edition_number,
                                       find_challenge_dirs, find_editions, find_test_lists, find_video_dirs,
                                       find_videos, read_annotation, read_test_list, scan_annotations, split_side,
                                       track_of_test_list)
from afwpipe.labels import valid_mask
from afwpipe.errors import AnnotationError, DatasetError
from afwpipe.labels import AU_NAMES

from synth import EDITIONS, make_affwild2_tree, make_video, write_annotation


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


@pytest.mark.parametrize("folder, number", [
    ("Third ABAW Annotations", 3), ("5th ABAW Annotations", 5), ("6th_ABAW_Annotations", 6),
    ("8th ABAW Annotations", 8), ("ABAW8", 8), ("abaw_8_annotations", 8), ("ABAW/Sixth", 6),
    ("annotations_2024", None), (".", None), ("my_copy", None)])
def test_edition_number_from_folder_name(folder, number):
    assert edition_number(folder) == number


def test_choose_edition_by_setting_newest_or_error():
    eds = {"6th_ABAW_Annotations": None, "Third ABAW Annotations": None, "ABAW8": None}
    assert choose_edition(eds) == "ABAW8"  # newest, whatever the dict order
    assert choose_edition(dict(reversed(list(eds.items())))) == "ABAW8"
    assert choose_edition(eds, 3) == choose_edition(eds, "Third ABAW Annotations") == "Third ABAW Annotations"
    assert choose_edition({".": None}) == "." and choose_edition({}) is None
    with pytest.raises(DatasetError, match="edition 8 is held by 'ABAW8', '8th'.*dataset.edition"):
        choose_edition({"ABAW8": None, "8th": None})
    with pytest.raises(DatasetError, match="no edition number in '.'"):
        choose_edition({".": None, "ABAW8": None})


def test_find_editions_root_and_named(tmp_path):
    make_affwild2_tree(tmp_path, "abaw5", videos=False)
    make_affwild2_tree(tmp_path, "abaw8", videos=False)
    for task in ("au", "va"):  # the root itself holds challenge folders too
        write_annotation(tmp_path / "annotations" / EDITIONS["abaw6"][1][task] / "Train_Set" / "x.txt", task, 3)
    eds = find_editions(tmp_path / "annotations")
    assert list(eds) == [".", "5th ABAW Annotations", "8th ABAW Annotations"]
    assert sorted(scan_annotations(eds["."], max_depth=1)) == ["x"]  # not the editions below it


@pytest.mark.parametrize("filename, track", [
    ("Action_Unit_Detection_Challenge_test_set_release.txt", "au"),
    ("Expression_Recognition_Challenge_test_set_release.txt", "expr"),
    ("Expression_Classification_Challenge_test_set_release.txt", "expr"),
    ("Valence_Arousal_Estimation_Challenge_test_set_release.txt", "va"),
    ("AU_test.txt", "au"), ("EXPR-test.txt", "expr"), ("VA test.txt", "va"),
    ("MTL_Challenge_test_set_release.txt", None), ("AU_and_VA.txt", None)])
def test_test_list_track_by_keyword(filename, track):
    assert track_of_test_list(filename) == track


def test_test_lists_found_and_read(tmp_path, caplog):
    make_affwild2_tree(tmp_path, "abaw3", test_lists=True, videos=False)
    ed = tmp_path / "annotations" / "Third ABAW Annotations"
    (ed / TEST_LIST_FOLDER / "MTL_Challenge_test_set_release.txt").write_text("166\n")
    with caplog.at_level(logging.WARNING):
        lists = find_test_lists([ed, tmp_path / "annotations"])
    assert {t: p.name for t, p in lists.items()} == {
        "au": "Action_Unit_Detection_Challenge_test_set_release.txt",
        "expr": "Expression_Classification_Challenge_test_set_release.txt",
        "va": "Valence_Arousal_Estimation_Challenge_test_set_release.txt"}
    assert "MTL_Challenge_test_set_release.txt: no single track" in caplog.text
    assert read_test_list(lists["expr"]) == ["166", "20-24-64x48", "30-64x48_left", "30-64x48_right"]
    (tmp_path / "l.txt").write_text("a.mp4\n\n b \na\n")
    assert read_test_list(tmp_path / "l.txt") == ["a", "b"]
    assert find_test_lists([tmp_path / "nowhere"]) == {}


def test_video_dirs_below_root_skip_annotations_and_depth(tmp_path):
    make_video(tmp_path / "videos" / "batch1" / "a.mp4", 2)
    make_video(tmp_path / "annotations" / "b.mp4", 2)
    make_video(tmp_path / "x" / "y" / "z" / "w" / "deep.mp4", 2)  # 4 levels down
    dirs = find_video_dirs(tmp_path, [tmp_path / "batch1"])
    assert dirs == [tmp_path / "videos" / "batch1"]
    assert find_video_dirs(tmp_path, [tmp_path / "videos"]) == [tmp_path / "videos"]  # configured one exists
    with pytest.raises(DatasetError, match="no video file"):
        find_video_dirs(tmp_path / "x", [tmp_path / "none"], max_depth=2)


def test_resolve_sides_bare_names_siblings_and_overrides():
    names = ["video2", "video2_left", "video59", "video59_right", "trio", "trio_left", "trio_right", "solo", "a_b"]
    got = resolve_sides(names, {"solo": "left"})
    assert got["video2"] == ("right", "sibling video2_left")
    assert got["video59"] == ("left", "sibling video59_right")
    assert got["video59_right"] == ("right", "name") and got["trio_left"] == ("left", "name")
    assert got["trio"][0] == "largest" and "ambiguous" in got["trio"][1]
    assert got["solo"] == ("left", "manifest") and got["a_b"] == ("largest", "no sibling")
    with pytest.raises(DatasetError, match="sides: solo: 'up' is not one of left, right, largest"):
        resolve_sides(names, {"solo": "up"})
