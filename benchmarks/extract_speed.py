"""Encoder stage speed: the whole `extract` stage vs the bare encoder forward on the same frames.

For `mae` (random weights unless --weights) on N face crops and `whisper` on S seconds of audio:
  stage frames/s   = frames / wall time of the stage on one video (read crops/wave from Zarr, encode,
                     write; the model is built once beforehand, its build time printed apart)
  forward frames/s = frames / wall time of the encoder alone on the same data already in memory
  ratio            = stage / forward (1.0: the encoder forward is the only cost)
``measure_rss`` (used by run.py) gives the stage's peak RSS on two face stores (a video and a longer one).
``measure_data_path`` (used by run.py, and ``--data-path``): the stage's own data path with a null encoder
(``null_visual``, registered through the public encoder registry; it returns zeros and never reads a pixel):
crops per CPU-second (``time.process_time``, every thread) and per wall second of ``EncoderWorker.run_video``
on a faces store written with each crop codec from real crops (the sample video's frames, centre square
resized to 224x224), beside what one GPU consumes (``GPU_CROPS_PER_S``) and the CPU cores that needs.

Usage: python benchmarks/extract_speed.py [--frames 64] [--seconds 60] [--device cpu] [--batch-size 16]
       python benchmarks/extract_speed.py --data-path [--frames 2000] [--codecs zstd,lz4,jpeg90]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from afwpipe import store
from afwpipe.crop_codec import parse_crop_codec
from afwpipe.encoders import EncoderConfig, VisualEncoder, is_encoder, register_encoder
from afwpipe.extract import EncoderWorker, ExtractConfig
from common import disk_bytes, frames_of, run_child, sample_video, write_index

NULL = "null_visual"
NULL_CFG = EncoderConfig(name=NULL, modality="visual", dim=8, weights="none", input_size=224,
                         mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
#: ViT-B/16 images per second on one H100/H200 in bf16, low end of timm's published inference benchmarks
#: (~3,000-5,000 images/s): the crop rate one GPU consumes
GPU_CROPS_PER_S = 3000.0


class NullEncoder(VisualEncoder):
    """A visual encoder that costs nothing: zeros ``float32 [B, 8]`` for any crops (never reads a pixel)."""

    def encode_crops(self, crops) -> np.ndarray:
        return np.zeros((len(crops), self.dim), np.float32)


def register_null() -> str:
    """Register ``null_visual`` in the encoder registry (once); return its name."""
    if not is_encoder(NULL):
        register_encoder(NULL, default_cfg=NULL_CFG)(lambda weights=None, device="cpu": NullEncoder(NULL_CFG, device))
    return NULL


def real_crops(n: int, video: str = "single_face", size: int = 224) -> np.ndarray:
    """``n`` crops ``uint8 [n, size, size, 3]`` of real content: the centre square of the sample video's frames
    resized to ``size`` (INTER_AREA), the video's frames repeated to reach ``n``."""
    import cv2

    frames = frames_of(sample_video(video))
    h, w = frames.shape[1:3]
    s = min(h, w)
    sq = frames[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    crops = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in sq])
    return crops[np.arange(n) % len(crops)]


def crop_face_stage(root: Path, crops: np.ndarray, codec: str, fps: float = 25.0) -> store.Workspace:
    """A workspace with one video whose faces store holds ``crops`` written with crop codec ``codec``."""
    ws = store.Workspace(root)
    c = parse_crop_codec(codec)
    g = store.begin_video(ws.faces, "v", {"identity": {"crop_codec": c.name}})
    arr = c.create(g, len(crops), crops.shape[1])
    writer = store.TimeWriter(arr)
    for i in range(0, len(crops), 512):
        writer.append(c.encode(crops[i:i + 512]))
    writer.close()
    store.write_time_array(g, "present", np.ones(len(crops), bool))
    store.write_time_array(g, "times", np.arange(len(crops)) / fps)
    store.mark_complete(g)
    write_index(ws, [{"name": "v", "n_frames": len(crops)}])
    return ws


