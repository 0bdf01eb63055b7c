"""Encoder registry, configs, and where weights come from (explicit file, cache, clear error)."""

import argparse

import numpy as np
import pytest
import torch

from afwpipe.encoders import create_encoder, is_encoder, list_encoders
from afwpipe.errors import EncoderError, WeightsError
from afwpipe.fetch import sha256_file

CONFIG_KEYS = {"name", "modality", "dim", "weights"}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and empty caches: HF hub, torch hub, whisper (~/.cache via XDG_CACHE_HOME)."""
    monkeypatch.setenv("AFWPIPE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def test_registry_lists_every_encoder_of_the_design():
    names = list_encoders()
    for n in ("mae", "convnext", "mini_xception", "whisper", "whisper-small", "hubert", "wav2vec2", "logmel"):
        assert n in names and is_encoder(n)
    assert "timm:<model_id>" in names and is_encoder("timm:resnet18")
    assert "hf:<repo_id>" in names and is_encoder("hf:microsoft/wavlm-large")
    assert list_encoders("whisper*") == [n for n in names if n.startswith("whisper")]
    assert not is_encoder("nope")


def test_unknown_encoder_error_lists_the_registry():
    with pytest.raises(EncoderError) as e:
        create_encoder("resnet-of-dreams")
    assert "resnet-of-dreams" in str(e.value) and "mae" in str(e.value) and "timm:<model_id>" in str(e.value)
    with pytest.raises(EncoderError, match="timm has no model"):
        create_encoder("timm:not_a_model_at_all")


@pytest.mark.parametrize("name", ["mae", "convnext", "whisper", "hubert", "wav2vec2"])
def test_missing_weights_offline_raise_with_model_name_and_how_to_get_them(offline, name):
    with pytest.raises(WeightsError) as e:
        create_encoder(name)
    msg = str(e.value)
    assert msg.startswith(f"{name}:") and "To get them" in msg and "--weights" in msg
    hint = {"mae": "timm/vit_base_patch16_224.mae", "convnext": "timm/convnextv2_base.fcmae_ft_in22k_in1k",
            "whisper": "openaipublic.azureedge.net", "hubert": "facebook/hubert-base-ls960",
            "wav2vec2": "facebook/wav2vec2-base-960h"}[name]
    assert hint in msg
    if name == "whisper":  # says where whisper's cache file goes
        assert str(offline / "cache" / "whisper" / "base.pt") in msg


def test_explicit_weights_path_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        create_encoder("whisper", weights=tmp_path / "base.pt")


def _crops(n=2, size=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_mae_checkpoint_file_round_trip_is_identified_by_sha256(tmp_path):
    torch.manual_seed(0)
    ref = create_encoder("mae", weights="random")
    sd = {k: v.clone() for k, v in ref.model.state_dict().items()}
    # an MAE pretraining checkpoint: encoder + pixel decoder + mask token, training args
    ckpt = {"model": {**sd, "decoder_embed.weight": torch.zeros(512, 768), "mask_token": torch.zeros(1, 1, 512)},
            "epoch": 399, "args": argparse.Namespace(model="mae_vit_base_patch16", mask_ratio=0.75)}
    path = tmp_path / "mae_face_pretrain_vit_base.pth"
    torch.save(ckpt, path)
    enc = create_encoder("mae", weights=path)
    assert enc.config["weights"] == f"sha256:{sha256_file(path)}"
    x = _crops()
    np.testing.assert_allclose(enc.encode_crops(x), ref.encode_crops(x), atol=1e-5)

    del ckpt["model"]["norm.weight"]
    torch.save(ckpt, path)
    with pytest.raises(WeightsError, match="lacks 1 encoder keys"):
        create_encoder("mae", weights=path)


def test_timm_weights_are_found_in_the_hf_cache_without_network(offline):
    from safetensors.torch import save_file
    import timm
    import timm.data
    from PIL import Image

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False)  # with its 1000-class head, as on the hub
    snap = offline / "hf" / "models--timm--resnet18.a1_in1k"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text("0123abcd")
    (snap / "snapshots" / "0123abcd").mkdir(parents=True)
    save_file(model.state_dict(), str(snap / "snapshots" / "0123abcd" / "model.safetensors"))

    enc = create_encoder("timm:resnet18")
    assert enc.config["weights"] == "timm/resnet18.a1_in1k@0123abcd" and enc.dim == 512
    # the model input as timm's own eval transform makes it from the model's pretrained_cfg (PIL resize of
    # the whole crop: crop_pct 1, as a face crop is not centre-cropped), not from the encoder's preprocess
    data_cfg = timm.data.resolve_data_config({}, model=model)
    assert (enc.cfg.input_size, enc.cfg.interpolation) == (data_cfg["input_size"][-1], data_cfg["interpolation"])
    transform = timm.data.create_transform(**{**data_cfg, "crop_pct": 1.0})
    model.reset_classifier(0)
    x = _crops(size=224)
    timm_input = torch.stack([transform(Image.fromarray(crop)) for crop in x])
    with torch.no_grad():
        want = model.eval()(timm_input)
    np.testing.assert_allclose(enc.encode_crops(x), want.numpy(), atol=1e-4)
    # 112-px crops are upsampled to 224 (bicubic): PIL rounds to uint8, so up to ~1.25 grey levels apart
    small = _smooth_crops(112)
    got = enc.preprocess(torch.as_tensor(small).permute(0, 3, 1, 2).float() / 255)
    timm_small = torch.stack([transform(Image.fromarray(crop)) for crop in small])
    np.testing.assert_allclose(got.numpy(), timm_small.numpy(), atol=1.25 / 255 / min(data_cfg["std"]))


def _smooth_crops(size: int, n: int = 2, seed: int = 0) -> np.ndarray:
    """uint8 [n,size,size,3] sinusoids in 38..218: resizing them overshoots nowhere near 0 or 255 (no clipping)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3))
    for i in range(n):
        for ch in range(3):
            fx, fy, phase = rng.uniform(0.5, 3, 3)
            out[i, :, :, ch] = 128 + 90 * np.sin(2 * np.pi * (fx * xx + fy * yy) + 2 * phase)
    return np.round(out).astype(np.uint8)


