"""Clip dataset over feature stores: cutting, padding, masks, whole-video reads, the LRU cache,
standardisation from the training split, and every bad input (missing store, length mismatch, NaN/Inf)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from synth import complete_index
from afwpipe import store
from afwpipe.clips import ClipDataset, LRUCache, clip_starts
from afwpipe.readers import ArrayFeatures, ZarrFeatures, load_labels
from afwpipe.errors import TrainError

LATENT = 4
DIMS = {"vis": 8, "aud": 4}
MODALITY = {"vis": "visual", "aud": "audio"}


def write_features(ws: store.Workspace, enc: str, name: str, emb: np.ndarray, present: np.ndarray,
                   weights: str | None = None) -> None:
    """One complete video group of ``features/<enc>.zarr`` as the extract stage writes it."""
    g = store.begin_video(ws.features(enc), name, {"encoder": enc, "modality": MODALITY.get(enc, "visual"),
                                                    "dim": int(emb.shape[1]), "weights": weights or f"sha256:{enc}-test",
                                                    "video": f"videos/{name}.mp4"})
    store.write_time_array(g, "emb", emb.astype(np.float16))
    store.write_time_array(g, "present", present.astype(bool))
    store.mark_complete(g)


def make_workspace(root, n_videos: int = 10, n_frames=200, n_val: int = 3, k_folds: int = 2, seed: int = 0,
                   noise: float = 0.1, scenes: dict | None = None) -> store.Workspace:
    """A workspace with a planted signal: labels are functions of a slowly varying latent that both
    encoders' features carry (with noise). Videos ``v0…``: the last ``n_val`` are split ``val``, the others
    ``train``; fold = i % k_folds. ``n_frames``: an int or one per video. Frames 5..9 of ``vis`` have no face
    (filled from the next frame), frames 0..4 of ``aud`` have no audio (zeros)."""
    rng = np.random.default_rng(seed)
    ws = store.Workspace(root)
    ws.root.mkdir(parents=True, exist_ok=True)
    mix = {e: rng.normal(size=(LATENT, d)) for e, d in DIMS.items()}
    w_au, w_va = rng.normal(size=(LATENT, 12)), rng.normal(size=(LATENT, 2))
    w_expr = np.hstack([np.eye(LATENT), -np.eye(LATENT)])  # class = largest |latent| and its sign
    lab_root = store.open_store(ws.labels, "w")
    lengths = [n_frames] * n_videos if isinstance(n_frames, int) else list(n_frames)
    records = []
    for i, t in enumerate(lengths):
        name = f"v{i}"
        z = gaussian_filter1d(rng.normal(size=(t, LATENT)), 3, axis=0)
        z /= z.std(axis=0)
        for enc, m in mix.items():
            emb = z @ m + noise * rng.normal(size=(t, m.shape[1])) + 3.0  # offset: standardisation matters
            present = np.ones(t, bool)
            if enc == "vis":
                present[5:10] = False
                emb[5:10] = emb[10]
            else:
                present[:5] = False
                emb[:5] = 0.0
            write_features(ws, enc, name, emb, present)
        au = (z @ w_au > 0).astype(np.int8)
        expr = np.argmax(z @ w_expr, axis=1).astype(np.int8)
        va = np.tanh(0.5 * z @ w_va).astype(np.float32)
        au[:10] = -1
        expr[10:20] = -1
        va[20:30] = -5.0
        g = lab_root.create_group(name)
        for task, lab in (("au", au), ("expr", expr), ("va", va)):
            store.write_time_array(g, task, lab)
        split = "val" if i >= n_videos - n_val else "train"
        records.append({"name": name, "video": name, "split": split,
                        "splits": dict.fromkeys(("au", "expr", "va"), split), "fold": i % k_folds, "n_frames": t,
                        "labelled": {"au": t - 10, "expr": t - 10, "va": t - 10}})
    index = {"dataset": "synthetic", "folds": {"k": k_folds, "seed": 0}, "scenes": scenes or {},
             "videos": records, "failures": [], "orphan_annotations": []}
    ws.index.write_text(json.dumps(complete_index(index)))
    return ws


def _dataset(ws, names=None, **kw):
    names = names or [r.name for r in ws.read_index().records]
    return ClipDataset(ZarrFeatures(ws, ["vis", "aud"]), load_labels(ws, names), names, **kw)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("clips"), n_videos=4, n_frames=[100, 130, 45, 100], n_val=1)


def test_clip_starts_cover_every_frame_and_stop_at_the_end():
    assert clip_starts(100, 100, 50) == [0]
    assert clip_starts(130, 100, 50) == [0, 50]
    assert clip_starts(45, 100, 50) == [0]
    assert clip_starts(250, 100, 100) == [0, 100, 200]
    for t, k, s in [(1, 5, 2), (17, 5, 2), (101, 10, 3), (99, 100, 100)]:
        starts = clip_starts(t, k, s)
        covered = np.zeros(t, bool)
        for st in starts:
            covered[st:st + k] = True
        assert covered.all() and starts[-1] + k >= t and (len(starts) == 1 or starts[-2] + k < t)


def test_default_stride_is_half_k_for_training_and_k_for_evaluation(ws):
    assert _dataset(ws, k=20).stride == 10
    assert _dataset(ws, k=20, training=False).stride == 20
    assert _dataset(ws, k=20, stride=7).stride == 7


def test_last_partial_clip_is_padded_with_a_mask_and_invalid_labels(ws):
    ds = _dataset(ws, ["v2"], k=100)  # 45 frames: one padded clip
    assert len(ds) == 1
    b = ds.batch([0])
    assert b["x"]["vis"].shape == (1, 100, 8) and b["x"]["vis"].dtype == torch.float32
    assert b["x"]["aud"].shape == (1, 100, 4)
    assert b["mask"][0, :45].all() and not b["mask"][0, 45:].any()
    assert (b["x"]["vis"][0, 45:] == 0).all()
    assert (b["labels"]["au"][0, 45:] == -1).all() and (b["labels"]["expr"][0, 45:] == -1).all()
    assert (b["labels"]["va"][0, 45:] == -5).all()
    for task in ("au", "expr", "va"):
        assert not b["valid"][task][0, 45:].any()
    # invalid labels of the store are invalid in the clip: AU 0..9, EXPR 10..19, VA 20..29
    assert not b["valid"]["au"][0, :10].any() and b["valid"]["au"][0, 10:45].all()
    assert not b["valid"]["expr"][0, 10:20].any() and b["valid"]["expr"][0, :10].all()
    assert not b["valid"]["va"][0, 20:30].any()
    # present masks: no face at 5..9, no audio at 0..4, padding not present
    assert not b["present"]["vis"][0, 5:10].any() and b["present"]["vis"][0, 10:45].all()
    assert not b["present"]["aud"][0, :5].any() and not b["present"]["aud"][0, 45:].any()


def test_clips_match_the_stored_arrays(ws):
    ds = _dataset(ws, ["v1"], k=100, stride=50)  # 130 frames: clips at 0 and 50 (padded to 150)
    assert ds.clips.tolist() == [[0, 0], [0, 50]]
    emb = store.read_array(ws.features("vis"), "v1", "emb").astype(np.float32)
    au = store.read_array(ws.labels, "v1", "au")
    b = ds.batch([1])
    assert int(b["start"][0]) == 50 and int(b["video"][0]) == 0
    np.testing.assert_array_equal(b["x"]["vis"][0, :80].numpy(), emb[50:130])
    np.testing.assert_array_equal(b["labels"]["au"][0, :80].numpy(), au[50:130])
    item = ds[1]
    assert item["x"]["vis"].shape == (100, 8) and item["mask"].shape == (100,)


def test_features_are_read_whole_once_per_video_and_array(ws):
    ds = _dataset(ws, k=10, stride=5)
    assert len(ds) > 40
    rng = np.random.default_rng(0)
    for _ in range(3):
        for _ in ds.batches(4, shuffle=True, rng=rng):
            pass
    # 4 videos x 2 encoders x (emb + present), whatever the number of clips and epochs
    assert ds.features.reads == 4 * 2 * 2
    assert ds.cache.misses == 4 and len(ds.cache) == 4
    (vis, _), _ = ds.video(1).values()
    assert vis.shape == (130, 8)  # the cache holds whole arrays, not clips


def test_bounded_cache_evicts_least_recently_used():
    c = LRUCache(max_bytes=250)
    arr = lambda: np.zeros(100, np.uint8)  # noqa: E731
    c.get("a", arr), c.get("b", arr)
    c.get("a", arr)  # a is now the most recent
    c.get("c", arr)  # evicts b
    assert "a" in c and "c" in c and "b" not in c and c.nbytes == 200
    assert c.get("big", lambda: np.zeros(1000, np.uint8)).size == 1000 and "big" not in c


def test_pinned_entries_stay_until_unpinned_and_fits_counts_only_pins():
    c = LRUCache(max_bytes=250)
    arr = lambda: np.zeros(100, np.uint8)  # noqa: E731
    c.put("a", arr(), pin=True)
    c.get("b", arr)
    assert c.fits(150) and not c.fits(151)  # b can be evicted, a cannot
    c.put("c", arr(), pin=True)  # evicts b, the least recent unpinned entry
    assert "b" not in c and c.nbytes == 200 and not c.fits(51)
    c.put("d", arr(), pin=True)  # over budget: pinned entries are never evicted
    assert c.nbytes == 300 and len(c) == 3
    c.unpin("a")
    assert "a" not in c and c.nbytes == 200  # unpinned and over budget: evicted at once
    c.unpin_all()
    c.get("e", arr)
    assert "c" not in c and c.nbytes == 200


def test_read_ahead_gives_the_plain_batches_within_the_cache_budget(ws):
    budget = 7000  # about two of the four videos' features: blocks of half of it, read ahead into the rest
    names = [r.name for r in ws.read_index().records]
    arrays = {e: {n: (store.read_array(ws.features(e), n, "emb"), store.read_array(ws.features(e), n, "present"))
                  for n in names} for e in ("vis", "aud")}
    plain = ClipDataset(ArrayFeatures(arrays), load_labels(ws, names), names, k=10, stride=5, cache_bytes=budget)
    ds = _dataset(ws, k=10, stride=5, cache_bytes=budget)
    assert ds.features.on_disk and not plain.features.on_disk
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    for epoch in range(2):
        reads = ds.features.reads
        n = 0
        for a, b in zip(plain.batches(4, shuffle=True, rng=rng_a), ds.batches(4, shuffle=True, rng=rng_b), strict=True):
            assert ds.cache.nbytes <= budget
            for e in ("vis", "aud"):
                assert torch.equal(a["x"][e], b["x"][e])
            assert torch.equal(a["video"], b["video"]) and torch.equal(a["start"], b["start"])
            n += len(b["video"])
        assert n == len(ds)
        assert ds.features.reads - reads <= 4 * 2 * 2  # each video (2 encoders x emb + present) at most once


def test_read_ahead_finishes_when_one_video_exceeds_the_cache(ws):
    ds = _dataset(ws, k=10, stride=5, cache_bytes=100)  # smaller than any video: each is loaded when needed
    assert sum(len(b["video"]) for b in ds.batches(4, shuffle=True, rng=np.random.default_rng(0))) == len(ds)
    assert ds.cache.nbytes == 0  # nothing stays pinned after the epoch


def test_block_shuffle_reads_each_video_once_per_epoch_when_the_cache_is_small(ws):
    budget = 7000  # about two of the four videos' features (130 frames x (8 + 4) x 2 B + present)
    ds = _dataset(ws, k=10, stride=5, cache_bytes=budget)
    assert sum(ds.video_bytes) > budget
    rng = np.random.default_rng(1)
    for _ in range(3):
        before = ds.cache.misses
        order = ds.order(shuffle=True, rng=rng)
        assert sorted(order.tolist()) == list(range(len(ds)))
        assert order.tolist() != list(range(len(ds)))
        for i in range(0, len(order), 4):
            ds.batch(order[i:i + 4])
        assert ds.cache.misses - before <= 4  # each video read at most once per epoch
        assert ds.cache.nbytes <= budget


def test_standardisation_uses_the_given_training_statistics(ws):
    train = _dataset(ws, ["v0", "v1", "v2"], k=50)
    stats = train.feature_stats()
    vis = np.concatenate([store.read_array(ws.features("vis"), n, "emb").astype(np.float64)[
        store.read_array(ws.features("vis"), n, "present")] for n in ["v0", "v1", "v2"]])  # present frames only
    np.testing.assert_allclose(stats["vis"][0], vis.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats["vis"][1], vis.std(axis=0), rtol=1e-4)
    every = _dataset(ws, k=50).feature_stats()
    assert not np.allclose(every["vis"][0], stats["vis"][0])  # the validation video would change them
    val = _dataset(ws, ["v3"], k=100, stats=stats)
    raw = store.read_array(ws.features("vis"), "v3", "emb").astype(np.float32)
    b = val.batch([0])
    np.testing.assert_allclose(b["x"]["vis"][0, 10:].numpy(), (raw[10:] - stats["vis"][0]) / stats["vis"][1],
                               rtol=1e-5, atol=1e-5)
    assert (b["x"]["aud"][0, :5] == 0).all()  # missing audio stays zero after standardisation


def test_encoder_without_store_lists_the_stores_that_exist(ws):
    with pytest.raises(TrainError, match=r"'whisper'.*stores that exist: aud, vis"):
        ZarrFeatures(ws, ["vis", "whisper"])


def test_features_of_different_lengths_name_encoder_video_and_lengths(tmp_path):
    ws = make_workspace(tmp_path, n_videos=2, n_frames=60, n_val=1)
    write_features(ws, "aud", "v1", np.zeros((58, 4)), np.ones(58, bool))
    with pytest.raises(TrainError, match=r"'v1'.*encoder 'aud' have 58 frames but encoder 'vis' has 60"):
        _dataset(ws, k=20)
    write_features(ws, "vis", "v1", np.zeros((58, 8)), np.ones(58, bool))
    with pytest.raises(TrainError, match=r"'v1'.*encoder 'vis' have 58 frames but its labels have 60"):
        _dataset(ws, k=20)


def test_identity_is_the_encoders_and_mixed_weights_are_an_error(tmp_path):
    ws = make_workspace(tmp_path, n_videos=2, n_frames=30, n_val=1)
    feats = ZarrFeatures(ws, ["vis", "aud"])
    ident = feats.identity("vis", ["v0", "v1"])
    assert ident["weights"] == "sha256:vis-test" and ident["dim"] == 8 and "video" not in ident
    write_features(ws, "vis", "v1", np.zeros((30, 8)), np.ones(30, bool), weights="random")
    with pytest.raises(TrainError, match=r"'v0' and 'v1' were extracted with different weights"):
        feats.identity("vis", ["v0", "v1"])


def test_incomplete_video_in_a_store_is_an_error(tmp_path):
    ws = make_workspace(tmp_path, n_videos=2, n_frames=30, n_val=1)
    store.begin_video(ws.features("aud"), "v0")  # a killed extract: not complete
    with pytest.raises(TrainError, match=r"no complete features of video 'v0'.*--encoder aud"):
        _dataset(ws, k=10)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_features_names_encoder_video_and_frame(tmp_path, bad):
    ws = make_workspace(tmp_path, n_videos=2, n_frames=40, n_val=1)
    emb = np.ones((40, 8))
    emb[17, 3] = bad
    write_features(ws, "vis", "v1", emb, np.ones(40, bool))
    ds = _dataset(ws, k=10)
    kind = "NaN" if np.isnan(bad) else "Inf"
    with pytest.raises(TrainError, match=rf"encoder 'vis', video 'v1': {kind} in the features at frame 17"):
        for _ in ds.batches(8):
            pass


def test_array_features_give_the_same_batches_as_zarr(ws):
    names = ["v0", "v1"]
    arrays = {e: {n: (store.read_array(ws.features(e), n, "emb"), store.read_array(ws.features(e), n, "present"))
                  for n in names} for e in ("vis", "aud")}
    a = ClipDataset(ArrayFeatures(arrays), load_labels(ws, names), names, k=30).batch([0, 3, 5])
    z = _dataset(ws, names, k=30).batch([0, 3, 5])
    for e in ("vis", "aud"):
        assert torch.equal(a["x"][e], z["x"][e])
    assert torch.equal(a["labels"]["va"], z["labels"]["va"])


def test_block_shuffle_leaves_room_in_the_cache_to_read_the_next_video_ahead(ws):
    budget = 7000  # about two of the four videos: a block of a shuffled epoch must leave room for the next video
    ds = _dataset(ws, k=10, stride=5, cache_bytes=budget)
    assert sum(ds.video_bytes) > budget and max(ds.video_bytes) <= budget * ds.read_ahead
    rng = np.random.default_rng(5)
    for _ in range(5):
        videos = ds.clips[ds.order(shuffle=True, rng=rng), 0].tolist()
        first = {v: videos.index(v) for v in set(videos)}
        last = {v: len(videos) - 1 - videos[::-1].index(v) for v in set(videos)}
        for i in range(len(videos)):  # the consumer is at clip i (batches of one clip)
            pinned = sum(ds.video_bytes[v] for v in first if first[v] <= i <= last[v])
            ahead = [v for v in sorted(first, key=first.get) if first[v] > i]
            if ahead:  # what ReadAhead loads next fits beside the pinned videos: it is read while i trains
                assert pinned + ds.video_bytes[ahead[0]] <= budget, (i, videos)
