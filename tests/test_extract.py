import os
import subprocess
import sys
import textwrap

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from click.testing import CliRunner

from afwpipe import store
from afwpipe.cli import main
from afwpipe.errors import EncoderError, WeightsError
from afwpipe.export import export_h5, read_h5_video
from afwpipe.extract import ExtractConfig, run_extract
from afwpipe.store import Workspace

from conftest import REPO

RANDOM_ENCODERS = {"mae": 768, "convnext": 1024, "whisper": 512, "hubert": 768, "wav2vec2": 768}


def _fake_face_stage(root, videos: dict, size: int = 64) -> Workspace:
    """Write faces.zarr / audio.zarr / index.json as the face stage would.

    ``videos``: name -> (T, present [T] bool or None = all, audio seconds or None = no audio track).
    """
    ws = Workspace(root)
    rng = np.random.default_rng(0)
    recs = []
    for name, (t, present, audio_s) in videos.items():
        present = np.ones(t, bool) if present is None else np.asarray(present)
        g = store.begin_video(ws.faces, name)
        store.write_time_array(g, "crops", rng.integers(0, 255, (t, size, size, 3), dtype=np.uint8))
        store.write_time_array(g, "present", present)
        store.write_time_array(g, "times", np.arange(t) / 25.0)
        store.mark_complete(g)
        a = store.begin_video(ws.audio, name, {"sample_rate": 16000})
        wave = (0.1 * rng.standard_normal(int((audio_s or t / 25) * 16000))).astype(np.float32)
        store.write_time_array(a, "wave", wave if audio_s else np.zeros_like(wave))
        store.mark_complete(a, present=audio_s is not None)
        recs.append({"name": name, "path": f"{name}.mp4", "n_frames": t})
    ws.index.write_text(__import__("json").dumps({"videos": recs}))
    return ws


@pytest.fixture
def ws(tmp_path):
    return _fake_face_stage(tmp_path / "w", {
        "talk": (10, None, 0.4),                       # audio shorter than the video (0.4 s of 0.4 s)
        "faceless": (6, np.zeros(6, bool), None),      # never a face, no audio track
    })


def test_visual_and_audio_features_align_to_frames(ws):
    for enc in ("mini_xception", "logmel"):
        s = run_extract(ws, ExtractConfig(enc), progress=False)
        assert not s.failures
    g = zarr.open_group(str(ws.features("mini_xception")), mode="r")
    assert g["talk/emb"].shape == (10, 135) and g["talk/emb"].dtype == np.float16
    assert g["talk"].attrs["weights"].startswith("sha256:59534287")
    assert not g["faceless/present"][...].any() and np.isfinite(g["faceless/emb"][...]).all()
    a = zarr.open_group(str(ws.features("logmel")), mode="r")
    assert a["talk/emb"].shape == (10, 80) and a["talk/present"][...].all()
    assert not a["faceless/present"][...].any() and not a["faceless/emb"][...].any()  # no audio: zeros
    # stores open without afwpipe
    assert da.from_zarr(str(ws.features("logmel")), component="talk/emb").shape == (10, 80)
    ds = xr.open_zarr(str(ws.features("mini_xception")), group="talk", consolidated=False)
    assert ds["emb"].dims == ("frame", "feature") and ds.attrs["encoder"] == "mini_xception"


@pytest.mark.parametrize("encoder", sorted(RANDOM_ENCODERS))
def test_random_weights_run_and_are_recorded(tmp_path, encoder):
    ws = _fake_face_stage(tmp_path / "w", {"v": (3, None, 0.12)}, size=32)
    run_extract(ws, ExtractConfig(encoder, weights="random", batch_size=2), progress=False)
    g = zarr.open_group(str(ws.features(encoder)), mode="r")["v"]
    assert g["emb"].shape == (3, RANDOM_ENCODERS[encoder]) and g.attrs["weights"] == "random"
    assert np.isfinite(g["emb"][...].astype(np.float32)).all()


@pytest.mark.parametrize("encoder", ["mae", "whisper"])
def test_missing_weights_offline_is_a_clear_error(ws, encoder, monkeypatch):
    monkeypatch.setenv("AFWPIPE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(ws.root / "empty_hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(ws.root / "empty_cache"))
    with pytest.raises(WeightsError, match=f"{encoder}: weights not found"):
        run_extract(ws, ExtractConfig(encoder), progress=False)
    assert not ws.features(encoder).exists()  # nothing written, nothing random


def test_unknown_encoder_lists_the_registry(ws):
    with pytest.raises(EncoderError, match="unknown encoder 'nope'; registered: .*mae.*whisper"):
        run_extract(ws, ExtractConfig("nope"), progress=False)


