"""The ``image_csv`` reader (issue 25 §1): face images with one CSV of ``image``, ``split`` and targets, each image a
one-frame item, through index -> detect (an aligned dataset's image is its crop; MTCNN on frames of a sample video)
-> finetune (timm's random-weight test_vit, a declared class task) -> extract; bad rows reported by file and line."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml

from afwpipe import store
from afwpipe.detect import ALIGNED, DetectConfig, run_detect
from afwpipe.extract import ExtractConfig, run_extract
from afwpipe.finetune import FinetuneConfig, finetune
from afwpipe.index import build_index
from afwpipe.manifest import dataset_spec
from afwpipe.readers import load_labels
from afwpipe.video import iter_frames

from ft_workspace import TINY

TASKS = {"expr": {"level": "frame", "type": "class", "classes": ["happy", "sad"]},
         "valence": {"level": "frame", "type": "regression", "targets": ["valence"], "range": [-1, 1]}}


def _dataset(tmp_path, rows: list[str], aligned: bool, tasks=TASKS):
    """Manifest ``m.yaml`` of dataset ``faces`` (root ``tmp_path/faces``, its labels.csv = header + ``rows``) and the
    dataset's spec and workspace."""
    root = tmp_path / "faces"
    root.mkdir(exist_ok=True)
    cols = ["image", "split"] + [c for n, t in tasks.items() for c in ([n] if t["type"] == "class" else t["targets"])]
    (root / "labels.csv").write_text(",".join(cols) + "\n" + "".join(r + "\n" for r in rows))
    manifest = {"datasets": {"faces": {"reader": "image_csv", "root": str(root), "aligned": aligned,
                                       "folds": {"k": 2, "seed": 0}, "tasks": tasks}}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(manifest))
    return root, dataset_spec("faces", tmp_path / "m.yaml"), store.Workspace(tmp_path / "work")


