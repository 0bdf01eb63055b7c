"""Audio Spectrogram Transformer through ``hf:<repo_id>`` and the alias ``ast``: tiny random ASTModels built from
``ASTConfig`` and saved with their ``ASTFeatureExtractor`` (no download), compared with the model's own forward
on the extractor's input."""

import numpy as np
import pytest
import torch

from afwpipe.encoders import create_encoder, describe_encoders, list_encoders
from afwpipe.errors import EncoderError, WeightsError

SR = 16000
N_MELS, MAX_LEN = 32, 64  # tiny: 2 frequency x 5 time patches of 16 x 16, strides 10


def _config(**kw):
    import transformers as tf
    return tf.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        num_mel_bins=N_MELS, max_length=MAX_LEN, patch_size=16, frequency_stride=10,
                        time_stride=10, **kw)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import transformers as tf
    torch.manual_seed(0)
    model = tf.ASTModel(_config()).eval()
    folder = tmp_path_factory.mktemp("ast")
    model.save_pretrained(folder)
    tf.ASTFeatureExtractor(num_mel_bins=N_MELS, max_length=MAX_LEN, mean=-5.0, std=3.0).save_pretrained(folder)
    return model, tf.ASTFeatureExtractor.from_pretrained(folder), folder


def _wave(seconds, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def _reference_states(model, fe, wave, layers):
    """State j = mean over the frequency patches of time column j, read token by token (index 2 + f * 5 + t),
    windows of 64 filter-bank frames starting every 5 columns x 10 frames = 50 frames (8000 samples)."""
    out = []
    for start in range(0, wave.size, 8000):
        x = fe(wave[start:start + 63 * 160 + 400], sampling_rate=SR, return_tensors="pt")["input_values"]
        with torch.inference_mode():
            o = model(x, output_hidden_states=True)
        hidden = list(o.hidden_states)
        hidden[-1] = o.last_hidden_state
        h = torch.stack([hidden[i] for i in layers]).mean(0)[0]
        out += [np.mean([h[2 + f * 5 + t].numpy() for f in range(2)], axis=0) for t in range(5)]
    return np.stack(out)


@pytest.mark.parametrize("layer,ref", [(-1, [2]), (0, [0]), (1, [1]), ("1-2", [1, 2])])
def test_ast_states_are_the_models_time_columns_on_one_100ms_grid(saved, layer, ref):
    model, fe, folder = saved
    enc = create_encoder("hf:org/ast-tiny", weights=folder, layer=layer)
    wave = _wave(1.23)  # three windows: states 0-4, 5-9, 10-12 (the last window padded by the extractor)
    with torch.inference_mode():
        got = enc.states(torch.from_numpy(wave)).numpy()
    want = _reference_states(model, fe, wave, ref)[:13]
    assert got.shape == (13, 32)  # ceil(1.23 s / 0.1 s)
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
    cfg = enc.config
    assert cfg["architecture"] == "audio-spectrogram-transformer" and cfg["hop_s"] == 0.1 and cfg["dim"] == 32
    assert (cfg["fbank_mean"], cfg["fbank_std"], cfg["time_patches"], cfg["frequency_patches"]) == (-5.0, 3.0, 5, 2)
    assert cfg["weights"].startswith("sha256:")


def test_ast_alias_and_family_are_one_encoder_and_align_to_frames(saved):
    _, _, folder = saved
    alias, family = create_encoder("ast", weights=folder), create_encoder("hf:MIT/ast-x", weights=folder)
    assert alias.config["repo_id"] == "MIT/ast-finetuned-audioset-10-10-0.4593"
    wave = _wave(0.8)
    times = np.arange(20) / 25.0
    a, f = alias.encode_audio(wave, times), family.encode_audio(wave, times)
    np.testing.assert_array_equal(a, f)
    assert a.shape == (20, 32) and np.isfinite(a).all()
    assert "ast" in list_encoders()
    row = {r["name"]: r for r in describe_encoders()}["ast"]
    assert row["modality"] == "audio" and row["weights"] == "hf:MIT/ast-finetuned-audioset-10-10-0.4593"


def test_ast_without_a_preprocessor_config_uses_the_models_bands_and_audioset_statistics(tmp_path):
    import transformers as tf
    torch.manual_seed(1)
    tf.ASTModel(_config()).save_pretrained(tmp_path / "m")
    cfg = create_encoder("hf:org/ast", weights=tmp_path / "m").config
    assert (cfg["num_mel_bins"], cfg["max_length"]) == (N_MELS, MAX_LEN)
    assert cfg["fbank_mean"] == pytest.approx(-4.2677393) and cfg["fbank_std"] == pytest.approx(4.5689974)


def test_ast_extractor_that_disagrees_with_the_model_is_an_error(tmp_path):
    import transformers as tf
    tf.ASTModel(_config()).save_pretrained(tmp_path / "m")
    tf.ASTFeatureExtractor(num_mel_bins=64, max_length=MAX_LEN).save_pretrained(tmp_path / "m")
    with pytest.raises(WeightsError, match="64 bands x 64 frames but the model takes 32 x 64"):
        create_encoder("hf:org/ast", weights=tmp_path / "m")
    with pytest.raises(EncoderError, match="layer="):
        create_encoder("hf:org/ast", weights=tmp_path / "m", layer=3)
