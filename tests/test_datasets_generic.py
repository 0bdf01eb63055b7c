"""Dataset readers behind a registry (afwpipe.datasets), task declarations, generic readers."""

from __future__ import annotations

import numpy as np
import pytest

from afwpipe.datasets import READERS, create_reader
from afwpipe.datasets.affwild2_reader import AFFWILD2_TASKS
from afwpipe.errors import DatasetError
from afwpipe.labels import TASKS, valid_mask
from afwpipe.manifest import dataset_spec


def test_registry_builds_affwild2_and_names_the_registered_on_an_unknown_reader():
    assert "affwild2" in READERS.list()
    assert create_reader("affwild2").name == "affwild2"
    with pytest.raises(DatasetError, match="unknown dataset reader 'dfew'; registered: .*affwild2"):
        create_reader("dfew")


def test_affwild2_builtin_tasks_mark_the_same_labels_valid_as_labels_valid_mask():
    for task, (_, names, invalid) in TASKS.items():
        spec = AFFWILD2_TASKS[task]
        lab = spec.empty(20)
        assert lab.dtype == (np.float32 if task == "va" else np.int8)
        lab[::3] = 0
        if task != "expr":
            lab[1, 0] = invalid
            lab[4, -1] = 1 if task == "au" else 0.5
        np.testing.assert_array_equal(spec.valid(lab), valid_mask(lab, task))
        assert spec.names == names


def test_affwild2_entry_refuses_declared_tasks(tmp_path):
    (tmp_path / "m.yaml").write_text("datasets:\n  aw:\n    root: .\n    tasks: {x: {level: video, type: class, classes: [a, b]}}\n")
    with pytest.raises(DatasetError, match=r"datasets.aw.tasks: the affwild2 reader's tasks are built in"):
        dataset_spec("aw", tmp_path / "m.yaml")


def _clips(tmp_path, sample_videos, names=("WolfgangLanger_Pexels", "single_face", "noface_face", "face_noface")):
    root = tmp_path / "ds"
    (root / "videos").mkdir(parents=True)
    for n in names:
        (root / "videos" / sample_videos[n].name).symlink_to(sample_videos[n])
    return root


def _manifest(tmp_path, root, body: str):
    (tmp_path / "m.yaml").write_text(f"datasets:\n  ds:\n    root: {root}\n    videos: [videos]\n" + body)
    return dataset_spec("ds", tmp_path / "m.yaml")


VIDEO_TASKS = ("    reader: video_csv\n    labels: labels.csv\n    folds: {k: 2, seed: 0}\n    tasks:\n"
               "      emotion: {level: video, type: class, classes: [calm, happy, sad]}\n"
               "      mimicry: {level: video, type: regression, targets: [joy, awe], range: [0, 1]}\n")


def test_video_csv_indexes_one_label_per_video_and_reports_a_bad_cell_by_file_and_line(tmp_path, sample_videos):
    import csv

    from afwpipe import store
    from afwpipe.index import build_index, format_table

    root = _clips(tmp_path, sample_videos)
    rows = [("video", "split", "emotion", "joy", "awe"),
            ("WolfgangLanger_Pexels", "train", "happy", "0.5", "0.25"),
            ("single_face.mp4", "val", "calm", "", "0.75"),        # blank joy: mimicry invalid
            ("noface_face", "train", "angry", "1.5", "0"),         # unknown class (line 4), joy out of range
            ("not_here", "train", "sad", "0", "0")]                # no such video
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    ws = store.Workspace(tmp_path / "work")
    index = build_index(_manifest(tmp_path, root, VIDEO_TASKS), ws, progress=False)
    recs = index.by_name
    assert sorted(recs) == ["WolfgangLanger_Pexels", "face_noface", "noface_face", "single_face"]
    assert index.reader_fields["tasks"]["emotion"] == {"level": "video", "type": "class", "classes": ["calm", "happy", "sad"]}
    assert {n: r.split for n, r in recs.items()} == {"WolfgangLanger_Pexels": "train", "face_noface": "test",
                                                       "noface_face": "train", "single_face": "val"}
    assert {n: r.labelled for n, r in recs.items()} == {
        "WolfgangLanger_Pexels": {"emotion": 1, "mimicry": 1}, "face_noface": {"emotion": 0, "mimicry": 0},
        "noface_face": {"emotion": 0, "mimicry": 0}, "single_face": {"emotion": 1, "mimicry": 0}}
    labels = store.open_store(ws.labels, "r")
    assert labels["WolfgangLanger_Pexels"]["emotion"][...].tolist() == [1]
    np.testing.assert_array_equal(labels["WolfgangLanger_Pexels"]["mimicry"][...], [[0.5, 0.25]])
    assert labels["single_face"]["emotion"][...].tolist() == [0]
    assert labels["noface_face"]["emotion"][...].tolist() == [-1]
    errors = {(f["video"], f["error"]) for f in index.failures}
    assert any(v == "noface_face" and "labels.csv: line 4: emotion 'angry' is not a class of calm, happy, sad" in e
               for v, e in errors)
    assert any(v == "noface_face" and "line 4: joy 1.5 is outside the declared range [0, 1]" in e for v, e in errors)
    assert [o["name"] for o in index.orphan_annotations] == ["not_here"]
    assert "line 5" in index.orphan_annotations[0]["error"]
    # the seeded folds deal the three videos with a row; the unlisted one has no fold
    assert recs["face_noface"].fold == -1 and {recs[n].fold for n in ("WolfgangLanger_Pexels", "single_face",
                                                                            "noface_face")} == {0, 1}
    assert "EMOTION" in format_table(index) and "MIMICRY" in format_table(index)


