"""Options of every audio encoder in ``extract.options``: ``pool: stats`` (per-frame mean and std of the states)
and ``peak_normalize: true`` (the wave divided by its peak where the encoder reads it; audio.zarr stays raw)."""

import numpy as np
import pytest
import zarr

from afwpipe.encoders import create_encoder
from afwpipe.encoders.align import stats_per_frame
from afwpipe.errors import EncoderError
from afwpipe.extract import ExtractConfig, run_extract

from test_extract import _fake_face_stage


def _loop_stats(states, hop, times):
    """Per frame, by a plain loop: the states whose centre (j + 0.5) hop lies in [t_i, t_{i+1}) (the last frame
    one median frame long); np.mean and np.std of them; none: the state nearest the span's centre, std 0."""
    out = []
    d = np.median(np.diff(times))
    for i, t0 in enumerate(times):
        t1 = times[i + 1] if i + 1 < len(times) else t0 + d
        sel = [s for j, s in enumerate(states) if t0 <= (j + 0.5) * hop < t1]
        if sel:
            out.append(np.concatenate([np.mean(sel, 0), np.std(sel, 0)]))
        else:
            j = int(np.clip(round((t0 + t1) / 2 / hop - 0.5), 0, len(states) - 1))
            out.append(np.concatenate([states[j], np.zeros_like(states[j])]))
    return np.array(out)


def test_stats_pooling_is_the_mean_and_std_of_each_frames_states():
    rng = np.random.default_rng(0)
    states = 3 + rng.standard_normal((57, 5))  # an offset, so the std is not just the root mean square
    times = np.concatenate([np.arange(20) / 25.0, [0.8, 0.8, 0.81, 0.9, 1.5]])  # a duplicate, a short and a long frame
    got = stats_per_frame(states, 0.02, times)
    assert got.shape == (25, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, _loop_stats(states, 0.02, times), rtol=1e-5, atol=1e-6)


def test_pool_stats_doubles_the_store_dim_and_is_recorded(tmp_path):
    ws = _fake_face_stage(tmp_path / "w", {"talk": (10, None, 0.4)}, size=16)
    section = {"options": {"logmel_stats": {"encoder": "logmel", "pool": "stats"}}}
    for name in ("logmel", "logmel_stats"):
        assert not run_extract(ws, ExtractConfig.from_params(section, encoder=name), progress=False).failures
    plain = zarr.open_group(str(ws.features("logmel")), mode="r")["talk"]
    stats = zarr.open_group(str(ws.features("logmel_stats")), mode="r")["talk"]
    assert plain["emb"].shape == (10, 80) and stats["emb"].shape == (10, 160)
    assert stats.attrs["encoder_config"]["pool"] == "stats" and stats.attrs["dim"] == 160
    assert "pool" not in plain.attrs["encoder_config"] and "peak_normalize" not in plain.attrs["encoder_config"]
    np.testing.assert_array_equal(stats["emb"][:, :80], plain["emb"][...])  # the mean half is the mean pooling
    assert (stats["emb"][:, 80:].astype(np.float32) > 0).all()  # 4 log-Mel states of 10 ms per 40 ms frame


def test_peak_normalize_reads_the_wave_divided_by_its_peak_and_keeps_audio_zarr_raw(tmp_path):
    ws = _fake_face_stage(tmp_path / "w", {"talk": (10, None, 0.4)}, size=16)
    wave = zarr.open_group(str(ws.audio), mode="r")["talk/wave"][...]
    section = {"options": {"logmel_peak": {"encoder": "logmel", "peak_normalize": True}}}
    for name in ("logmel", "logmel_peak"):
        assert not run_extract(ws, ExtractConfig.from_params(section, encoder=name), progress=False).failures
    g = zarr.open_group(str(ws.features("logmel_peak")), mode="r")["talk"]
    raw = zarr.open_group(str(ws.features("logmel")), mode="r")["talk"]
    assert g.attrs["encoder_config"]["peak_normalize"] is True
    np.testing.assert_array_equal(zarr.open_group(str(ws.audio), mode="r")["talk/wave"][...], wave)
    times = np.arange(10) / 25.0
    assert 0.2 < np.abs(wave).max() < 0.9  # so that the normalisation changes the log-Mel level
    want = create_encoder("logmel").encode_audio(wave / np.abs(wave).max(), times)
    np.testing.assert_allclose(g["emb"][...].astype(np.float32), want, rtol=2e-3, atol=2e-3)
    assert np.abs(raw["emb"][...].astype(np.float32) - want).max() > 0.05
    enc = create_encoder("logmel")
    enc.set_audio_options(peak_normalize=True)
    silent = np.zeros(4000, np.float32)  # peak 0: read as it is
    np.testing.assert_array_equal(enc.encode_audio(silent, times[:2]),
                                  create_encoder("logmel").encode_audio(silent, times[:2]))


def test_audio_options_are_checked_and_refused_for_visual_encoders(tmp_path):
    ws = _fake_face_stage(tmp_path / "w", {"talk": (4, None, 0.2)}, size=16)
    bad = {"options": {"logmel": {"pool": "attentive"}}}
    with pytest.raises(EncoderError, match=r"extract.options.logmel.pool: 'attentive' is not one of mean, stats"):
        run_extract(ws, ExtractConfig.from_params(bad, encoder="logmel"), progress=False)
    bad = {"options": {"logmel": {"peak_normalize": "yes"}}}
    with pytest.raises(EncoderError, match="peak_normalize: expected true or false"):
        run_extract(ws, ExtractConfig.from_params(bad, encoder="logmel"), progress=False)
    visual = {"options": {"mini_xception": {"peak_normalize": True}}}
    with pytest.raises(EncoderError, match="apply to audio encoders; mini_xception is visual"):
        run_extract(ws, ExtractConfig.from_params(visual, encoder="mini_xception"), progress=False)