def measure_data_path(root: Path, crops: np.ndarray, codecs: list[str], batch_size: int = 256,
                      repeats: int = 1) -> list[dict]:
    """The extract stage's data path (null encoder) on ``crops`` stored with each of ``codecs``.

    Per codec: ``crops_per_cpu_s`` and ``crops_per_s`` (medians over ``repeats`` runs of
    ``EncoderWorker.run_video``, the output removed before each), ``cpu_all`` the per-run values,
    ``store_bytes_per_crop``, ``gpu_crops_per_s`` (:data:`GPU_CROPS_PER_S`) and ``cores_per_gpu`` (that rate
    over ``crops_per_cpu_s``).
    """
    name = register_null()
    out = []
    for codec in codecs:
        ws = crop_face_stage(root / codec, crops, codec)
        worker = EncoderWorker(ws, ExtractConfig(name, device="cpu", batch_size=batch_size), progress=False)
        rec = ws.read_index().records[0]
        cpu, wall = [], []
        for _ in range(repeats):
            shutil.rmtree(worker.out, ignore_errors=True)
            c, t = time.process_time(), time.perf_counter()
            worker.run_video(rec)
            cpu.append(len(crops) / (time.process_time() - c))
            wall.append(len(crops) / (time.perf_counter() - t))
        per_cpu = float(np.median(cpu))
        out.append({"codec": codec, "frames": len(crops), "crops_per_cpu_s": per_cpu,
                    "crops_per_s": float(np.median(wall)), "cpu_all": cpu,
                    "store_bytes_per_crop": disk_bytes(ws.faces / "v" / "crops") / len(crops),
                    "gpu_crops_per_s": GPU_CROPS_PER_S, "cores_per_gpu": GPU_CROPS_PER_S / per_cpu})
        shutil.rmtree(root / codec, ignore_errors=True)
    return out

STAGE = """
import json, sys, time
from pathlib import Path
from afwpipe.extract import ExtractConfig, run_extract
from afwpipe.store import Workspace
work, enc, weights, bs, dev = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
cfg = ExtractConfig(enc, weights=None if weights == "default" else weights, device=dev, batch_size=bs)
t = time.perf_counter()
s = run_extract(Workspace(work), cfg, progress=False)
dt = time.perf_counter() - t
if s.failures:
    raise SystemExit(f"extract failed: {[r.error for r in s.failures]}")
print(json.dumps({"frames": sum(r.frames for r in s.results), "seconds": dt}))
"""


def fake_face_stage(root: Path, frames: int, seconds: float, fps: float = 25.0) -> store.Workspace:
    """A workspace with one video: random 224x224 crops (T = frames) and `seconds` of 16 kHz noise."""
    ws = store.Workspace(root)
    rng = np.random.default_rng(0)
    g = store.begin_video(ws.faces, "v")
    store.write_time_array(g, "crops", rng.integers(0, 255, (frames, 224, 224, 3), dtype=np.uint8))
    store.write_time_array(g, "present", np.ones(frames, bool))
    store.write_time_array(g, "times", np.arange(frames) / fps)
    store.mark_complete(g)
    a = store.begin_video(ws.audio, "v", {"sample_rate": 16000})
    store.write_time_array(a, "wave", (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32))
    store.mark_complete(a, present=True)
    write_index(ws, [{"name": "v", "n_frames": frames}])
    return ws