def test_video_csv_own_fold_column_numbers_the_folds_in_sorted_order(tmp_path, sample_videos):
    from afwpipe import store
    from afwpipe.index import build_index

    root = _clips(tmp_path, sample_videos, names=("single_face", "noface_face", "face_noface"))
    (root / "labels.csv").write_text("video,fold,emotion,joy,awe\nsingle_face,10,calm,0,0\n"
                                     "noface_face,2,sad,1,1\nface_noface,2,happy,0,1\n")
    index = build_index(_manifest(tmp_path, root, VIDEO_TASKS), store.Workspace(tmp_path / "w"), progress=False)
    assert index.folds == {"k": 2, "seed": None, "column": "fold", "labels": ["2", "10"]}
    assert {r.name: r.fold for r in index.records} == {"face_noface": 0, "noface_face": 0, "single_face": 1}


@pytest.mark.parametrize("body, message", [
    ("    reader: video_csv\n    tasks: {e: {level: frame, type: class, classes: [a, b]}}\n",
     "e: the video_csv reader labels video tasks only"),
    ("    reader: video_csv\n    tasks: {e: {level: video, type: ordinal, classes: [a, b]}}\n",
     r"tasks.e.type: 'ordinal' is not one of class, multilabel, regression"),
    ("    reader: video_csv\n    tasks: {e: {level: video, type: regression, classes: [a, b]}}\n",
     "a regression task needs a non-empty list targets"),
    ("    reader: video_csv\n    tasks: {e: {level: video, type: regression, targets: [v], range: [1, 0]}}\n",
     "range: low 1 is not below high 0"),
    ("    reader: video_csv\n", "this reader needs tasks:"),
    ("    reader: vidoe_csv\n", "unknown dataset reader 'vidoe_csv'"),
])
def test_bad_task_declarations_name_the_manifest_key(tmp_path, sample_videos, body, message):
    from afwpipe import store
    from afwpipe.index import build_index

    root = _clips(tmp_path, sample_videos, names=("single_face",))
    (root / "labels.csv").write_text("video,split,e\nsingle_face,train,a\n")
    with pytest.raises(DatasetError, match=message):
        build_index(_manifest(tmp_path, root, body), store.Workspace(tmp_path / "w"), progress=False)


FRAME_TASKS = ("    reader: frame_csv\n    labels: labels\n    folds: {k: 2, seed: 0}\n    tasks:\n"
               "      valence: {level: frame, type: regression, targets: [valence], range: [-10, 10]}\n")


