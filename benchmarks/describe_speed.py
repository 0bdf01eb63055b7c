"""Describe stage speed: the whole `describe` stage vs the model's own generate on the same inputs.

A random-weight Qwen2-VL (``--layers`` x ``--hidden``; tests/vlm_models.py, built offline from its config class)
saved with ``save_pretrained`` and loaded as ``hf:bench/qwen2-vl`` from that folder; one video of ``--seconds`` s at
25 fps whose faces.zarr holds JPEG (quality 90) 224x224 face crops, every frame with a face, as detect writes them.
  stage segments/s     = segments / wall time of ``DescribeWorker.run_video`` (read the frame times and presence,
                         choose and decode the crops, prompt, generate, write the store)
  generate segments/s  = segments / wall time of the model's own recipe on the same crops already in memory:
                         ``processor.apply_chat_template`` + ``processor(...)`` + ``model.generate`` (greedy, same
                         ``max_new_tokens``, same batches of ``batch_size`` segments) + ``batch_decode``
  ratio                = stage / generate (1.0: the model is the only cost)

Usage: python benchmarks/describe_speed.py [--seconds 20] [--repeats 5] [--hidden 128 --layers 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from afwpipe import store
from afwpipe.crop_codec import CropCodec
from afwpipe.describe import DescribeConfig, DescribeWorker
from common import write_index

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from vlm_models import tiny_qwen2_vl  # noqa: E402

FPS = 25.0
SIZE = 224


def fake_face_stage(root: Path, seconds: float) -> store.Workspace:
    """A workspace with one video ``v``: ``seconds`` s of 25 fps frame times, every frame present, JPEG crops of
    smooth random images (a JPEG of noise would be unusually large)."""
    ws = store.Workspace(root)
    n = int(round(seconds * FPS))
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    crops = np.repeat(np.repeat(small, SIZE // 8, axis=1), SIZE // 8, axis=2)
    g = store.begin_video(ws.faces, "v")
    store.write_time_array(g, "times", np.arange(n) / FPS, dims=("frame",))
    store.write_time_array(g, "present", np.ones(n, bool), dims=("frame",))
    codec = CropCodec("jpeg90", 90)
    codec.create(g, n, SIZE)[...] = codec.encode(crops)
    store.mark_complete(g, n_frames=n)
    write_index(ws, [{"name": "v", "n_frames": n}])
    return ws


def measure(ws: store.Workspace, folder: Path, device: str = "cpu", repeats: int = 5, batch_size: int = 4,
            max_new_tokens: int = 16) -> dict:
    """Stage vs the model's own generate on the one video of ``ws``, both warm, order alternating."""
    import torch

    t = time.perf_counter()
    cfg = DescribeConfig(vlm="hf:bench/qwen2-vl", weights=str(folder), device=device, batch_size=batch_size,
                         max_new_tokens=max_new_tokens)
    worker = DescribeWorker(ws, cfg)
    build_s = time.perf_counter() - t
    rec = ws.read_index().records[0]
    times = store.read_array(ws.faces, "v", "times")
    _, _, shown = worker.shown_frames("v", times)
    images = worker.images(rec, np.concatenate(shown))
    segments = [[images[i] for i in s] for s in shown]
    proc, model = worker.vlm.processor, worker.vlm.model  # the same objects, so both sides run the same weights

    def own_generate() -> list[str]:
        out = []
        for b in range(0, len(segments), batch_size):
            batch = segments[b:b + batch_size]
            texts = [proc.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}] * len(s) + [{"type": "text", "text": cfg.prompt}]}],
                add_generation_prompt=True) for s in batch]
            enc = proc(text=texts, images=batch, padding=True, return_tensors="pt").to(device)
            with torch.inference_mode():
                ids = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens)
            out += proc.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return out

    def run_stage() -> float:
        shutil.rmtree(worker.out, ignore_errors=True)
        t = time.perf_counter()
        worker.run_video(rec)
        return len(segments) / (time.perf_counter() - t)

    def run_generate() -> float:
        t = time.perf_counter()
        own_generate()
        return len(segments) / (time.perf_counter() - t)

    run_stage(), run_generate()  # warm-up
    st, gen = [], []
    for i in range(repeats):
        for f in ((run_stage, run_generate) if i % 2 == 0 else (run_generate, run_stage)):
            (st if f is run_stage else gen).append(f())
    return {"segments": len(segments), "frames_per_segment": cfg.frames_per_segment, "batch_size": batch_size,
            "max_new_tokens": max_new_tokens, "model_build_s": build_s, "stage_fps": float(np.median(st)),
            "generate_fps": float(np.median(gen)), "stage_all": st, "generate_all": gen,
            "ratio": float(np.median(st) / np.median(gen))}


def bench_model(folder: Path, hidden: int, layers: int) -> Path:
    """Save the random Qwen2-VL and its processor to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return tiny_qwen2_vl(folder, hidden=hidden, layers=layers)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = bench_model(Path(tmp) / "vlm", args.hidden, args.layers)
        r = measure(fake_face_stage(Path(tmp) / "ws", args.seconds), folder, args.device, args.repeats)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
