"""Audio views (afwpipe.audio_views): seeded time / frequency crops and frequency masks of an encoder's log-Mel
input, cached by extract beside ``emb``, and read by a head as a separate feature block beside the global view
(``train.view: [full, <view>]``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from afwpipe.audio_views import BLOCK, apply_mel_view, view_rng
from afwpipe.encoders import create_encoder
from afwpipe.errors import EncoderError, PredictError, TrainError
from afwpipe.extract import ExtractConfig, run_extract
from afwpipe.inference import load_model
from afwpipe.predict import PredictConfig, predict_model, run_predict
from afwpipe.readers import ZarrFeatures
from afwpipe.train import TrainConfig, train

from test_clips import make_workspace
from test_extract import _fake_face_stage
from test_views import store_views


def _interp(x: np.ndarray, size: int) -> np.ndarray:
    """Linear resize of a 1-D signal to ``size`` samples with half-pixel centres (``align_corners=False``),
    by numpy's ``interp``: output sample i reads the input at (i + 0.5) * n / size - 0.5, clamped."""
    n = x.size
    pos = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    return np.interp(pos, np.arange(n), x)


def test_fcrop_is_a_random_band_per_second_resized_back_to_every_band():
    rng = np.random.default_rng(0)
    mel = rng.normal(size=(250, 80)).astype(np.float32)  # 2.5 blocks
    got = apply_mel_view(torch.from_numpy(mel), "fcrop0.8", view_rng("v", "fcrop0.8")).numpy()
    draws = view_rng("v", "fcrop0.8")
    assert got.shape == mel.shape
    for b in range(3):
        start = int(draws.integers(0, 80 - 64 + 1))  # round(0.8 * 80) = 64 bands
        rows = slice(b * BLOCK, (b + 1) * BLOCK)
        want = np.stack([_interp(r[start:start + 64], 80) for r in mel[rows]])
        np.testing.assert_allclose(got[rows], want, atol=5e-5)  # float32 interpolation
    again = apply_mel_view(torch.from_numpy(mel), "fcrop0.8", view_rng("v", "fcrop0.8")).numpy()
    other = apply_mel_view(torch.from_numpy(mel), "fcrop0.8", view_rng("w", "fcrop0.8")).numpy()
    assert np.array_equal(got, again) and not np.array_equal(got, other)  # seeded by video and view


def test_tcrop_resizes_a_random_stretch_of_each_block_back_and_keeps_the_length():
    mel = np.random.default_rng(1).normal(size=(230, 8)).astype(np.float32)
    got = apply_mel_view(torch.from_numpy(mel), "tcrop0.5", view_rng("v", "tcrop0.5")).numpy()
    draws = view_rng("v", "tcrop0.5")
    for start, n in ((0, 100), (100, 100), (200, 30)):  # the last block is 30 frames
        keep = int(round(0.5 * n))
        off = int(draws.integers(0, n - keep + 1))
        block = mel[start:start + n]
        want = np.stack([_interp(block[off:off + keep, f], n) for f in range(8)], axis=1)
        np.testing.assert_allclose(got[start:start + n], want, atol=5e-5)


def test_fmask_sets_one_band_per_block_to_the_blocks_mean():
    mel = np.random.default_rng(2).normal(size=(300, 64)).astype(np.float32)
    got = apply_mel_view(torch.from_numpy(mel), "fmask12", view_rng("v", "fmask12")).numpy()
    widths = []
    for b in range(3):
        rows = slice(b * BLOCK, (b + 1) * BLOCK)
        changed = np.flatnonzero((got[rows] != mel[rows]).any(axis=0))
        widths.append(changed.size)
        if changed.size:
            assert changed.size <= 12 and np.all(np.diff(changed) == 1)  # one contiguous band
            np.testing.assert_allclose(got[rows][:, changed], mel[rows].mean(), rtol=1e-5)
    assert max(widths) > 0
    with pytest.raises(ValueError, match="unknown audio view 'fmask0'"):
        apply_mel_view(torch.from_numpy(mel), "fmask0", view_rng("v", "fmask0"))


# -- extract -------------------------------------------------------------------------------------------------
OPTS = {"options": {"logmel": {"views": ["full", "fcrop0.8", "fmask8"]}}}


