"""Every encoder runs with random weights on tiny inputs and returns float32 of its declared dim."""

import numpy as np
import pytest

from afwpipe.encoders import create_encoder

VISUAL = ["mae", "convnext", "timm:resnet18", "mini_xception"]
AUDIO = ["whisper", "hubert", "wav2vec2", "logmel"]


@pytest.fixture(scope="module")
def wave_2s():
    return (0.1 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)


@pytest.mark.parametrize("name", VISUAL)
def test_visual_encoder_random_weights_give_declared_dim(name):
    enc = create_encoder(name, weights="random")
    crops = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    out = enc.encode_crops(crops)
    cfg = enc.config
    assert out.shape == (2, cfg["dim"]) and out.dtype == np.float32 and np.isfinite(out).all()
    assert cfg["weights"] == "random" and cfg["modality"] == "visual" and cfg["input_size"] > 0
    assert enc.encode_crops(crops[:0]).shape == (0, cfg["dim"])
    with pytest.raises(ValueError, match="uint8"):
        enc.encode_crops(crops.astype(np.float32))


@pytest.mark.parametrize("name", AUDIO)
def test_audio_encoder_random_weights_give_one_row_per_video_frame(name, wave_2s):
    enc = create_encoder(name, weights="random")
    times = np.arange(48) / 23.976  # 2 s of 23.976 fps video
    out = enc.encode_audio(wave_2s, times)
    cfg = enc.config
    assert out.shape == (48, cfg["dim"]) and out.dtype == np.float32 and np.isfinite(out).all()
    assert cfg["sample_rate"] == 16000 and cfg["hop_s"] in (0.01, 0.02)
    assert cfg["weights"] == ("none" if name == "logmel" else "random")


def test_default_dims_match_the_design_table():
    dims = {n: create_encoder(n, weights="random").dim for n in ("mini_xception", "logmel", "whisper")}
    assert dims == {"mini_xception": 135, "logmel": 80, "whisper": 512}


def test_whisper_long_audio_spans_several_windows_without_nan():
    enc = create_encoder("whisper-tiny", weights="random")
    n = 16000 * 35 + 123  # 35 s: one full 30 s window and a padded 5 s one
    wave = (0.1 * np.random.default_rng(1).standard_normal(n)).astype(np.float32)
    import torch
    with torch.inference_mode():
        states = enc.states(torch.from_numpy(wave))
    assert states.shape[0] == 1750  # ceil((N // 160) / 2): the last window cut to its real length
    times = np.arange(875) / 25.0
    out = enc.encode_audio(wave, times)
    assert out.shape == (875, 384) and np.isfinite(out).all()
    # the windows' values against whisper's own embed_audio: tests/test_audio_encoders_reference.py


def test_hubert_chunks_keep_the_20ms_grid():
    import torch
    enc = create_encoder("hubert", weights="random", chunk_s=1.0, layer=6)
    wave = (0.1 * np.random.default_rng(2).standard_normal(16000 * 2 + 500)).astype(np.float32)
    with torch.inference_mode():
        states = enc.states(torch.from_numpy(wave))
    assert states.shape == (int(np.ceil(wave.size / 320)), 768)
    assert enc.config["layer"] == 6 and enc.config["chunk_s"] == 1.0 and enc.config["chunk_context_states"] == 64
    # chunked values against one whole-wave pass: tests/test_audio_encoders_reference.py
    from afwpipe.errors import EncoderError
    with pytest.raises(EncoderError, match="layer=13"):
        create_encoder("hubert", weights="random", layer=13)
