"""Encoder stage speed: the whole `extract` stage vs the bare encoder forward on the same frames.

For `mae` (random weights unless --weights) on N face crops and `whisper` on S seconds of audio:
  stage frames/s   = frames / wall time of the stage on one video (read crops/wave from Zarr, encode,
                     write; the model is built once beforehand, its build time printed apart)
  forward frames/s = frames / wall time of the encoder alone on the same data already in memory
  ratio            = stage / forward (1.0: the encoder forward is the only cost)
``measure_rss`` (used by run.py) gives the stage's peak RSS on two face stores (a video and a longer one).

Usage: python benchmarks/extract_speed.py [--frames 64] [--seconds 60] [--device cpu] [--batch-size 16]
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
from afwpipe.extract import EncoderWorker, ExtractConfig
from common import run_child

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
    ws.index.write_text(json.dumps({"videos": [{"name": "v", "path": "v.mp4", "n_frames": frames}]}))
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
    ws.index.write_text(json.dumps({"videos": [{"name": "v", "path": "v.mp4", "n_frames": frames}]}))
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
    rec = ws.read_index()["videos"][0]
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
    args = ap.parse_args()
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