def test_extract_caches_audio_views_of_log_mel_encoders(tmp_path):
    ws = _fake_face_stage(tmp_path / "w", {"talk": (20, None, 0.8), "mute": (4, None, None)}, size=16)
    assert not run_extract(ws, ExtractConfig.from_params(OPTS, encoder="logmel"), progress=False).failures
    g = zarr.open_group(str(ws.features("logmel")), mode="r")["talk"]
    assert g.attrs["views"] == ["full", "fcrop0.8", "fmask8"] and g.attrs["encoder_config"]["views"] == g.attrs["views"]
    wave = zarr.open_group(str(ws.audio), mode="r")["talk/wave"][...]
    times = np.arange(20) / 25.0
    plain = create_encoder("logmel")
    np.testing.assert_allclose(g["emb"][...].astype(np.float32), plain.encode_audio(wave, times), atol=2e-3)
    for v in ("fcrop0.8", "fmask8"):
        enc = create_encoder("logmel")
        enc.mel_view = lambda mel, v=v: apply_mel_view(mel, v, view_rng("talk", v))
        want = enc.encode_audio(wave, times)
        np.testing.assert_allclose(g[f"emb_{v}"][...].astype(np.float32), want, atol=2e-3)
        assert np.abs(want - g["emb"][...].astype(np.float32)).max() > 0.05  # the view changed the features
    mute = zarr.open_group(str(ws.features("logmel")), mode="r")["mute"]
    assert not mute["emb_fmask8"][...].any() and not mute["present"][...].any()  # no audio track: zeros
    # a second workspace gives bit-identical views (seeded by video and view)
    ws2 = _fake_face_stage(tmp_path / "w2", {"talk": (20, None, 0.8), "mute": (4, None, None)}, size=16)
    run_extract(ws2, ExtractConfig.from_params(OPTS, encoder="logmel"), progress=False)
    g2 = zarr.open_group(str(ws2.features("logmel")), mode="r")["talk"]
    assert np.array_equal(g2["emb_fcrop0.8"][...], g["emb_fcrop0.8"][...])


def test_vggish_takes_audio_views_and_speech_models_and_faces_refuse_them(tmp_path):
    ws = _fake_face_stage(tmp_path / "w", {"talk": (10, None, 0.4)}, size=16)
    cfg = ExtractConfig.from_params({"options": {"vggish": {"views": ["full", "tfcrop0.8"]}},
                                     "weights": {"vggish": "random"}}, encoder="vggish")
    torch.manual_seed(0)  # the random network's weights
    assert not run_extract(ws, cfg, progress=False).failures
    g = zarr.open_group(str(ws.features("vggish")), mode="r")["talk"]
    assert g["emb_tfcrop0.8"].shape == (10, 128) and np.isfinite(g["emb_tfcrop0.8"][...].astype(np.float32)).all()
    full, local = g["emb"][...].astype(np.float32), g["emb_tfcrop0.8"][...].astype(np.float32)
    assert np.abs(local - full).max() > 0.01 * np.abs(full).max()  # the view changed the features
    with pytest.raises(EncoderError, match=r"hubert: view fmask8 is an audio view of the log-Mel input and needs "
                                           r"an audio encoder that reads one"):
        run_extract(ws, ExtractConfig("hubert", weights="random", views="full,fmask8"), progress=False)
    with pytest.raises(EncoderError, match="mini_xception: view fmask8 is an audio view"):
        run_extract(ws, ExtractConfig("mini_xception", views="full,fmask8"), progress=False)
    with pytest.raises(EncoderError, match="logmel: view flip is a view of face crops and needs a visual encoder"):
        run_extract(ws, ExtractConfig("logmel", views="full,flip"), progress=False)


def _tiny_ast(folder):
    import transformers as tf
    torch.manual_seed(0)
    tf.ASTModel(tf.ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                             num_mel_bins=32, max_length=64)).save_pretrained(folder)
    return create_encoder("hf:org/ast-tiny", weights=folder)


@pytest.mark.parametrize("name,bands", [("logmel", 80), ("whisper-tiny", 80), ("vggish", 64), ("ast", 32)])
def test_every_log_mel_encoder_computes_its_states_from_the_viewed_spectrogram(tmp_path, name, bands):
    torch.manual_seed(0)
    enc = _tiny_ast(tmp_path / "ast") if name == "ast" else create_encoder(name, weights="random" if name != "logmel" else None)
    assert enc.mel_input
    wave = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    times = np.arange(25) / 25.0
    plain = enc.encode_audio(wave, times)
    seen = []  # the log-Mel shapes the view was given

    def louder(mel):  # every band 3 log units up: another input, so other states
        seen.append(tuple(mel.shape))
        return mel + 3.0
    enc.mel_view = louder
    viewed = enc.encode_audio(wave, times)
    frames = 64 if name == "ast" else 98  # AST: each window of max_length frames; else the second of audio
    assert seen and all(shape[1] == bands and shape[0] >= frames for shape in seen)  # [frames of 10 ms, bands]
    assert np.abs(viewed - plain).max() > 0.01 * np.abs(plain).max()