def test_frame_csv_aligns_listed_frames_and_reports_a_frame_past_the_end(tmp_path, sample_videos):
    from afwpipe import store
    from afwpipe.index import build_index

    root = _clips(tmp_path, sample_videos, names=("single_face", "noface_face", "face_noface"))
    (root / "labels").mkdir()
    (root / "labels" / "single_face.csv").write_text("frame,valence\n1,-2.5\n3,4\n")
    index0 = build_index(_manifest(tmp_path, root, FRAME_TASKS), store.Workspace(tmp_path / "w0"), progress=False)
    n = {r.name: r.n_frames for r in index0.records}
    (root / "labels" / "noface_face.csv").write_text("frame,valence\n" + "".join(
        f"{f},{f / n['noface_face']:.3f}\n" for f in range(1, n["noface_face"] + 1)))
    (root / "labels" / "face_noface.csv").write_text(f"frame,valence\n2,1\n{n['face_noface'] + 1},0\n")
    ws = store.Workspace(tmp_path / "w")
    index = build_index(_manifest(tmp_path, root, FRAME_TASKS), ws, progress=False)
    recs = index.by_name
    lab = store.open_store(ws.labels, "r")
    sf = lab["single_face"]["valence"][...]
    assert sf.shape == (n["single_face"], 1) and sf[0, 0] == -2.5 and sf[2, 0] == 4
    assert np.isnan(sf[1, 0]) and np.isnan(sf[3:]).all()
    assert recs["single_face"].labelled == {"valence": 2} and recs["single_face"].split == "train"
    assert recs["noface_face"].labelled == {"valence": n["noface_face"]}
    (fail,) = index.failures
    assert fail["video"] == "face_noface" and fail["path"].endswith("labels/face_noface.csv")
    assert f"line 3: frame {n['face_noface'] + 1} is past the video's end ({n['face_noface']} decoded frames)" in fail["error"]
    assert recs["face_noface"].labelled == {"valence": 0}


def _video_head(name, pool):
    from afwpipe.heads import create_head, list_heads  # noqa: F401

    kw = {"tcn": dict(channels=8, mlp_dim=8, dilations=[1, 2]), "tmf": dict(d_model=16, n_layers=1, n_heads=2),
          "msf": dict(d_model=16, n_heads=2), "xattn": dict(d_model=16, n_heads=2),
          "mamba": dict(d_model=16, n_layers=1), "stack": dict(d_model=16)}.get(name, {})
    return create_head(name, {"a": 6, "b": 4}, {"emotion": {"width": 3, "level": "video"},
                                                "valence": {"width": 1, "level": "frame"}}, video_pool=pool, **kw)


@pytest.mark.parametrize("pool", ["mean", "attention"])
def test_every_head_gives_one_output_per_clip_for_a_video_task_whatever_the_padding_holds(pool):
    import torch

    from afwpipe.heads import list_heads

    torch.manual_seed(0)
    x = {"a": torch.randn(2, 10, 6), "b": torch.randn(2, 10, 4)}
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 7:] = False
    for name in list_heads():
        head = _video_head(name, pool).eval()
        out = head(x, mask)
        assert out["emotion"].shape == (2, 3) and out["valence"].shape == (2, 10, 1), name
        noisy = {k: v.clone() for k, v in x.items()}
        noisy["a"][1, 7:] = 100.0
        with torch.no_grad():
            torch.testing.assert_close(head(noisy, mask)["emotion"], out["emotion"].detach(), msg=name)


def test_mean_pooling_is_the_mean_of_the_real_frames_and_attention_weights_skip_padding():
    import torch

    from afwpipe.heads.readout import AttentionPool, MeanPool

    h = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    pooled = MeanPool(4)(h, mask).numpy()
    np.testing.assert_allclose(pooled[0], h[0].numpy().mean(0), rtol=1e-6)
    np.testing.assert_allclose(pooled[1], h[1, :2].numpy().mean(0), rtol=1e-6)
    a = AttentionPool(4).weights(h, mask).detach().numpy()
    np.testing.assert_allclose(a.sum(1), [1, 1], rtol=1e-6)
    assert (a[1, 2:] == 0).all() and (a[1, :2] > 0).all()


def test_excluded_frames_of_a_frame_csv_dataset_are_invalid_for_training_and_scoring(tmp_path, sample_videos):
    from afwpipe import store
    from afwpipe.index import build_index
    from afwpipe.readers import load_labels

    root = _clips(tmp_path, sample_videos, names=("single_face",))
    (root / "labels").mkdir()
    (root / "labels" / "single_face.csv").write_text("frame,valence\n" + "".join(f"{f},0.5\n" for f in range(1, 11)))
    body = FRAME_TASKS + "    exclude: {frames: [{video: single_face, frames: [2, 4]}]}\n"
    ws = store.Workspace(tmp_path / "w")
    build_index(_manifest(tmp_path, root, body), ws, progress=False)
    lab = load_labels(ws, ["single_face"], ("valence",))["single_face"]["valence"][:, 0]
    assert np.isnan(lab[2:5]).all() and (lab[[0, 1, 5, 9]] == 0.5).all() and np.isnan(lab[10:]).all()
