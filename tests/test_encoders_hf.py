"""``hf:<repo_id>``: any transformers speech model, any hidden layer or mean of a range, loaded from a model
folder (here tiny random models saved with ``save_pretrained``: no weights can be downloaded in the tests)."""

import json

import numpy as np
import pytest
import torch

from afwpipe.encoders import create_encoder, describe_encoders, is_encoder
from afwpipe.errors import EncoderError, WeightsError

SR = 16000


def _tiny(kind: str):
    """A 2-layer random model of ``kind`` with the real models' conv front end (kernels 10,3,3,3,3,2,2,
    strides 5,2,2,2,2,2,2) and positional convolution."""
    import transformers as tf
    config_cls, model_cls = {"wavlm": (tf.WavLMConfig, tf.WavLMModel),
                             "data2vec-audio": (tf.Data2VecAudioConfig, tf.Data2VecAudioModel),
                             "hubert": (tf.HubertConfig, tf.HubertModel)}[kind]
    config = config_cls(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        conv_dim=(16,) * 7)
    torch.manual_seed(0)
    return model_cls(config).eval()


@pytest.fixture(scope="module", params=["wavlm", "data2vec-audio", "hubert"])
def saved(request, tmp_path_factory):
    """(kind, model, folder) with config.json, weights and a preprocessor config (do_normalize false)."""
    model = _tiny(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False, "sampling_rate": SR}))
    return request.param, model, folder


def _wave(seconds=1.5, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.mark.parametrize("layer,ref", [(-1, [2]), (0, [0]), (1, [1]), ("0-2", [0, 1, 2]), ([1, 2], [1, 2])])
def test_hf_layer_is_the_model_hidden_state_or_the_mean_of_a_range(saved, layer, ref):
    kind, model, folder = saved
    enc = create_encoder("hf:org/tiny-model", weights=folder, layer=layer)
    wave = _wave()  # 1.5 s: one chunk, so the states are the model's own on the whole wave
    n = int(np.ceil(wave.size / 320))
    with torch.inference_mode():
        got = enc.states(torch.from_numpy(wave)).numpy()
        padded = torch.nn.functional.pad(torch.from_numpy(wave), (0, (n - 1) * 320 + 400 - wave.size))
        hidden = model(padded[None], output_hidden_states=True).hidden_states
        want = torch.stack([hidden[i][0] for i in ref]).mean(0).numpy()
    assert got.shape == want.shape == (n, 32)
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
    cfg = enc.config
    assert cfg["name"] == "hf:org/tiny-model" and cfg["architecture"] == kind and cfg["dim"] == 32
    assert cfg["hop_s"] == 0.02 and cfg["normalize"] is False and cfg["weights"].startswith("sha256:")
    assert cfg["layer"] == {"0-2": "0-2", (1, 2): "1-2"}.get(layer if not isinstance(layer, list) else tuple(layer), layer)


def test_two_layers_of_one_model_have_two_identities_and_frame_aligned_features(saved):
    _, _, folder = saved
    a, b = (create_encoder("hf:org/tiny-model", weights=folder, layer=x) for x in (1, "1-2"))
    assert a.config != b.config and {k for k in a.config if a.config[k] != b.config[k]} == {"layer"}
    times = np.arange(36) / 24.0
    out = a.encode_audio(_wave(), times)
    assert out.shape == (36, 32) and np.isfinite(out).all()


def test_data2vec_positional_reach_measured_at_a_bare_chunk_border():
    """data2vec-audio's positional embedding is 5 stacked convolutions of 19 taps: a state sees 5 * 9 = 45
    states each side. Measured: with no context a border changes exactly the 45 states each side of it;
    with the default context (the computed reach) hidden state 0 equals the whole-wave pass."""
    from afwpipe.encoders.hf_audio import HfAudioEncoder, hf_family_cfg, pos_conv_reach
    import transformers as tf
    config = tf.Data2VecAudioConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, conv_dim=(16,) * 7)
    torch.manual_seed(0)
    model = tf.Data2VecAudioModel(config).eval()
    assert pos_conv_reach(model) == 45
    wave = torch.from_numpy(_wave(6.0, seed=1))

    def run(chunk_s, context=None):
        extra = {**hf_family_cfg.extra, "layer": 0, "chunk_s": chunk_s, "normalize": False}
        if context is not None:
            extra["chunk_context_states"] = context
        with torch.inference_mode():
            return HfAudioEncoder(hf_family_cfg.with_(name="hf:x", extra=extra), model).states(wave).numpy()

    whole = run(100.0)
    diff = np.abs(run(2.0, context=0) - whole).max(axis=1)  # 100 states per chunk: borders at 100, 200
    changed = np.flatnonzero(diff > 1e-5 * np.abs(whole).max())
    assert changed.min() == 100 - 45 and changed.max() == 200 + 44
    assert set(range(55, 145)) <= set(changed) and 145 + 9 not in changed  # 145..154: beyond both borders' reach
    np.testing.assert_allclose(run(2.0), whole, atol=1e-5 * np.abs(whole).max())


