"""``ZarrFeatures`` (tensorstore reads) against zarr-python's reads of the same stores, the float16 exponent test
of the finite check against ``np.isfinite`` over every float16 bit pattern, and the errors of damaged arrays."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from afwpipe import store
from afwpipe.clips.dataset import nonfinite_rows
from afwpipe.errors import TrainError
from afwpipe.readers import READ_COPY_THREADS, READ_IO_THREADS, ZarrFeatures, read_context


def _video(ws: store.Workspace, enc: str, name: str, arrays: dict, layout: dict, attrs: dict | None = None) -> None:
    """A complete video group whose arrays are written by zarr-python with the given chunks/shards/codecs
    (``layout``: array -> create_array keywords); arrays absent from ``arrays`` are not written."""
    g = store.begin_video(ws.features(enc), name, {"encoder": enc, "dim": 8, "weights": "w", **(attrs or {})})
    for key, data in arrays.items():
        a = g.create_array(key, shape=data.shape, dtype=data.dtype, **layout[key])
        a[...] = data
    store.mark_complete(g)


def _bits(x: np.ndarray) -> np.ndarray:
    return x.view(np.dtype(f"u{x.dtype.itemsize}"))


def _zarr(ws: store.Workspace, enc: str, name: str, key: str) -> np.ndarray:
    """The independent reference: zarr-python's read of the whole array."""
    return zarr.open_group(str(ws.features(enc)), mode="r")[name][key][:]


