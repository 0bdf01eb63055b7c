import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
import zarr

from afwpipe import detect
from afwpipe.contact_sheet import contact_sheet, save_png
from afwpipe.crop_codec import read_crops
from afwpipe.detect import DetectConfig, fill_runs, run_detect
from afwpipe.index import build_index
from afwpipe.manifest import DatasetSpec
from afwpipe.store import Workspace, is_complete
from afwpipe.video import iter_frames

from conftest import REPO
from synth import make_video, write_annotation

ARTIFACTS = REPO / "artifacts"


def _frames(path, n, size=(320, 180)):
    out = []
    for i, _, rgb in iter_frames(path):
        if i >= n:
            break
        out.append(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
    return np.stack(out)


@pytest.fixture(scope="module")
def faces(sample_videos):
    """Small real face clips: the man (single_face) and the woman (WolfgangLanger_Pexels), 320x180."""
    return {"man": _frames(sample_videos["single_face"], 12),
            "woman": _frames(sample_videos["WolfgangLanger_Pexels"], 12)}


def _dataset(tmp_path, videos: dict, annotated: list[str] = (), cropped=None) -> Workspace:
    """Copy ``videos`` (stem -> path) into a one-folder dataset, annotate ``annotated`` names, index it."""
    root = tmp_path / "ds"
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for stem, p in videos.items():
        shutil.copy(p, root / "videos" / f"{stem}{Path(p).suffix}")
    for name in annotated:
        write_annotation(root / "annotations" / "VA_Estimation_Challenge" / "Train_Set" / f"{name}.txt", "va", 4)
    spec = DatasetSpec(name="t", root=root, video_dirs=(root / "videos",), annotations=root / "annotations",
                       cropped_aligned=cropped, folds_k=0)
    ws = Workspace(tmp_path / "work" / "t")
    build_index(spec, ws, progress=False)
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"datasets": {"t": {
        "root": str(root), "videos": ["videos"], "annotations": "annotations", "folds": {"k": 0}}}}))
    return ws


def _group(ws, store, name):
    return zarr.open_group(str(getattr(ws, store)), mode="r")[name]


def test_fill_runs_takes_the_nearest_face_ties_to_the_earlier():
    present = np.array([0, 0, 1, 0, 0, 0, 0, 1, 0], bool)
    assert fill_runs(present) == [(0, 2, 2), (3, 5, 2), (5, 7, 7), (8, 9, 7)]
    assert fill_runs(np.array([1, 0, 1], bool)) == [(1, 2, 0)]
    assert fill_runs(np.zeros(4, bool)) == [] and fill_runs(np.ones(4, bool)) == []


@pytest.mark.sample
def test_sample_present_spans_crops_and_audio(sample_workspace):
    ws = sample_workspace
    expected = {"face_noface": (0, 72), "noface_face": (96, 168), "no_face": None}
    for name, span in expected.items():
        g = _group(ws, "faces", name)
        present = g["present"][...]
        want = np.zeros(169 if name != "no_face" else 95, bool)
        if span:
            want[span[0]:span[1]] = True
        assert (present == want).all(), (name, np.flatnonzero(present != want))
        assert read_crops(g["crops"], 0, 2).shape == (2, 224, 224, 3) and g["crops"].attrs["codec"] == "jpeg90"
        assert g.attrs["complete"] and np.isnan(g["boxes"][...][~present]).all()
    # VFR: frame times are the container's, not index/fps
    t = _group(ws, "faces", "noface_face")["times"][...]
    assert t[0] == 0 and np.ptp(np.diff(t)) > 0.005
    # filled crops: noface_face frames 0..95 take frame 96's crop; face_noface 72.. take frame 71's
    c = read_crops(_group(ws, "faces", "noface_face")["crops"])
    assert (c[0] == c[96]).all() and (c[95] == c[96]).all()
    c2 = read_crops(_group(ws, "faces", "face_noface")["crops"])
    assert (c2[168] == c2[71]).all() and not (c2[70] == c2[71]).all()
    # audio: 16 kHz mono float32, as long as the audio track (3.97 s in these files)
    a = _group(ws, "audio", "noface_face")
    assert a.attrs["present"] and a["wave"].dtype == np.float32
    assert abs(a["wave"].shape[0] / 16000 - 3.966) < 0.05
    sheet = [c[i] for i in (0, 50, 96, 130, 168)] + [c2[i] for i in (0, 40, 71, 100, 168)]
    pres = [False, False, True, True, False, True, True, True, False, False]
    save_png(contact_sheet(np.stack(sheet), np.array(pres), cols=5), ARTIFACTS / "detect_contact_sheet.png")


