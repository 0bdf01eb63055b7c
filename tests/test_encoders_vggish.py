"""``vggish``: its log-Mel front end against Google's reference code (``mel_features.py`` / ``vggish_input.py``
as the PyPI package torchvggish ships them), its network against torchvggish's own ``VGG`` with the same random
weights, and where its weights come from (torch hub's folder, a clear error offline, never silently random)."""

import numpy as np
import pytest
import torch

from afwpipe.encoders import create_encoder, describe_encoders, list_encoders
from afwpipe.errors import EncoderError, WeightsError

from torchvggish import mel_features, vggish_input  # the test extra: Google's reference front end
from torchvggish.torchvggish import VGG, make_layers  # torchvggish's network

SR = 16000


def _wave(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like test signal: a few harmonics with a moving pitch plus noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 150 + 50 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
    return (0.2 * x + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _reference_log_mel(wave: np.ndarray) -> np.ndarray:
    return mel_features.log_mel_spectrogram(
        wave.astype(np.float64), audio_sample_rate=SR, log_offset=0.01, window_length_secs=0.025,
        hop_length_secs=0.010, num_mel_bins=64, lower_edge_hertz=125, upper_edge_hertz=7500)


def test_log_mel_and_mel_matrix_equal_googles_reference():
    from afwpipe.encoders.vggish import log_mel, mel_matrix
    np.testing.assert_allclose(mel_matrix(), mel_features.spectrogram_to_mel_matrix(
        num_mel_bins=64, num_spectrogram_bins=257, audio_sample_rate=SR, lower_edge_hertz=125,
        upper_edge_hertz=7500), rtol=1e-12, atol=1e-12)
    wave = _wave(2.37)
    want = _reference_log_mel(wave)
    got = log_mel(torch.from_numpy(wave)).numpy()
    assert got.shape == want.shape == (1 + (wave.size - 400) // 160, 64)
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_examples_at_the_reference_hop_are_vggish_inputs_examples():
    enc = create_encoder("vggish", weights="random")
    wave = _wave(3.5)
    want = vggish_input.waveform_to_examples(wave.astype(np.float64), SR, return_tensor=False)  # [3, 96, 64]
    got = enc.examples(torch.from_numpy(wave)).numpy()
    assert want.shape == (3, 96, 64) and got.shape == (4, 96, 64)  # one more: the tail after 2.88 s, zero padded
    np.testing.assert_allclose(got[:3], want, atol=2e-4)
    assert enc.config["hop_s"] == 0.96 and enc.config["dim"] == 128 and enc.config["weights"] == "random"


def test_a_shorter_example_hop_centres_example_j_on_its_state_span():
    enc = create_encoder("vggish", weights="random", example_hop_s=0.1)
    wave = _wave(2.0)
    ref = _reference_log_mel(wave)
    ex = enc.examples(torch.from_numpy(wave)).numpy()
    assert ex.shape == (20, 96, 64) and enc.config["hop_s"] == 0.1  # ceil(2.0 s / 0.1 s) states
    for j in (5, 9, 10):  # fully inside the wave: log-Mel frames [10 j - 43, 10 j + 53), centred on [0.1 j, 0.1 j + 0.1)
        np.testing.assert_allclose(ex[j], ref[10 * j - 43:10 * j + 53], atol=2e-4)
    silence = np.log(0.01)  # the zero samples before the wave
    np.testing.assert_allclose(ex[0, :40], silence, atol=1e-6)
    for bad in (0.0, 0.015, 1.0):
        with pytest.raises(EncoderError, match="example_hop_s"):
            create_encoder("vggish", weights="random", example_hop_s=bad)


@pytest.mark.parametrize("relu", [False, True])
def test_network_equals_torchvggish_vgg_with_the_same_weights(tmp_path, relu):
    torch.manual_seed(0)
    ref = VGG(make_layers(), postprocess=False).eval()
    path = tmp_path / "vggish-test.pth"
    torch.save(ref.state_dict(), path)
    if not relu:  # vggish_slim.py today: no activation on the embedding (torchvggish kept the old ReLU)
        ref.embeddings[5] = torch.nn.Identity()
    enc = create_encoder("vggish", weights=str(path), relu=relu)
    wave = _wave(3.0)
    x = torch.from_numpy(vggish_input.waveform_to_examples(wave.astype(np.float64), SR, return_tensor=False)).float()
    with torch.inference_mode():
        want = ref(x[:, None]).numpy()
        got = enc.states(torch.from_numpy(wave)).numpy()[:len(want)]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())
    assert (want < 0).any() != relu
    assert enc.config["weights"].startswith("sha256:") and enc.config["relu"] is relu
    times = np.arange(75) / 25.0
    assert enc.encode_audio(wave, times).shape == (75, 128)


def test_missing_weights_offline_say_where_torch_hub_keeps_them(monkeypatch, tmp_path):
    monkeypatch.setenv("AFWPIPE_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsError) as e:
        create_encoder("vggish")
    msg = str(e.value)
    assert msg.startswith("vggish: weights not found") and "vggish-10086976.pth" in msg and "--weights" in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "vggish-10086976.pth") in msg
    # a file at that place whose sha256 does not start with 10086976 is not taken for the weights
    target = tmp_path / "torch" / "hub" / "checkpoints" / "vggish-10086976.pth"
    target.parent.mkdir(parents=True)
    torch.save(VGG(make_layers(), postprocess=False).state_dict(), target)
    with pytest.raises(WeightsError, match="weights not found"):
        create_encoder("vggish")


def test_a_file_that_is_not_a_vggish_state_dict_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, path)
    with pytest.raises(WeightsError, match="not a VGGish state dict"):
        create_encoder("vggish", weights=str(path))


def test_vggish_is_listed_with_its_weights_source():
    assert "vggish" in list_encoders()
    row = {r["name"]: r for r in describe_encoders()}["vggish"]
    assert row["modality"] == "audio" and row["dim"] == 128 and row["weights"] == "download vggish-10086976.pth"