def _image(path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_bad_rows_are_reported_by_file_and_line_and_the_others_indexed(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "faces"
    for name in ("a/0.png", "a/1.png", "b/0.png", "b/1.jpg", "b/2.png"):
        _image(root / name, rng.integers(0, 255, (20, 24, 3), dtype=np.uint8))
    rows = ["a/0.png,train,happy,0.5",      # line 2: good
            "a/1.png,val,sad,",             # line 3: good, valence blank (missing label)
            "b/0.png,train,angry,0.25",     # line 4: unknown class: indexed, expr unlabelled
            "b/1.jpg,test,sad,3",           # line 5: out of range: indexed, valence unlabelled
            "a/0.png,train,sad,0",          # line 6: duplicate of line 2
            "c/9.png,train,happy,0",        # line 7: no such image
            "b/2.png,training,happy,0",     # line 8: bad split
            "b/3.gif,train,happy,0",        # line 9: not an image file
            ",train,happy,0"]               # line 10: blank image
    _, spec, ws = _dataset(tmp_path, rows, aligned=False)
    index = build_index(spec, ws, progress=False)

    recs = index.by_name
    assert sorted(recs) == ["a__0", "a__1", "b__0", "b__1"]
    assert all(r.n_frames == 1 and not r.has_audio for r in recs.values())
    assert (recs["a__0"].split, recs["a__1"].split, recs["b__1"].split) == ("train", "val", "test")
    assert recs["a__0"].path.endswith("faces/a/0.png") and (recs["a__0"].width, recs["a__0"].height) == (24, 20)
    errors = {f["error"].split(": ", 1)[1] for f in index.failures}  # after "<file>: "
    assert {e.split(":")[0] for e in errors} == {f"line {n}" for n in (4, 5, 6, 8, 9, 10)}
    by_line = {e.split(":")[0]: e for e in errors}
    assert "'angry' is not a class of happy, sad" in by_line["line 4"]
    assert "outside the declared range" in by_line["line 5"]
    assert "listed already on line 2" in by_line["line 6"]
    assert "'training' is not one of train, val, test" in by_line["line 8"]
    assert "is not a .jpg" in by_line["line 9"] and "is not a .jpg" in by_line["line 10"]
    assert all(f["error"].startswith(f"{f['path']}: line ") and f["path"].endswith("faces/labels.csv")
               for f in index.failures)
    (orphan,) = index.orphan_annotations
    assert orphan["name"] == "c__9" and "line 7: no image" in orphan["error"]

    labels = load_labels(ws, sorted(recs), ("expr", "valence"))
    assert [int(labels[n]["expr"][0]) for n in sorted(recs)] == [0, 1, -1, 1]  # happy, sad, bad class, sad
    val = [float(labels[n]["valence"][0, 0]) for n in sorted(recs)]
    assert val[0] == 0.5 and val[2] == 0.25 and np.isnan(val[1]) and np.isnan(val[3])
    assert recs["b__0"].labelled == {"expr": 0, "valence": 1}


def test_aligned_images_are_their_own_crops_without_audio(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "faces"
    imgs = {}
    for i in range(3):  # 32 x 40: the centre square is columns 4..35
        imgs[f"train__{i}"] = rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)
        _image(root / "train" / f"{i}.png", imgs[f"train__{i}"])
    _, spec, ws = _dataset(tmp_path, [f"train/{i}.png,train,happy,0" for i in range(3)], aligned=True)
    index = build_index(spec, ws, progress=False)
    assert index.reader_fields["aligned"] is True
    cfg = DetectConfig(detector="no_such_detector", size=32, batch_size=2, device="cpu", crop_codec="zstd")
    assert not run_detect(ws, cfg, progress=False).failures  # no detector is built for an aligned dataset
    faces, audio = store.open_store(ws.faces, "r"), store.open_store(ws.audio, "r")
    for name, img in imgs.items():
        g = faces[name]
        assert g.attrs["identity"]["detector"] == ALIGNED and g.attrs["n_frames"] == 1
        assert np.array_equal(g["crops"][0], img[:, 4:36])  # lossless codec, no resize needed: the square itself
        assert g["present"][:].tolist() == [True] and g["boxes"][0].tolist() == [4, 0, 36, 32]
        assert audio[name].attrs["present"] is False and not np.any(audio[name]["wave"][:])
    assert all(r.skipped for r in run_detect(ws, cfg, progress=False).results)  # a rerun finds every image complete


def test_exif_orientation_is_applied_as_pillow_applies_it(tmp_path):
    from PIL import Image, ImageOps

    rows, cols = np.mgrid[:32, :48]
    stored = np.stack([rows * 7, cols * 5, 255 - cols * 5], -1).astype(np.uint8)  # smooth ramps along each axis
    root = tmp_path / "faces"
    root.mkdir()
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(root / "r.jpg", exif=exif, quality=95)
    _, spec, ws = _dataset(tmp_path, ["r.jpg,train,happy,0"], aligned=True)
    (rec,) = build_index(spec, ws, progress=False).records
    assert (rec.width, rec.height, rec.rotation) == (32, 48, 270)
    assert not run_detect(ws, DetectConfig(size=32, device="cpu", crop_codec="zstd"), progress=False).failures
    shown = np.asarray(ImageOps.exif_transpose(Image.open(root / "r.jpg")))  # [48, 32, 3]
    crop = store.open_store(ws.faces, "r")["r"]["crops"][0]
    # the centre square of the upright image (two JPEG decoders: FFmpeg + libswscale vs libjpeg, a few levels apart)
    assert np.abs(crop.astype(int) - shown[8:40]).mean() < 6
    assert np.abs(crop.astype(int) - stored[:, 8:40]).mean() > 50  # not the stored (unrotated) one


@pytest.fixture
def planted(tmp_path, one_torch_thread):
    """An aligned image dataset of 16 images (12 train, 2 val, 2 test) whose class is planted in the brightness
    (happy: bright, sad: dark), indexed and detected."""
    rng = np.random.default_rng(2)
    root = tmp_path / "faces"
    rows = []
    for i in range(16):
        cls = i % 2
        img = rng.integers(0, 90, (36, 36, 3), dtype=np.uint8) + np.uint8(120 * (cls == 0))
        _image(root / f"img{i:02d}.jpg", img)
        rows.append(f"img{i:02d}.jpg,{'train' if i < 12 else 'val' if i < 14 else 'test'},{['happy', 'sad'][cls]},0")
    _, spec, ws = _dataset(tmp_path, rows, aligned=True)
    build_index(spec, ws, progress=False)
    assert not run_detect(ws, DetectConfig(size=32, batch_size=4, device="cpu"), progress=False).failures
    return ws


def test_finetune_and_extract_run_on_one_frame_items(planted):
    ws = planted
    cfg = FinetuneConfig(encoder="vit", task="expr", options=TINY, weights="random", epochs=2, batch_size=4,
                         lr=1e-3, warmup=0.0, frame_stride=2, augment=None, device="cpu", block_frames=16,
                         buffer_blocks=4)
    rec = finetune(ws, cfg, progress=False).record
    train = [f"img{i:02d}" for i in range(12)]
    # the inner split holds out whole images (ceil(0.2 * 12) = 3) to choose the epoch; the stride keeps each image
    assert sorted(rec["trained_on"] + rec["selected_on"]) == train and len(rec["selected_on"]) == 3
    assert rec["frames"] == 9 and rec["frames_per_epoch"] == 8  # two batches of 4
    assert len(rec["epochs"]) == 2 and all(np.isfinite(e["loss"]) for e in rec["epochs"])
    chosen = rec["epochs"][rec["best_epoch"] - 1]
    assert set(chosen["expr"]) == {"uar", "war", "f1"} and chosen["score"] == chosen["expr"]["uar"]
    assert not run_extract(ws, ExtractConfig("ft_vit-expr", device="cpu"), progress=False).failures
    feats = store.open_store(ws.features("ft_vit-expr"), "r")
    for i in range(16):
        x = feats[f"img{i:02d}"]["emb"][:]
        assert x.shape[0] == 1 and np.isfinite(x).all()


def test_finetune_refuses_a_task_the_dataset_does_not_declare(planted):
    from afwpipe.errors import TrainError

    cfg = FinetuneConfig(encoder="vit", task="au", options=TINY, weights="random", device="cpu")
    with pytest.raises(TrainError, match="task 'au' is not declared by faces; its tasks: expr, valence"):
        finetune(planted, cfg, progress=False)


def test_mtcnn_finds_the_face_in_frames_of_a_sample_video(tmp_path, sample_videos):
    root = tmp_path / "faces"
    frames = {}
    for video, take in (("single_face", (0, 20)), ("no_face", (0,))):
        for i, _, rgb in iter_frames(sample_videos[video]):
            if i in take:
                frames[f"{video}__{i}"] = rgb
                _image(root / video / f"{i}.jpg", rgb)
            if i >= max(take):
                break
    rows = [f"{n.replace('__', '/')}.jpg,train,happy,0" for n in frames]
    _, spec, ws = _dataset(tmp_path, rows, aligned=False)
    build_index(spec, ws, progress=False)
    assert not run_detect(ws, DetectConfig(size=64, batch_size=4, device="cpu"), progress=False).failures
    faces = store.open_store(ws.faces, "r")
    from afwpipe.faces import create_detector

    mtcnn = create_detector("mtcnn")
    for name in frames:
        g = faces[name]
        assert g.attrs["identity"]["detector"] == "mtcnn" and g["crops"].shape[0] == 1
        # the same detector on the JPEG as OpenCV decodes it (another decoder than the face stage's PyAV)
        img = cv2.cvtColor(cv2.imread(str(root / f"{name.replace('__', '/')}.jpg")), cv2.COLOR_BGR2RGB)
        (det,) = mtcnn.detect(img[None])
        assert bool(g["present"][0]) == (len(det) > 0) == name.startswith("single_face")
        if len(det):
            assert np.abs(g["boxes"][0] - det.boxes[int(np.argmax(det.scores))]).max() < 4  # pixels