def test_two_people_left_and_right(faces, tmp_path):
    both = np.concatenate([faces["man"][:6], faces["woman"][:6]], axis=2)  # man left, woman right
    ws = _dataset(tmp_path, {"duo": make_video(tmp_path / "duo.mp4", 6, size=(640, 180), frames=both)},
                  annotated=["duo_left", "duo_right"])
    run_detect(ws, DetectConfig(batch_size=3), progress=False)
    left, right = _group(ws, "faces", "duo_left"), _group(ws, "faces", "duo_right")
    assert left["present"][...].all() and right["present"][...].all()
    assert (left["boxes"][:, 2] < 330).all() and (right["boxes"][:, 0] > 310).all()
    assert left.attrs["side"] == "left" and right.attrs["side"] == "right"


def test_bare_name_beside_one_side_takes_the_other_person(faces, tmp_path):
    """Aff-Wild2 annotates some two-person videos as X + X_left or X + X_right (video2 + video2_left,
    video59 + video59_right): the bare name is the other person, not the largest face (here the woman,
    larger than the man, always sits on the sibling's side)."""
    n = 6
    woman_man = np.concatenate([faces["woman"][:n], faces["man"][:n]], axis=2)
    man_woman = np.concatenate([faces["man"][:n], faces["woman"][:n]], axis=2)
    ws = _dataset(tmp_path, {"xv": make_video(tmp_path / "xv.mp4", n, size=(640, 180), frames=woman_man),
                             "yv": make_video(tmp_path / "yv.mp4", n, size=(640, 180), frames=man_woman)},
                  annotated=["xv", "xv_left", "yv", "yv_right"])
    recs = {r.name: r for r in ws.read_index().records}
    assert (recs["xv"].side, recs["xv"].side_from) == ("right", "sibling xv_left")
    assert (recs["yv"].side, recs["yv"].side_from) == ("left", "sibling yv_right")
    run_detect(ws, DetectConfig(batch_size=3), progress=False)
    xv, xl = _group(ws, "faces", "xv"), _group(ws, "faces", "xv_left")
    yv, yr = _group(ws, "faces", "yv"), _group(ws, "faces", "yv_right")
    for g in (xv, xl, yv, yr):
        assert g["present"][...].all()
    assert (xv["boxes"][:, 0] > 320).all() and (xl["boxes"][:, 2] < 320).all()  # xv: the man, right half
    assert (yv["boxes"][:, 2] < 320).all() and (yr["boxes"][:, 0] > 320).all()  # yv: the man, left half
    assert xv.attrs["side"] == "right" and yv.attrs["side"] == "left"

    # a re-index that changes a name's side (here by hand, as the manifest's `sides` would) redoes its faces
    index = ws.read_index()
    records = [dataclasses.replace(r, side="largest", side_from="manifest") if r.name == "xv" else r
               for r in index.records]
    dataclasses.replace(index, records=records).save(ws.index)
    results = {r.name: r for r in run_detect(ws, DetectConfig(batch_size=3), progress=False).results}
    assert results["xv_left"].skipped and not results["xv"].skipped
    assert (_group(ws, "faces", "xv")["boxes"][:, 2] < 320).all()  # largest: the woman, left half


def test_rotated_phone_video_is_detected_upright(tmp_path):
    ws = _dataset(tmp_path, {"phone": REPO / "tests" / "data" / "rotated_90.mp4"})
    run_detect(ws, DetectConfig(batch_size=6), progress=False)
    g = _group(ws, "faces", "phone")
    assert g["present"][...].all()
    lm = g["landmarks"][...]
    assert (lm[:, 2, 1] > lm[:, 0, 1]).all()  # nose below the eyes: the face was upright when detected
    assert not _group(ws, "audio", "phone").attrs["present"]


def test_video_without_face_or_audio(tmp_path):
    ws = _dataset(tmp_path, {"blank": make_video(tmp_path / "blank.avi", 8, size=(96, 64), audio=False)})
    summary = run_detect(ws, DetectConfig(size=32, batch_size=4), progress=False)
    g, a = _group(ws, "faces", "blank"), _group(ws, "audio", "blank")
    assert summary.results[0].present == 0 and not g["present"][...].any() and g.attrs["complete"]
    assert read_crops(g["crops"]).shape == (8, 32, 32, 3)
    assert not a.attrs["present"] and a["wave"].shape == (int(round(8 / 25 * 16000)),)
    assert not a["wave"][...].any()