LAYOUTS = {
    # several shards, several inner chunks per shard, a partial last chunk; present zstd-coded (today's layout)
    "sharded": {"emb": {"chunks": (7, 8), "shards": (21, 8), "compressors": None, "fill_value": 0},
                "present": {"chunks": (50,), "shards": (50,), "fill_value": False}},
    # one chunk per array, no shards, no codec
    "single": {"emb": {"chunks": (50, 8), "compressors": None, "fill_value": 0},
               "present": {"chunks": (50,), "compressors": None, "fill_value": False}},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_load_is_bit_identical_to_zarr_python_for_emb_and_present(tmp_path, layout):
    ws = store.Workspace(tmp_path)
    rng = np.random.default_rng(0)
    emb = (rng.normal(size=(50, 8)) * 1e3).astype(np.float16)
    emb[3, 1], emb[4, 2], emb[5, 3], emb[6, 4] = np.nan, np.inf, -0.0, np.float16(6e-8)  # NaN, Inf, -0, subnormal
    present = rng.random(50) > 0.3
    _video(ws, "vis", "a", {"emb": emb, "present": present}, LAYOUTS[layout])
    _video(ws, "vis", "b", {"emb": emb[:0], "present": present[:0]}, LAYOUTS["single"] | {
        "emb": {"chunks": (1, 8), "compressors": None, "fill_value": 0},
        "present": {"chunks": (1,), "compressors": None, "fill_value": False}})  # a video without frames
    _video(ws, "vis", "c", {"emb": emb[:30]}, LAYOUTS[layout])  # no present array: every frame present
    f = ZarrFeatures(ws, ["vis"])
    for name in ("a", "b", "c"):
        got_emb, got_present = f.load("vis", name)
        ref = _zarr(ws, "vis", name, "emb")
        assert got_emb.dtype == ref.dtype == np.float16 and got_emb.shape == ref.shape
        assert np.array_equal(_bits(got_emb), _bits(ref))
        assert got_present.dtype == bool
        if name == "c":
            assert got_present.shape == (30,) and got_present.all()
        else:
            assert np.array_equal(got_present, _zarr(ws, "vis", name, "present"))
        assert f.shape("vis", name) == ref.shape
        assert f.nbytes("vis", name) == ref.nbytes + len(ref)
    assert f.reads == 5  # a, b: emb + present; c: emb


def test_a_missing_shard_reads_as_the_fill_value_as_in_zarr_python(tmp_path):
    ws = store.Workspace(tmp_path)
    emb = np.arange(50 * 8, dtype=np.float16).reshape(50, 8) + 1
    _video(ws, "vis", "a", {"emb": emb, "present": np.ones(50, bool)}, LAYOUTS["sharded"])
    (ws.features("vis") / "a" / "emb" / "c" / "1" / "0").unlink()  # rows 21-41: never written
    got = ZarrFeatures(ws, ["vis"]).load("vis", "a")[0]
    ref = _zarr(ws, "vis", "a", "emb")
    assert np.array_equal(_bits(got), _bits(ref))
    assert (ref[21:42] == 0).all() and (ref[:21] == emb[:21]).all()


def test_views_and_their_float32_mean_match_zarr_python(tmp_path):
    ws = store.Workspace(tmp_path)
    rng = np.random.default_rng(1)
    views = {"emb": rng.normal(size=(40, 8)), "emb_flip": rng.normal(size=(40, 8)), "emb_crop0.8": rng.normal(size=(40, 8))}
    views = {k: v.astype(np.float16) for k, v in views.items()}
    layout = {k: LAYOUTS["sharded"]["emb"] for k in views} | {"present": LAYOUTS["sharded"]["present"]}
    _video(ws, "vis", "a", {**views, "present": np.ones(40, bool)}, layout,
           {"modality": "visual", "views": ["full", "flip", "crop0.8"]})
    ref = {k: _zarr(ws, "vis", "a", k) for k in views}
    flip = ZarrFeatures(ws, ["vis"], view="flip").load("vis", "a")[0]
    assert np.array_equal(_bits(flip), _bits(ref["emb_flip"]))
    mean = ZarrFeatures(ws, ["vis"], view="mean").load("vis", "a")[0]
    expected = np.stack([ref[k].astype(np.float32) for k in ("emb", "emb_flip", "emb_crop0.8")]).mean(axis=0)
    assert mean.dtype == np.float32
    np.testing.assert_allclose(mean, expected, rtol=1e-6, atol=1e-7)


def test_a_shard_cut_short_raises_a_train_error_naming_the_array(tmp_path):
    ws = store.Workspace(tmp_path)
    _video(ws, "vis", "a", {"emb": np.ones((50, 8), np.float16), "present": np.ones(50, bool)}, LAYOUTS["sharded"])
    shard = ws.features("vis") / "a" / "emb" / "c" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(TrainError, match=r"vis\.zarr/a/emb: cannot read this Zarr array .*re-extract"):
        ZarrFeatures(ws, ["vis"]).load("vis", "a")


def test_damaged_array_metadata_raises_a_train_error_naming_the_array(tmp_path):
    ws = store.Workspace(tmp_path)
    _video(ws, "vis", "a", {"emb": np.ones((50, 8), np.float16), "present": np.ones(50, bool)}, LAYOUTS["single"])
    (ws.features("vis") / "a" / "present" / "zarr.json").write_text("{not json")
    with pytest.raises(TrainError, match=r"vis\.zarr/a/present: cannot open this Zarr array"):
        ZarrFeatures(ws, ["vis"]).shape("vis", "a")


def test_reads_use_one_context_with_the_documented_thread_limits(tmp_path):
    ws = store.Workspace(tmp_path)
    for name in ("a", "b"):
        _video(ws, "vis", name, {"emb": np.ones((50, 8), np.float16), "present": np.ones(50, bool)}, LAYOUTS["single"])
    f = ZarrFeatures(ws, ["vis"])
    f.shape("vis", "a"), f.shape("vis", "b")
    for handle in (*f._handles("vis", "a"), *f._handles("vis", "b")):
        resources = handle.spec(retain_context=True).to_json()["context"]
        assert resources["data_copy_concurrency"] == {"limit": READ_COPY_THREADS} == {"limit": 1}
        assert resources["file_io_concurrency"] == {"limit": READ_IO_THREADS}
        assert resources["cache_pool"].get("total_bytes_limit", 0) == 0
    assert read_context() is read_context()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_nonfinite_rows_bit_test_agrees_with_isfinite(dtype):
    if dtype == np.float16:  # every float16 bit pattern, one per row
        x = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(-1, 1)
    else:
        info = np.finfo(dtype)
        specials = [0.0, -0.0, info.max, -info.max, info.tiny, info.smallest_subnormal, np.inf, -np.inf, np.nan,
                    -np.nan, 1.0]
        x = np.array(specials, dtype=dtype).reshape(-1, 1)
    bad = nonfinite_rows(np.repeat(x, 3, axis=1))
    expected = ~np.isfinite(x[:, 0])
    assert bad is not None and np.array_equal(bad, expected)
    assert nonfinite_rows(np.repeat(x[~expected], 3, axis=1)) is None
