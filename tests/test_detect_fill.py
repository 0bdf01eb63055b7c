"""Faceless frames are filled on the stream, before the writer: every crop row is written once."""

import numpy as np
import pytest
import zarr

from afwpipe.detect import DetectConfig, FaceWorker, fill_runs
from afwpipe.faces import DETECTORS, Detections, DetectorConfig, FaceDetector, register_detector, template
from afwpipe.fill import NearestFill
from afwpipe.index import build_index
from afwpipe.manifest import DatasetSpec
from afwpipe.store import Workspace

from synth import make_video


def _reference(crops: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The fill of a whole video at once with ``fill_runs`` (the rule's plan, computed independently)."""
    out = crops.copy()
    for a, b, src in fill_runs(present):
        out[a:b] = crops[src]
    return out


@pytest.mark.parametrize("seed", range(12))
def test_streamed_fill_equals_the_whole_video_fill(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    present = rng.random(n) < rng.choice([0.0, 0.1, 0.5, 0.9])
    crops = rng.integers(0, 255, (n, 2, 2, 3), np.uint8)
    written = []
    fill = NearestFill(written.append, hold=int(rng.integers(0, 80)))
    cuts = np.sort(rng.choice(np.arange(1, n), size=min(n - 1, int(rng.integers(0, 8))), replace=False)) if n > 1 else []
    for block in np.split(np.arange(n), cuts):
        fill.push(crops[block], present[block])
    complete = fill.finish()
    got = np.concatenate(written) if written else np.zeros((0, 2, 2, 3), np.uint8)
    if not complete:  # no face at all and more placeholders than held: the caller writes them
        assert not present.any() and fill.hold < n and len(got) == 0
        return
    assert len(got) == n  # each frame written exactly once
    assert (got == _reference(crops, present)).all()


class ScheduleDetector(FaceDetector):
    """A face wherever the frame is bright (mean > 100): a fixed upright face in the frame's centre."""

    default_cfg = DetectorConfig(name="test_schedule", weights="none", source="tests/test_detect_fill.py")

    def __init__(self, weights=None, device="cpu", **kw):
        self.cfg, self.device = self.default_cfg.replace(**kw), device

    def _detect(self, frames):
        h, w = frames.shape[1:3]
        lm = template(min(h, w)) + np.array([(w - min(h, w)) / 2, (h - min(h, w)) / 2], np.float32)
        box = np.array([[lm[:, 0].min() - 8, lm[:, 1].min() - 8, lm[:, 0].max() + 8, lm[:, 1].max() + 8]], np.float32)
        return [Detections(box, lm[None], np.ones(1, np.float32)) if f.mean() > 100 else Detections.empty()
                for f in frames]


@pytest.fixture
def schedule_detector():
    if not DETECTORS.is_registered("test_schedule"):
        register_detector("test_schedule", default_cfg=ScheduleDetector.default_cfg)(ScheduleDetector)
    return "test_schedule"


def test_faceless_runs_are_filled_without_rewriting_written_rows(tmp_path, monkeypatch, schedule_detector):
    present = np.zeros(40, bool)
    present[[5, 6, 12, 13, 14, 30]] = True  # leading, inner (odd and even) and trailing faceless runs
    rng = np.random.default_rng(0)
    frames = np.where(present[:, None, None, None], 200, 20).astype(np.uint8) + rng.integers(0, 40, (40, 64, 96, 3),
                                                                                              np.uint8)
    root = tmp_path / "ds"
    make_video(root / "videos" / "clip.mp4", 40, size=(96, 64), frames=frames, audio=False)
    ws = Workspace(tmp_path / "work")
    build_index(DatasetSpec(name="t", root=root, video_dirs=(root / "videos",), annotations=root / "ann", folds_k=0),
                ws, progress=False)

    writes = []  # (array path, first row, stop row) of every write
    setitem = zarr.Array.__setitem__

    def record(self, key, value):
        k = key[0] if isinstance(key, tuple) else key
        if isinstance(k, slice):
            start, stop, _ = k.indices(self.shape[0])
        else:
            rows = np.atleast_1d(np.arange(self.shape[0])[k])
            start, stop = int(rows.min()), int(rows.max()) + 1
        writes.append((self.path, start, stop))
        return setitem(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", record)
    worker = FaceWorker(ws, DetectConfig(detector=schedule_detector, size=16, batch_size=4, device="cpu",
                                                crop_codec="zstd"), progress=False)  # lossless: exact fill check
    worker.run_video(ws.read_index().records[0])
    monkeypatch.setattr(zarr.Array, "__setitem__", setitem)

    rows = np.zeros(40, int)
    for path, a, b in writes:
        if path.endswith("crops"):
            rows[a:b] += 1
    assert (rows == 1).all(), f"crop rows written more than once: {np.flatnonzero(rows != 1).tolist()}"
    g = zarr.open_group(str(ws.faces), mode="r")["clip"]
    assert (g["present"][...] == present).all()
    crops = g["crops"][...]
    assert (crops == _reference(crops, present)).all()
    assert not (crops[12] == crops[6]).all()  # the faces differ, so the fill's source is checked


def test_faceless_video_longer_than_the_hold_gets_its_placeholders_again(tmp_path, monkeypatch, schedule_detector):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 60, (10, 48, 64, 3), np.uint8)  # dark: no face anywhere
    root = tmp_path / "ds"
    make_video(root / "videos" / "clip.mp4", 10, size=(64, 48), frames=frames, audio=False)
    crops = {}
    for hold in (100, 3):
        import afwpipe.detect as detect_module

        monkeypatch.setattr(detect_module, "NearestFill", lambda write, hold_=None, _h=hold, **kw: NearestFill(write, _h))
        ws = Workspace(tmp_path / f"work{hold}")
        build_index(DatasetSpec(name="t", root=root, video_dirs=(root / "videos",), annotations=root / "a", folds_k=0),
                    ws, progress=False)
        worker = FaceWorker(ws, DetectConfig(detector=schedule_detector, size=16, batch_size=4, device="cpu",
                                             crop_codec="zstd"), progress=False)
        res = worker.run_video(ws.read_index().records[0])
        assert res.present == 0
        crops[hold] = zarr.open_group(str(ws.faces), mode="r")["clip"]["crops"][...]
    assert crops[100].any() and (crops[3] == crops[100]).all()  # centre crops either way