def test_video_without_face_stage_output_is_reported_others_done(ws):
    idx = ws.read_index()
    idx["videos"].append({"name": "undetected", "path": "u.mp4", "n_frames": 4})
    ws.index.write_text(__import__("json").dumps(idx))
    s = run_extract(ws, ExtractConfig("logmel"), progress=False)
    assert [r.name for r in s.failures] == ["undetected"] and "run `afwpipe detect` first" in s.failures[0].error
    assert store.complete_names(ws.features("logmel")) == ["faceless", "talk"]


def test_rerun_skips_complete_and_redoes_other_weights(ws):
    run_extract(ws, ExtractConfig("mini_xception"), progress=False)
    again = run_extract(ws, ExtractConfig("mini_xception"), progress=False)
    assert all(r.skipped for r in again.results)
    other = run_extract(ws, ExtractConfig("mini_xception", weights="random"), progress=False)
    assert not any(r.skipped for r in other.results)  # a different weights identity is redone


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from afwpipe import extract, store
    orig = store.mark_complete
    def killing(group, **attrs):
        if group.path.endswith("faceless") and "encoder" in dict(group.attrs):
            os.kill(os.getpid(), signal.SIGKILL)
        orig(group, **attrs)
    extract.store.mark_complete = killing
    extract.run_extract(store.Workspace(sys.argv[1]), extract.ExtractConfig("mini_xception"), progress=False)
""")


def test_killed_extract_resumes_identically(ws, tmp_path, one_torch_thread):
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(ws.root)], cwd=REPO, capture_output=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    path = ws.features("mini_xception")
    assert store.is_complete(path, "talk") and not store.is_complete(path, "faceless")
    resumed = run_extract(ws, ExtractConfig("mini_xception"), progress=False)
    assert [(r.name, r.skipped) for r in resumed.results] == [("talk", True), ("faceless", False)]
    ref = _fake_face_stage(tmp_path / "ref", {"talk": (10, None, 0.4), "faceless": (6, np.zeros(6, bool), None)})
    run_extract(ref, ExtractConfig("mini_xception"), progress=False)
    a = zarr.open_group(str(path), mode="r")
    b = zarr.open_group(str(ref.features("mini_xception")), mode="r")
    for name in ("talk", "faceless"):
        for arr in ("emb", "present"):
            np.testing.assert_array_equal(a[f"{name}/{arr}"][...], b[f"{name}/{arr}"][...])


@pytest.mark.parametrize("layout", ["video", "frames"])
def test_h5_export_round_trip(ws, tmp_path, layout):
    run_extract(ws, ExtractConfig("logmel"), progress=False)
    out = tmp_path / f"logmel_{layout}.h5"
    assert export_h5(ws, "logmel", out, layout, progress=False) == 2
    want = zarr.open_group(str(ws.features("logmel")), mode="r")["talk/emb"][...]
    np.testing.assert_array_equal(read_h5_video(out, "talk"), want)


def test_export_of_missing_store_lists_what_exists(ws, tmp_path):
    run_extract(ws, ExtractConfig("logmel"), progress=False)
    with pytest.raises(Exception, match="no complete features for encoder 'mae'; stores here: logmel"):
        export_h5(ws, "mae", tmp_path / "x.h5")


def test_cli_encoders_lists_registry_and_offline_availability():
    res = CliRunner().invoke(main, ["encoders"])
    assert res.exit_code == 0
    rows = {line.split()[0]: line.split() for line in res.output.splitlines()[1:]}
    assert rows["logmel"][1:4] == ["audio", "80", "yes"] and rows["mae"][1:3] == ["visual", "768"]
    assert {"convnext", "whisper", "hubert", "wav2vec2", "mini_xception", "timm:<model_id>"} <= set(rows)


@pytest.mark.sample
def test_sample_mini_xception_logits_read_crying_as_sad_and_laughing_as_happy(sample_workspace):
    """WolfgangLanger_Pexels: crying in frames 0-140, laughing in 300-470 (checked on a contact sheet);
    the stored 7 logits (after the 128-d features) of the aligned crops say so."""
    g = zarr.open_group(str(sample_workspace.features("mini_xception")), mode="r")["WolfgangLanger_Pexels"]
    logits = g["emb"][...].astype(np.float32)[:, 128:]
    classes = g.attrs["encoder_config"]["classes"]
    votes = {span: np.bincount(logits[slice(*span)].argmax(1), minlength=7) for span in ((0, 140), (300, 470))}
    assert classes[votes[(0, 140)].argmax()] == "sad" and votes[(0, 140)].max() > 0.8 * 140
    assert classes[votes[(300, 470)].argmax()] == "happy" and votes[(300, 470)].max() > 0.8 * 170
