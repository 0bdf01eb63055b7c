"""Memory stays inside its budget (issue 20, point 5): the whole-video cache counts the bytes it actually
holds (float32 for view ``mean``), training and validation share one budget, and predict reads through a
bounded cache and hands each video on as soon as it is done instead of keeping every evaluation video.

The held bytes are measured on the caches themselves (every ``LRUCache`` made in the run, summed after each
store), never computed with the code under test; the budgets are a few videos of a synthetic workspace."""

from __future__ import annotations

import numpy as np
import pytest

from afwpipe import store
from afwpipe.clips import ClipDataset, LRUCache
from afwpipe.clips import cache as cache_module
from afwpipe.inference import load_model
from afwpipe.predict import PredictConfig, run_predict
from afwpipe.readers import ZarrFeatures, load_labels
from afwpipe.train import TrainConfig, train
from test_clips import make_workspace

TCN = dict(channels=8, mlp_dim=8, dilations=(1,), dropout=0.0)


def _add_flip_view(ws, names):
    """Give every video of ``vis`` a second stored view (``emb_flip``, its features reversed in sign), as
    ``afwpipe extract --views full,flip`` stores it."""
    root = store.open_store(ws.features("vis"), "r+")
    for name in names:
        g = root[name]
        store.write_time_array(g, "emb_flip", -g["emb"][...])
        g.attrs["views"] = ["full", "flip"]


class Held:
    """Every LRUCache stored into since the last :meth:`reset`; :meth:`peak` is the most bytes they held
    together after any store (``nbytes`` of the arrays they keep)."""

    def __init__(self):
        self.caches, self.most = [], 0

    def reset(self):
        self.caches, self.most = [], 0

    def record(self, cache):
        if all(c is not cache for c in self.caches):
            self.caches.append(cache)
        self.most = max(self.most, sum(np.asarray(a).nbytes for c in self.caches for value, _ in c._items.values()
                                       for pair in value.values() for a in pair))

    def __call__(self) -> int:
        return self.most


@pytest.fixture
def held(monkeypatch):
    rec = Held()
    put = LRUCache.put

    def recording_put(self, key, value, pin=False):
        put(self, key, value, pin)
        rec.record(self)

    monkeypatch.setattr(cache_module.LRUCache, "put", recording_put)
    return rec


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("mem"), n_videos=8, n_frames=[300, 260, 340, 280, 320, 300, 290, 310],
                        n_val=2, k_folds=2)
    _add_flip_view(ws, [f"v{i}" for i in range(8)])
    return ws


def _one_video_bytes(ws, name="v2", view="full"):
    """Bytes of one video as the cache holds it: its arrays loaded by zarr directly (float32 for ``mean``)."""
    root = store.open_store(ws.features("vis"), "r")
    vis = root[name]["emb"][...]
    if view == "mean":
        vis = (vis.astype(np.float32) + root[name]["emb_flip"][...].astype(np.float32)) / 2
    aud = store.open_store(ws.features("aud"), "r")[name]["emb"][...]
    return vis.nbytes + aud.nbytes + 2 * len(vis)


def test_the_cache_holds_no_more_than_its_budget_with_the_float32_mean_view(ws, held):
    names = [f"v{i}" for i in range(8)]
    budget = int(2.5 * _one_video_bytes(ws, view="mean"))
    ds = ClipDataset(ZarrFeatures(ws, ["vis", "aud"], view="mean"), load_labels(ws, names), names, k=16,
                     stride=8, cache_bytes=budget)
    v = ds.video(0)
    assert v["vis"][0].dtype == np.float32  # the view the cache holds
    for _ in ds.batches(4, shuffle=True, rng=np.random.default_rng(0)):
        pass
    assert held() <= budget, f"held {held()} B > budget {budget} B"


def test_training_and_validation_share_one_budget(ws, held, tmp_path):
    budget_gb = 2.5 * _one_video_bytes(ws) / (1 << 30)
    train(ws, TrainConfig(task="au", head="tcn", fold="official", features=["vis", "aud"], k=16, epochs=2,
                          patience=0, batch_size=4, head_kwargs=TCN, device="cpu", cache_gb=budget_gb),
          progress=False, out_dir=tmp_path / "m")
    assert 0 < held() <= int(budget_gb * (1 << 30)), f"held {held()} B > budget {int(budget_gb * (1 << 30))} B"


def test_predict_reads_through_its_budget(ws, held, tmp_path):
    budget_gb = 2.5 * _one_video_bytes(ws) / (1 << 30)
    train(ws, TrainConfig(task="au", head="tcn", fold=0, features=["vis", "aud"], k=16, epochs=1, patience=0,
                          batch_size=4, head_kwargs=TCN, device="cpu"), progress=False)
    held.reset()
    run_predict(ws, PredictConfig(head="tcn", tasks=["au"], folds=[0], device="cpu", cache_gb=budget_gb),
                progress=False)
    assert 0 < held() <= int(budget_gb * (1 << 30)), f"held {held()} B > budget {int(budget_gb * (1 << 30))} B"


def test_predict_hands_on_each_video_before_reading_the_last_one(ws):
    """Outputs stream per video: when the first video is yielded, later videos are not read yet (so their
    outputs are not held either)."""
    from afwpipe.inference import iter_frames

    train(ws, TrainConfig(task="au", head="tcn", fold=1, features=["vis", "aud"], k=16, epochs=1, patience=0,
                          batch_size=4, head_kwargs=TCN, device="cpu"), progress=False)
    head, ckpt = load_model(ws.models / "au-tcn-1" / "model.pt")
    names = [f"v{i}" for i in range(8)]
    features = ZarrFeatures(ws, ["vis", "aud"])
    ds = ClipDataset(features, load_labels(ws, names), names, k=16, stride=16, training=False,
                     cache_bytes=int(2.5 * _one_video_bytes(ws)))
    seen = []
    for name, out in iter_frames(head, ds, "cpu", 4):
        seen.append((name, features.reads))
        assert out["au"].shape == (ds.n_frames[names.index(name)], 12)
    assert [n for n, _ in seen] == names
    assert seen[0][1] < features.reads  # the first video came out before every video was read