# -- global + local views as two inputs ------------------------------------------------------------------------
TCN = dict(channels=16, mlp_dim=32, dilations=(1, 2), dropout=0.1)


@pytest.fixture(scope="module")
def local_ws(tmp_path_factory):
    """test_clips' planted-signal workspace whose audio encoder ``aud`` also stores ``emb_tfcrop0.8``."""
    ws = make_workspace(tmp_path_factory.mktemp("audio_views"), n_videos=6, n_frames=64, n_val=2)
    store_views(ws, "aud", ["full", "tfcrop0.8"], seed=3)
    return ws


def test_a_view_list_reads_the_local_view_as_its_own_feature_block(local_ws):
    feats = ZarrFeatures(local_ws, ["vis", "aud"], view=["full", "tfcrop0.8"])
    assert feats.encoders == ["vis", "aud", "aud@tfcrop0.8"]  # the visual encoder has no audio view
    g = zarr.open_group(str(local_ws.features("aud")), mode="r")["v0"]
    assert np.array_equal(feats.load("aud", "v0")[0], g["emb"][...])
    emb, present = feats.load("aud@tfcrop0.8", "v0")
    assert np.array_equal(emb, g["emb_tfcrop0.8"][...]) and np.array_equal(present, g["present"][...])
    assert feats.shape("aud@tfcrop0.8", "v0") == (64, g["emb"].shape[1])
    single = ZarrFeatures(local_ws, ["vis", "aud"], view="tfcrop0.8")  # one view: audio reads it, visual emb
    assert single.encoders == ["vis", "aud"] and np.array_equal(single.load("aud", "v0")[0], g["emb_tfcrop0.8"][...])

    result = train(local_ws, TrainConfig(task="va", head="tcn", features=["vis", "aud"], k=32, epochs=2,
                                         patience=0, lr=3e-3, batch_size=8, head_kwargs=TCN, device="cpu",
                                         view="full,tfcrop0.8"), progress=False)
    model, ckpt = load_model(result.model_dir / "model.pt")
    assert ckpt.config["view"] == ["full", "tfcrop0.8"]
    assert [e["name"] for e in ckpt.encoders] == ["vis", "aud", "aud@tfcrop0.8"]
    assert set(ckpt.in_dims) == {"vis", "aud", "aud@tfcrop0.8"}
    out = predict_model(local_ws, model, ckpt, ["v4"])  # predict reads the same blocks
    assert out["v4"]["va"].shape == (64, 2) and np.isfinite(out["v4"]["va"]).all()
    with pytest.raises(PredictError, match=r"va-tcn-official: predict.tta averages a head's outputs over single "
                                           r"views, but this head reads the views \['full', 'tfcrop0.8'\]"):
        run_predict(local_ws, PredictConfig(head="tcn", tasks=["va"], folds=["official"], device="cpu", tta=True),
                    progress=False)


def test_view_lists_are_checked(local_ws):
    with pytest.raises(TrainError, match="a list is the global view 'full' then local views"):
        TrainConfig(view=["tfcrop0.8", "full"])
    with pytest.raises(TrainError, match="unknown view 'mean'"):
        TrainConfig(view=["full", "mean"])
    assert TrainConfig(view=["full"]).view == "full" and TrainConfig(view="full, fmask8").view == ["full", "fmask8"]
    with pytest.raises(TrainError, match="view 'fmask8' applies to audio encoders, but none of the features vis is audio"):
        ZarrFeatures(local_ws, ["vis"], view=["full", "fmask8"])
    feats = ZarrFeatures(local_ws, ["vis", "aud"], view=["full", "fmask8"])
    with pytest.raises(TrainError, match=r"encoder 'aud' has views full, tfcrop0.8; view 'fmask8' needs fmask8 "
                                         r"\(run `afwpipe extract --encoder aud --views full,fmask8"):
        feats.load("aud@fmask8", "v0")