def test_hf_random_without_a_cached_config_says_it_cannot_be_fetched_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("AFWPIPE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsError) as e:
        create_encoder("hf:microsoft/wavlm-large", weights="random")
    msg = str(e.value)
    assert msg.startswith("hf:microsoft/wavlm-large:") and "config.json" in msg and "offline" in msg
    assert "hf download microsoft/wavlm-large config.json" in msg
    with pytest.raises(WeightsError, match="hf download microsoft/wavlm-large"):  # default weights: not cached
        create_encoder("hf:microsoft/wavlm-large")


def test_hf_random_reads_the_architecture_from_the_cached_config(monkeypatch, tmp_path):
    import transformers as tf
    monkeypatch.setenv("AFWPIPE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    snap = tmp_path / "hf" / "models--org--wavlm-tiny"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text("abc123")
    model = _tiny("wavlm")
    model.config.save_pretrained(snap / "snapshots" / "abc123")
    enc = create_encoder("hf:org/wavlm-tiny", weights="random", layer="1-2")
    assert isinstance(enc.model, tf.WavLMModel) and enc.config["weights"] == "random"
    assert enc.config["layer"] == "1-2" and enc.dim == 32
    # a bare state-dict file (keys as a *ForCTC checkpoint prefixes them) gets the cached config's architecture
    from safetensors.torch import save_file
    save_file({f"wavlm.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    enc = create_encoder("hf:org/wavlm-tiny", weights=tmp_path / "w.safetensors")
    assert enc.config["normalize"] is True  # no preprocessor config: Wav2Vec2FeatureExtractor's default
    wave = _wave()
    normed = tf.Wav2Vec2FeatureExtractor(do_normalize=True)(wave, sampling_rate=SR, return_tensors="pt").input_values[0]
    with torch.inference_mode():
        want = model(torch.nn.functional.pad(normed, (0, 74 * 320 + 400 - wave.size))[None]).last_hidden_state[0]
        got = enc.states(torch.from_numpy(wave)).numpy()
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4 * float(want.abs().max()))


def test_hf_rejects_bad_layers_ids_and_non_speech_models(saved, tmp_path):
    _, _, folder = saved
    for bad in (3, -4, "2-1", "x", [0, 1, 2], True):
        with pytest.raises(EncoderError, match="layer="):
            create_encoder("hf:org/tiny", weights=folder, layer=bad)
    with pytest.raises(EncoderError, match="not a hub repo id"):
        create_encoder("hf:not a repo")
    import transformers as tf
    tf.BertModel(tf.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=16, vocab_size=30)).save_pretrained(tmp_path / "bert")
    with pytest.raises(EncoderError, match="no convolutional waveform front end"):
        create_encoder("hf:org/bert", weights=tmp_path / "bert")


def test_hubert_and_wav2vec2_are_aliases_with_their_default_repo_ids(tmp_path):
    folder = tmp_path / "hubert"
    _tiny("hubert").save_pretrained(folder)
    # without a preprocessor config the alias keeps HuBERT base's setting (no normalisation), the family
    # the feature extractor's default (normalise): the folder's own setting makes them one encoder
    alias = create_encoder("hubert", weights=folder)
    assert (alias.config["normalize"], create_encoder("hf:x/y", weights=folder).config["normalize"]) == (False, True)
    (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    alias = create_encoder("hubert", weights=folder, layer=1)
    family = create_encoder("hf:facebook/hubert-base-ls960", weights=folder, layer=1)
    wave = torch.from_numpy(_wave())
    with torch.inference_mode():
        np.testing.assert_array_equal(alias.states(wave).numpy(), family.states(wave).numpy())
    assert {k: v for k, v in alias.config.items() if k != "name"} == {k: v for k, v in family.config.items() if k != "name"}
    assert create_encoder("wav2vec2", weights="random").config["repo_id"] == "facebook/wav2vec2-base-960h"
    rows = {r["name"]: r for r in describe_encoders()}
    assert rows["hf:<repo_id>"]["modality"] == "audio" and rows["hf:<repo_id>"]["dim"] == "model's"
    assert is_encoder("hf:microsoft/wavlm-large") and not is_encoder("hf:")