def test_corrupt_video_is_reported_and_others_processed(tmp_path):
    ws = _dataset(tmp_path, {"good": make_video(tmp_path / "good.mp4", 6, size=(96, 64)),
                             "bad": make_video(tmp_path / "bad.mp4", 30, size=(96, 64))})
    bad = tmp_path / "ds" / "videos" / "bad.mp4"
    bad.write_bytes(bad.read_bytes()[:900])  # truncated after indexing
    params = {"dataset": {"name": "t"}, "workdir": str(tmp_path / "work"), "detect": {
        "detector": "mtcnn", "size": 32, "batch_size": 4, "device": "cpu"}}
    cfg = DetectConfig.from_params(params["detect"])
    assert detect.main(ws, cfg, progress=False) == 1
    assert detect.main(ws, cfg, accept_failures=True, progress=False) == 0
    failures = json.loads((ws.root / "detect_failures.json").read_text())
    assert [f["name"] for f in failures] == ["bad"] and "bad.mp4" in failures[0]["error"]
    assert is_complete(ws.faces, "good") and not is_complete(ws.faces, "bad")


def test_cropped_aligned_input_skips_detection(tmp_path):
    crops_dir = tmp_path / "ds" / "cropped_aligned" / "clip"
    crops_dir.mkdir(parents=True)
    for i in (1, 2, 4):  # frame 3 (00003.jpg) has no crop
        cv2.imwrite(str(crops_dir / f"{i:05d}.jpg"), np.full((112, 112, 3), 40 * i, np.uint8))
    ws = _dataset(tmp_path, {"clip": make_video(tmp_path / "clip.mp4", 4, size=(64, 48))},
                  cropped=tmp_path / "ds" / "cropped_aligned")
    run_detect(ws, DetectConfig(size=112, use_cropped=True), progress=False)
    g = _group(ws, "faces", "clip")
    assert g["present"][...].tolist() == [True, True, False, True]
    crops = read_crops(g["crops"])
    assert abs(int(crops[0].mean()) - 40) <= 2 and (crops[2] == crops[1]).all()  # filled from the nearest
    assert g.attrs["identity"]["detector"] == "cropped_aligned"


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from afwpipe import detect
    from afwpipe.store import Workspace
    orig = detect.FaceWorker._blocks
    def killing(self, rec, *args):
        for i, block in enumerate(orig(self, rec, *args)):
            yield block
            if rec.name == "b_face" and i == 1:
                os.kill(os.getpid(), signal.SIGKILL)
    detect.FaceWorker._blocks = killing
    detect.run_detect(Workspace(sys.argv[1]), detect.DetectConfig(size=64, batch_size=3), progress=False)
""")


def test_killed_detect_resumes_identically(faces, tmp_path, one_torch_thread):
    vids = {"a_face": make_video(tmp_path / "a.mp4", 7, frames=faces["man"], size=(320, 180)),
            "b_face": make_video(tmp_path / "b.mp4", 9, frames=faces["woman"], size=(320, 180))}
    ws = _dataset(tmp_path / "killed", vids)
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(ws.root)], cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert is_complete(ws.faces, "a_face") and not is_complete(ws.faces, "b_face")
    summary = run_detect(ws, DetectConfig(size=64, batch_size=3), progress=False)
    assert [r.skipped for r in summary.results] == [True, False]

    ref = _dataset(tmp_path / "clean", vids)
    run_detect(ref, DetectConfig(size=64, batch_size=3), progress=False)
    for store in ("faces", "audio"):
        a, b = zarr.open_group(str(getattr(ws, store)), mode="r"), zarr.open_group(str(getattr(ref, store)), mode="r")
        for name in vids:
            assert a[name].attrs.asdict()["complete"]
            assert a[name].attrs["identity" if store == "faces" else "sample_rate"] == \
                b[name].attrs["identity" if store == "faces" else "sample_rate"]
            for arr in a[name].array_keys():
                np.testing.assert_array_equal(a[name][arr][...], b[name][arr][...], err_msg=f"{store}/{name}/{arr}")


def test_detect_warns_about_a_truncated_file(tmp_path, caplog):
    full = make_video(tmp_path / "cut.mp4", 40, size=(64, 48), faststart=True)
    full.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.7)])
    ws = _dataset(tmp_path, {"cut": full, "good": make_video(tmp_path / "good.mp4", 4, size=(96, 64))})
    with caplog.at_level(logging.WARNING, logger="afwpipe.detect"):
        summary = run_detect(ws, DetectConfig(size=32, batch_size=8), progress=False)
    assert not summary.failures and is_complete(ws.faces, "cut")  # a warning, not a failure
    n = _group(ws, "faces", "cut")["present"].shape[0]
    msgs = [r.getMessage() for r in caplog.records if r.name == "afwpipe.detect"]
    (msg,) = msgs
    path, text = msg.split(": ", 1)
    assert Path(path).resolve() == (tmp_path / "ds" / "videos" / "cut.mp4").resolve()
    assert text == (f"decoded {n} frames ({n / 25:.2f} s) but the container declares 40 (1.60 s): "
                    "the file is probably truncated") and n < 39