def long_face_stage(root: Path, frames: int, fps: float = 25.0, block: int = 512) -> store.Workspace:
    """A workspace with one video of ``frames`` synthetic 224x224 crops (a smooth gradient, the same in
    every frame, so the store stays small on disk while the crops decode to ``frames`` x 147 KiB), written
    ``block`` frames at a time so this process never holds them all. For peak-RSS runs of the extract
    stage on videos whose crops are many times the process's base memory."""
    ws = store.Workspace(root)
    y, x = np.mgrid[:224, :224]
    crop = np.stack([x, y, (x + y) // 2], -1).astype(np.uint8)
    g = store.begin_video(ws.faces, "v")
    arr = store.create_time_array(g, "crops", (frames, 224, 224, 3), np.uint8)
    writer = store.TimeWriter(arr)
    for i in range(0, frames, block):
        writer.append(np.broadcast_to(crop, (min(block, frames - i), 224, 224, 3)))
    writer.close()
    store.write_time_array(g, "present", np.ones(frames, bool))
    store.write_time_array(g, "times", np.arange(frames) / fps)
    store.mark_complete(g)
    write_index(ws, [{"name": "v", "n_frames": frames}])
    return ws


def measure(encoder: str, ws: store.Workspace, weights, device: str, batch_size: int, repeats: int = 1) -> dict:
    """Stage vs bare forward of ``encoder`` on the one video of ``ws`` (``fake_face_stage``), both warm.

    The model is built once (``model_build_s``, apart) and warmed up on one batch; the stage
    (``EncoderWorker.run_video``: read crops / wave from Zarr, encode, write) and the forward (the same
    data already in memory, the same encoder batch size) then alternate ``repeats`` times (stage first
    on even repeats), the stage's output removed before each run. ``stage_fps`` / ``forward_fps`` are
    the medians, ``stage_all`` / ``forward_all`` the lists.
    """
    t = time.perf_counter()
    stage = EncoderWorker(ws, ExtractConfig(encoder, weights=weights, device=device, batch_size=batch_size),
                         progress=False)
    build_s = time.perf_counter() - t
    enc = stage.encoder
    faces = store.open_store(ws.faces, "r")["v"]
    visual = enc.cfg.modality == "visual"
    if visual:  # warm-up: first-call costs belong to neither timing
        enc.encode_crops(faces["crops"][:batch_size])
        data = (faces["crops"][...],)
    else:
        enc.encode_audio(store.open_store(ws.audio, "r")["v/wave"][:16000], faces["times"][:25])
        data = (store.open_store(ws.audio, "r")["v/wave"][...], faces["times"][...])
    rec = ws.read_index().records[0]
    frames = faces["times"].shape[0]

    def run_stage() -> float:
        shutil.rmtree(stage.out, ignore_errors=True)
        t = time.perf_counter()
        stage.run_video(rec)
        return frames / (time.perf_counter() - t)

    def run_forward() -> float:
        t = time.perf_counter()
        (enc.encode_crops if visual else enc.encode_audio)(*data)
        return frames / (time.perf_counter() - t)

    st, fw = [], []
    for i in range(repeats):
        if i % 2 == 0:
            st.append(run_stage())
            fw.append(run_forward())
        else:
            fw.append(run_forward())
            st.append(run_stage())
    return {"encoder": encoder, "frames": frames, "batch_size": batch_size, "model_build_s": build_s,
            "stage_fps": float(np.median(st)), "forward_fps": float(np.median(fw)),
            "stage_all": st, "forward_all": fw, "ratio": float(np.median(st) / np.median(fw))}


def measure_rss(works: list[Path], encoder: str, weights: str | None, device: str, batch_size: int) -> list[dict]:
    """Peak RSS of the extract stage, each in a fresh process, on workspaces with complete face stores
    (e.g. ``long_face_stage`` of growing lengths). ``weights`` None = default.

    Returns per workspace ``{"frames", "rss_mib", "stage_fps"}``.
    """
    args = (encoder, weights or "default", str(batch_size), device)
    out = []
    for work in works:
        r, rss = run_child(STAGE, str(work), *args)
        out.append({"frames": r["frames"], "rss_mib": rss, "stage_fps": r["frames"] / r["seconds"]})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=64, help="face crops for the visual encoder")
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds of audio (25 fps frames) for whisper")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--weights", default="random", help="'random' (default) or a weights file for mae")
    ap.add_argument("--encoders", default="mae,whisper")
    ap.add_argument("--data-path", action="store_true",
                    help="measure the data path with the null encoder instead (crops per CPU-second per codec)")
    ap.add_argument("--codecs", default="zstd,lz4,jpeg90", help="--data-path: crop codecs of the faces store")
    args = ap.parse_args()
    if args.data_path:
        with tempfile.TemporaryDirectory() as tmp:
            rows = measure_data_path(Path(tmp), real_crops(args.frames), args.codecs.split(","),
                                     args.batch_size, repeats=3)
        print("extract data path, null encoder (numbers under load unless the machine was idle)")
        print(f"{'codec':<8} {'crops/cpu-s':>11} {'crops/s':>9} {'KB/crop':>8} {'cores per GPU':>14}")
        for r in rows:
            print(f"{r['codec']:<8} {r['crops_per_cpu_s']:>11.0f} {r['crops_per_s']:>9.0f} "
                  f"{r['store_bytes_per_crop'] / 1e3:>8.1f} {r['cores_per_gpu']:>14.1f}")
        print(json.dumps(rows))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for enc in args.encoders.split(","):
            visual = enc in ("mae", "convnext", "mini_xception") or enc.startswith("timm:")
            frames = args.frames if visual else int(args.seconds * 25)
            ws = fake_face_stage(Path(tmp) / enc.replace(":", "_"), frames, args.seconds if not visual else frames / 25)
            rows.append(measure(enc, ws, args.weights, args.device, args.batch_size))
    print(f"{'encoder':<14} {'frames':>6} {'stage f/s':>10} {'forward f/s':>12} {'ratio':>6} {'build s':>8}")
    for r in rows:
        print(f"{r['encoder']:<14} {r['frames']:>6} {r['stage_fps']:>10.1f} {r['forward_fps']:>12.1f} "
              f"{r['ratio']:>6.2f} {r['model_build_s']:>8.1f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