def test_configs_are_plain_data_with_the_store_keys():
    import json

    enc = create_encoder("logmel")
    cfg = enc.config
    assert CONFIG_KEYS <= set(cfg) and {"sample_rate", "hop_s"} <= set(cfg)
    assert cfg["weights"] == "none" and json.loads(json.dumps(cfg)) == cfg


def test_cli_encoders_prints_one_row_per_registry_entry_from_its_default_cfg():
    from click.testing import CliRunner

    from afwpipe.cli import main
    from afwpipe.encoders import ENCODERS

    res = CliRunner().invoke(main, ["encoders"])
    assert res.exit_code == 0, res.output
    encoders, finetuned, asrs, vlms = res.output.split("\n\n")
    assert [line.split()[0] for line in vlms.splitlines()[2:]] == ["hf:<repo_id>"]  # afwpipe describe
    assert finetuned.startswith("fine-tuned encoders of ")  # the workspace's ft_<run> (afwpipe finetune)
    rows = [line.split() for line in encoders.splitlines()[1:]]
    assert [r[0] for r in rows] == list_encoders()  # every name and family, once, in registry order
    from afwpipe.asr import list_asrs

    assert [line.split()[0] for line in asrs.splitlines()[2:]] == list_asrs()
    for r in rows:
        if "<" in r[0]:  # a family: its dim is the model's
            continue
        cfg = ENCODERS.default_cfg(r[0])
        assert r[1:3] == [cfg.modality, str(cfg.dim)]
    # dims published with whisper (n_audio_state) and HuBERT base, not read from our configs
    dims = {r[0]: r[2] for r in rows}
    assert (dims["whisper-tiny"], dims["whisper-large-v3"], dims["hubert"]) == ("384", "1280", "768")
    assert [r[:3] for r in rows if "<" in r[0]] == [["ft_<run>", "visual", "model's"],
                                                    ["hf:<repo_id>", "audio", "model's"],
                                                    ["text:<hf-id>", "text", "model's"],
                                                    ["timm:<model_id>", "visual", "model's"]]
