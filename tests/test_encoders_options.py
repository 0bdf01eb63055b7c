"""params ``extract.options``: a name of ``extract.encoders`` (feature store, DVC stage ``extract@<name>``)
bound to a registry encoder and its options, so two layers of one model are two feature stores."""

import json

import numpy as np
import pytest
import torch
import yaml
import zarr

from afwpipe.encoders import create_encoder
from afwpipe.errors import EncoderError
from afwpipe.extract import ExtractConfig, run_extract
from afwpipe.store import Workspace

from conftest import REPO
from test_extract import _fake_face_stage

SECTION = {"encoders": ["wavlm_l1", "wavlm_mean"], "weights": {}, "batch_size": 32, "device": "auto",
           "options": {"wavlm_l1": {"encoder": "hf:org/wavlm-tiny", "layer": 1},
                       "wavlm_mean": {"encoder": "hf:org/wavlm-tiny", "layer": "0-2"}}}


@pytest.fixture(scope="module")
def wavlm_folder(tmp_path_factory):
    import transformers as tf
    config = tf.WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16,) * 7)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("wavlm")
    tf.WavLMModel(config).save_pretrained(folder)
    return folder


def test_options_bind_a_list_name_to_an_encoder_and_its_options():
    cfg = ExtractConfig.from_params(SECTION, encoder="wavlm_mean")
    assert cfg.build_args() == ("hf:org/wavlm-tiny", {"layer": "0-2"})
    assert ExtractConfig.from_params(SECTION, encoder="hubert").build_args() == ("hubert", {})
    assert ExtractConfig.from_params({**SECTION, "options": {"hubert": {"layer": 9}}},
                                     encoder="hubert").build_args() == ("hubert", {"layer": 9})
    with pytest.raises(EncoderError, match="extract.options.hubert: expected a mapping"):
        ExtractConfig.from_params({**SECTION, "options": {"hubert": 9}}, encoder="hubert")


def test_two_layers_of_one_model_are_two_feature_stores(tmp_path, wavlm_folder):
    ws = _fake_face_stage(tmp_path / "w", {"talk": (10, None, 0.4)}, size=16)
    for name in SECTION["encoders"]:
        cfg = ExtractConfig.from_params({**SECTION, "weights": {name: str(wavlm_folder)}}, encoder=name)
        assert not run_extract(ws, cfg, progress=False).failures
    stores = {n: zarr.open_group(str(ws.features(n)), mode="r")["talk"] for n in SECTION["encoders"]}
    assert [ws.features(n).name for n in stores] == ["wavlm_l1.zarr", "wavlm_mean.zarr"]
    for name, layer in (("wavlm_l1", 1), ("wavlm_mean", "0-2")):
        attrs = stores[name].attrs
        assert attrs["encoder"] == name and attrs["encoder_config"]["name"] == "hf:org/wavlm-tiny"
        assert attrs["encoder_config"]["layer"] == layer
        enc = create_encoder("hf:org/wavlm-tiny", weights=wavlm_folder, layer=layer)
        wave = zarr.open_group(str(ws.audio), mode="r")["talk/wave"][...]
        want = enc.encode_audio(wave, np.arange(10) / 25.0)
        np.testing.assert_allclose(stores[name]["emb"][...].astype(np.float32), want, rtol=1e-2, atol=1e-2)
    assert not np.allclose(stores["wavlm_l1"]["emb"][...], stores["wavlm_mean"]["emb"][...])


def test_an_option_the_encoder_does_not_take_is_an_error_naming_the_params_key(tmp_path):
    ws = _fake_face_stage(tmp_path / "w", {"talk": (3, None, 0.12)}, size=16)
    cfg = ExtractConfig.from_params({**SECTION, "options": {"logmel": {"layer": 3}}}, encoder="logmel")
    with pytest.raises(EncoderError, match="extract.options.logmel: logmel does not take option"):
        run_extract(ws, cfg, progress=False)


def test_params_encoder_names_are_file_names_as_dvc_outs_need_them():
    """dvc.yaml's extract outs are ``features/${item}.zarr`` while the store is ``Workspace.features(item)``,
    which replaces characters outside [A-Za-z0-9_.-]: an ``hf:``/``timm:`` id goes in through an options name."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name in params["extract"]["encoders"]:
        assert Workspace("w").features(name).name == f"{name}.zarr", name
        assert "@" not in name  # DVC's foreach separator: a second @ makes the stage unfindable
    for name, opts in (params["extract"].get("options") or {}).items():
        assert json.loads(json.dumps(opts)) == opts
