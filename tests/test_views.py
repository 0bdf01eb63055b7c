"""Cached views (afwpipe.views): extract encodes each crop block once per view (checked against encoding
mirrored / PIL-cropped-and-resized crops ourselves), reads the crops once per block for all views; train's
``view: mean`` reads the average of the stored arrays; predict's TTA is the mean of per-view predictions;
bad view names, audio encoders with views, missing views and TTA without views are clear errors."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import zarr
from PIL import Image

from afwpipe import store
from afwpipe.clips.stats import feature_stats
from afwpipe.encoders import create_encoder
from afwpipe.errors import EncoderError, PredictError, TrainError
from afwpipe.extract import ExtractConfig, run_extract
from afwpipe.inference import checkpoint_stats, load_model
from afwpipe.predict import PredictConfig, predict_model, run_predict, tta_views
from afwpipe.readers import ZarrFeatures, read_prediction, read_predictions_index
from afwpipe.train import TrainConfig, train
from afwpipe.views import apply_view, parse_views

from test_clips import make_workspace
from test_extract import _fake_face_stage

VIEWS = ["full", "flip", "crop0.8", "crop0.6"]
N_FRAMES, SIZE = 16, 64


# -- extract ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """mini_xception on a 16-frame synthetic face store (random, so nothing is mirror-symmetric), 4 views."""
    ws = _fake_face_stage(tmp_path_factory.mktemp("views") / "w", {"v": (N_FRAMES, None, None)}, size=SIZE)
    summary = run_extract(ws, ExtractConfig("mini_xception", views=",".join(VIEWS), batch_size=16), progress=False)
    assert not summary.failures
    crops = zarr.open_group(str(ws.faces), mode="r")["v/crops"][...]
    return ws, crops, zarr.open_group(str(ws.features("mini_xception")), mode="r")["v"]


@functools.lru_cache(maxsize=1)
def _encoder():
    return create_encoder("mini_xception")


def _encode(crops: np.ndarray) -> np.ndarray:
    return _encoder().encode_crops(crops).astype(np.float16).astype(np.float32)


def _pil_centre_crop(crops: np.ndarray, scale: float) -> np.ndarray:
    """Independent reference: PIL crop box of the centre ``round(scale * S)`` square, PIL bilinear resize."""
    s = crops.shape[1]
    side = int(round(scale * s))
    left = (s - side) // 2
    return np.stack([np.asarray(Image.fromarray(c).crop((left, left, left + side, left + side))
                                .resize((s, s), Image.BILINEAR)) for c in crops])


def test_flip_view_equals_encoding_the_mirrored_crops(extracted):
    _, crops, g = extracted
    assert g.attrs["views"] == VIEWS and g.attrs["encoder_config"]["views"] == VIEWS
    flip = g["emb_flip"][...].astype(np.float32)
    assert flip.shape == (N_FRAMES, 135) and g["emb_flip"].dtype == np.float16
    np.testing.assert_allclose(flip, _encode(np.flip(crops, axis=2).copy()), atol=2e-3, rtol=2e-3)
    assert np.abs(flip - g["emb"][...].astype(np.float32)).max() > 0.05  # the mirror is a different view
    np.testing.assert_allclose(g["emb"][...].astype(np.float32), _encode(crops), atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("scale", [0.8, 0.6])
def test_crop_views_equal_encoding_centre_cropped_and_resized_crops(extracted, scale):
    _, crops, g = extracted
    ref = _pil_centre_crop(crops, scale)
    assert np.abs(apply_view(crops, f"crop{scale}").astype(int) - ref).max() <= 1
    got = g[f"emb_crop{scale}"][...].astype(np.float32)
    np.testing.assert_allclose(got, _encode(ref), atol=5e-3, rtol=5e-3)
    other = 0.6 if scale == 0.8 else 0.8
    assert np.abs(got - _encode(_pil_centre_crop(crops, other))).max() > 0.05  # the scale matters


def test_crops_are_read_once_per_block_for_all_views(tmp_path, monkeypatch):
    reads = []
    get = zarr.Array.__getitem__

    def counting(self, sel):
        if self.path.endswith("crops"):
            reads.append(self.path)
        return get(self, sel)

    monkeypatch.setattr(zarr.Array, "__getitem__", counting)
    ws = _fake_face_stage(tmp_path / "w", {"v": (8, None, None)}, size=32)
    counts = {}
    for name, views in (("one", "full"), ("four", ",".join(VIEWS))):
        reads.clear()
        assert not run_extract(ws, ExtractConfig("mini_xception", views=views, batch_size=8),
                               progress=False).failures
        counts[name] = len(reads)
    assert counts["one"] >= 1 and counts["four"] == counts["one"], counts


def test_rerun_with_another_view_list_redoes_the_video(extracted):
    ws = extracted[0]
    again = run_extract(ws, ExtractConfig("mini_xception", views=",".join(VIEWS), batch_size=16), progress=False)
    assert all(r.skipped for r in again.results)
    fewer = run_extract(ws, ExtractConfig("mini_xception", views="full,flip", batch_size=16), progress=False)
    assert not any(r.skipped for r in fewer.results)
    g = zarr.open_group(str(ws.features("mini_xception")), mode="r")["v"]
    assert g.attrs["views"] == ["full", "flip"]


def test_bad_view_names_and_audio_encoders_with_views_are_errors(tmp_path):
    for bad in ("flop", "crop1.5", "crop0", "crop"):
        with pytest.raises(EncoderError, match=f"unknown view '{bad}'; views: full"):
            ExtractConfig("mini_xception", views=f"full,{bad}")
    assert parse_views("flip, crop0.8,flip") == ["full", "flip", "crop0.8"]
    with pytest.raises(TrainError, match="unknown view 'side'"):
        TrainConfig(view="side")
    ws = _fake_face_stage(tmp_path / "w", {"v": (4, None, 0.2)}, size=32)
    with pytest.raises(EncoderError, match="logmel: view flip is a view of face crops and needs a visual encoder; "
                                           "logmel is audio"):
        run_extract(ws, ExtractConfig("logmel", views="full,flip"), progress=False)
    assert not ws.features("logmel").exists()
    # params extract.views name the visual encoders' views: an audio encoder keeps [full]
    assert ExtractConfig.from_params({"views": ["full", "flip"]}, encoder="logmel").views == ["full"]
    assert ExtractConfig.from_params({"views": ["full", "flip"]}, encoder="mae").views == ["full", "flip"]


# -- train and predict on synthetic features with stored views ------------------------------------------
STORED = ["full", "flip", "crop0.8"]
TCN = dict(channels=16, mlp_dim=32, dilations=(1, 2), dropout=0.1)


def store_views(ws, enc: str, views: list[str], seed: int) -> None:
    """Give every video of ``features/<enc>.zarr`` the arrays ``emb_<view>`` of ``views[1:]`` (``views[0]`` is
    ``full``): the full features plus noise and an offset of 0.5 per view, and the ``views`` attribute."""
    root = store.open_store(ws.features(enc), "a")
    rng = np.random.default_rng(seed)
    for name in root.group_keys():
        g = root[name]
        emb = g["emb"][...].astype(np.float32)
        for i, v in enumerate(views[1:]):
            store.write_time_array(g, f"emb_{v}", (emb + 0.5 * (i + 1) + 0.3 * rng.normal(size=emb.shape))
                                   .astype(np.float16))
        g.attrs["views"] = list(views)


@pytest.fixture(scope="module")
def view_ws(tmp_path_factory):
    """The planted-signal workspace of test_clips, whose visual encoder ``vis`` also stores ``emb_flip`` and
    ``emb_crop0.8`` (the full features plus different noise and offsets)."""
    ws = make_workspace(tmp_path_factory.mktemp("train_views"), n_videos=6, n_frames=64, n_val=2)
    store_views(ws, "vis", STORED, seed=1)
    return ws


def _train(ws, view="full"):
    return train(ws, TrainConfig(task="au", head="tcn", features=["vis", "aud"], k=32, epochs=2, patience=0,
                                 lr=3e-3, batch_size=8, head_kwargs=TCN, device="cpu", view=view), progress=False)


def test_view_mean_reads_the_average_of_the_stored_arrays(view_ws):
    g = zarr.open_group(str(view_ws.features("vis")), mode="r")["v0"]
    direct = np.mean([g[k][...].astype(np.float32) for k in ("emb", "emb_flip", "emb_crop0.8")], axis=0)
    feats = ZarrFeatures(view_ws, ["vis", "aud"], view="mean")
    emb, present = feats.load("vis", "v0")
    np.testing.assert_allclose(emb, direct, rtol=1e-6)
    assert np.array_equal(present, g["present"][...])
    aud = zarr.open_group(str(view_ws.features("aud")), mode="r")["v0/emb"][...]
    assert np.array_equal(feats.load("aud", "v0")[0], aud)  # audio encoders give emb whatever the view
    assert np.array_equal(ZarrFeatures(view_ws, ["vis"], view="flip").load("vis", "v0")[0], g["emb_flip"][...])

    result = _train(view_ws, "mean")
    _, ckpt = load_model(result.model_dir / "model.pt")
    assert ckpt.config["view"] == "mean"
    root = zarr.open_group(str(view_ws.features("vis")), mode="r")
    videos = [{"vis": (np.mean([root[n][k][...].astype(np.float32) for k in ("emb", "emb_flip", "emb_crop0.8")],
                               axis=0), root[n]["present"][...])} for n in ckpt.train_videos]
    mean, std = feature_stats(videos, ["vis"])["vis"]
    got_mean, got_std = checkpoint_stats(ckpt)["vis"]
    np.testing.assert_allclose(got_mean, mean, rtol=1e-5)  # standardised with the averaged view's statistics
    np.testing.assert_allclose(got_std, std, rtol=1e-5)


def test_a_view_not_stored_is_a_train_error_naming_encoder_and_extract(view_ws):
    with pytest.raises(TrainError, match=r"encoder 'vis' has views full, flip, crop0.8; view 'crop0.6' needs "
                                         r"crop0.6 \(run `afwpipe extract --encoder vis --views"):
        _train(view_ws, "crop0.6")


def test_tta_is_the_mean_of_per_view_predictions(view_ws):
    result = _train(view_ws)
    run_predict(view_ws, PredictConfig(head="tcn", tasks=["au"], folds=["official"], device="cpu", tta=True),
                progress=False)
    (rec,) = read_predictions_index(view_ws)
    assert rec["tta"] == STORED and rec["view"] == "full"
    model, ckpt = load_model(result.model_dir / "model.pt")
    per_view = [predict_model(view_ws, model, ckpt, rec["videos"], view=v) for v in STORED]
    for name in rec["videos"]:
        got = read_prediction(view_ws, rec["name"], name)["au"]
        np.testing.assert_allclose(got, np.mean([p[name]["au"] for p in per_view], axis=0), atol=1e-6)
        assert np.abs(got - per_view[0][name]["au"]).max() > 1e-3  # TTA changed the full-view output
    run_predict(view_ws, PredictConfig(head="tcn", tasks=["au"], folds=["official"], device="cpu"), progress=False)
    (rec,) = read_predictions_index(view_ws)
    assert rec["tta"] is None
    name = rec["videos"][0]
    np.testing.assert_allclose(read_prediction(view_ws, rec["name"], name)["au"], per_view[0][name]["au"], atol=1e-6)
    assert json.loads(view_ws.predictions_index.read_text())["models"][0]["view"] == "full"


def test_tta_without_stored_views_is_a_predict_error(tmp_path):
    ws = make_workspace(tmp_path, n_videos=3, n_frames=40, n_val=1)
    with pytest.raises(PredictError, match=r"m: predict.tta needs two or more views .*vis: full.*--views"):
        tta_views(ZarrFeatures(ws, ["vis", "aud"]), ["v0"], "m")
