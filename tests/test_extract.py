import os
import subprocess
import sys
import textwrap

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import yaml
import zarr
from click.testing import CliRunner

from synth import as_index, complete_index
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
    ws.index.write_text(__import__("json").dumps(complete_index({"videos": recs})))
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
    idx.records.append(as_index({"videos": [{"name": "undetected", "path": "u.mp4", "n_frames": 4}]}).records[0])
    idx.save(ws.index)
    s = run_extract(ws, ExtractConfig("logmel"), progress=False)
    assert [r.name for r in s.failures] == ["undetected"] and "run `afwpipe detect` first" in s.failures[0].error
    assert store.complete_names(ws.features("logmel")) == ["faceless", "talk"]


def test_rerun_skips_complete_and_redoes_other_weights(ws):
    run_extract(ws, ExtractConfig("mini_xception"), progress=False)
    again = run_extract(ws, ExtractConfig("mini_xception"), progress=False)
    assert all(r.skipped for r in again.results)
    other = run_extract(ws, ExtractConfig("mini_xception", weights="random"), progress=False)
    assert not any(r.skipped for r in other.results)  # a different weights identity is redone


#: Small layout for the kill test: inner chunks of >= 1 KiB, shards of <= 4 KiB, so a 60-frame video's ``emb``
#: has several shards (mini_xception 270 B/row: 5 shards of 12 rows; logmel 160 B/row: 3 shards of 24 rows).
#: ``store.MAX_SHARD_BYTES`` is bound as a default argument, so the defaults themselves are replaced.
SMALL_CHUNK_BYTES, SMALL_SHARD_BYTES = 1024, 4096

KILL_SCRIPT = textwrap.dedent("""
    import asyncio, os, signal, sys
    from zarr.storage import LocalStore
    from afwpipe import extract, store
    root, encoder, video = sys.argv[1:4]
    k, chunk_bytes, shard_bytes = map(int, sys.argv[4:7])
    store.chunk_rows.__defaults__ = (chunk_bytes,)
    store.shard_rows.__defaults__ = (shard_bytes,)
    orig_set = LocalStore.set
    started = done = 0
    async def set_then_kill(self, key, value, *args, **kwargs):
        # shard writes of one array may run concurrently: the (k+1)-th waits until the first k are on disk,
        # then the process dies, so exactly k shards of the video's embeddings exist
        global started, done
        ours = key.startswith(video + "/emb/c/")
        if ours:
            started += 1
            if started > k:
                while done < k:
                    await asyncio.sleep(0.001)
                os.kill(os.getpid(), signal.SIGKILL)
        await orig_set(self, key, value, *args, **kwargs)
        done += ours
    LocalStore.set = set_then_kill
    extract.run_extract(store.Workspace(root), extract.ExtractConfig(encoder, batch_size=8), progress=False)
""")

KILL_VIDEOS = {"first": (20, None, 0.8), "long": (60, np.arange(60) % 7 != 3, 2.0), "last": (6, np.zeros(6, bool), None)}


def _assert_stores_identical(a_path, b_path, names):
    """Every array (dtype, shape, chunking, each value) and every attribute of every video group is the same."""
    a, b = zarr.open_group(str(a_path), mode="r"), zarr.open_group(str(b_path), mode="r")
    assert sorted(a.group_keys()) == sorted(b.group_keys()) == sorted(names)
    for name in names:
        assert dict(a[name].attrs) == dict(b[name].attrs), name
        assert sorted(a[name].array_keys()) == sorted(b[name].array_keys()), name
        for arr in a[name].array_keys():
            x, y = a[name][arr], b[name][arr]
            assert (x.dtype, x.shape, x.chunks, x.shards) == (y.dtype, y.shape, y.chunks, y.shards), f"{name}/{arr}"
            np.testing.assert_array_equal(x[...], y[...], err_msg=f"{name}/{arr}")


@pytest.mark.parametrize("encoder", ["mini_xception", "logmel"])  # the visual and the audio write path
def test_extract_killed_after_the_kth_shard_write_resumes_bit_identical(tmp_path, encoder, monkeypatch,
                                                                       one_torch_thread):
    monkeypatch.setattr(store.chunk_rows, "__defaults__", (SMALL_CHUNK_BYTES,))
    monkeypatch.setattr(store.shard_rows, "__defaults__", (SMALL_SHARD_BYTES,))
    ws = _fake_face_stage(tmp_path / "w", KILL_VIDEOS)
    k = 2
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(ws.root), encoder, "long", str(k),
                           str(SMALL_CHUNK_BYTES), str(SMALL_SHARD_BYTES)], cwd=REPO, capture_output=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    path = ws.features(encoder)
    emb = zarr.open_group(str(path), mode="r")["long/emb"]
    n_shards = -(-60 // emb.shards[0])
    assert n_shards >= 3 > k  # killed mid-video: k shards written, the rest not
    written = [p for p in (path / "long" / "emb" / "c").rglob("*") if p.is_file()]
    assert len(written) == k
    assert store.is_complete(path, "first") and not store.is_complete(path, "long")
    assert not (path / "last").exists()

    resumed = run_extract(ws, ExtractConfig(encoder, batch_size=8), progress=False)
    ref = _fake_face_stage(tmp_path / "ref", KILL_VIDEOS)
    run_extract(ref, ExtractConfig(encoder, batch_size=8), progress=False)
    _assert_stores_identical(path, ref.features(encoder), KILL_VIDEOS)
    assert [(r.name, r.skipped) for r in resumed.results] == [("first", True), ("long", False), ("last", False)]


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
    encoder_table = res.output.split("\n\n")[0]  # the encoder table; the speech recognisers follow a blank line
    rows = {line.split()[0]: line.split() for line in encoder_table.splitlines()[1:]}
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


def test_cli_extract_without_any_encoder_is_a_clear_error(tmp_path):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"workdir": str(tmp_path / "work"), "extract": {"batch_size": 4}}))
    res = CliRunner().invoke(main, ["--params", str(tmp_path / "p.yaml"), "--manifest", str(REPO / "data_manifest.yaml"),
                                    "extract"])
    assert res.exit_code == 2
    assert "no encoder given: use --encoder NAME or list params extract.encoders" in res.output
