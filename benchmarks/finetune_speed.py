"""Speed of the fine-tune (``afwpipe finetune``) on this CPU, on a synthetic workspace of 224-px face crops.

Rows:

1. The data path with a null model: the block-buffered crop reader (:mod:`afwpipe.finetune.data`: contiguous
   zarr reads, buffer shuffle, timm augmentation: random resized crop + flip) over one epoch, in frames/s of wall
   time and frames per CPU-second (process CPU time, ``time.process_time``), beside what one GPU consumes: a
   ViT-B forward + backward runs at ~1,000+ images/s on one large GPU (the issue's figure), so ``1000 / (frames
   per CPU-second)`` is the number of loader cores one GPU needs.
2. The stage ÷ the bare training step with a small random-weight model (timm ``test_vit`` at 64 px): one epoch
   of :func:`afwpipe.finetune.finetune` (reader, augmentation, loss, AdamW, schedule, checkpoint) vs the same
   number of forward + backward + AdamW steps on batches already in memory. Goal: bare / stage >= 0.9.

Run: ``OMP_NUM_THREADS=1 python benchmarks/finetune_speed.py [--videos 8 --frames 600 --epochs 1]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from afwpipe import store
from afwpipe.encoders import create_encoder
from afwpipe.finetune import FinetuneConfig, finetune
from afwpipe.finetune.data import CropBuffers, epoch_order, local_batches, make_augment, plan_frames
from afwpipe.finetune.model import FinetuneNet, build_optimizer
from afwpipe.finetune.tasks import FinetuneTask
from common import write_index

AUGMENT = {"scale": [0.8, 1.0], "hflip": 0.5, "color_jitter": 0.0, "auto_augment": None}
MODEL = {"encoder": "timm:test_vit", "input_size": 64}


def build(root: Path, n_videos: int, n_frames: int, size: int = 224, seed: int = 0) -> store.Workspace:
    """``n_videos`` videos of ``n_frames`` smooth random 224-px crops (low-frequency noise: zstd compresses it
    about as much as real faces) with EXPR labels 0..7, official ``train`` but the last (``val``)."""
    rng = np.random.default_rng(seed)
    ws = store.Workspace(root)
    ws.root.mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n_videos):
        name = f"video{i:03d}"
        small = rng.integers(0, 256, (n_frames, size // 16, size // 16, 3), dtype=np.uint8)
        crops = np.repeat(np.repeat(small, 16, axis=1), 16, axis=2)
        expr = rng.integers(0, 8, n_frames).astype(np.int8)
        g = store.begin_video(ws.labels, name)
        store.write_time_array(g, "expr", expr)
        store.mark_complete(g)
        f = store.begin_video(ws.faces, name)
        store.write_time_array(f, "present", np.ones(n_frames, bool))
        store.write_time_array(f, "crops", crops)
        store.mark_complete(f, n_frames=n_frames)
        split = "val" if i == n_videos - 1 else "train"  # the official split needs a validation video
        recs.append({"name": name, "video": name, "splits": {"expr": split}, "split": split, "fold": i % 2,
                     "n_frames": n_frames, "labelled": {"expr": n_frames}})
    write_index(ws, recs, folds={"k": 2})
    return ws


def data_path(ws: store.Workspace, batch: int) -> dict:
    """Row 1: one epoch of the reader with augmentation and no model."""
    names = [r.name for r in ws.read_index().records if r.split == "train"]
    plan = plan_frames(ws, names, "expr", 1)
    order = epoch_order(plan, 0, 1, 128, 16)
    ds = CropBuffers(ws, plan, order, 0, 1, batch, 0, plan.n_frames // batch * batch, make_augment(AUGMENT, 224))
    t0, c0, n = time.perf_counter(), time.process_time(), 0
    for x, _ in local_batches(torch.utils.data.DataLoader(ds, batch_size=None), batch):
        n += len(x)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"frames": n, "frames_per_s": n / wall, "frames_per_cpu_s": n / cpu, "gpu_cores_needed": 1000 / (n / cpu)}


def stage_vs_bare(ws: store.Workspace, batch: int, epochs: int) -> dict:
    """Row 2: the stage's epochs vs bare steps of the same model on in-memory batches."""
    cfg = FinetuneConfig(encoder="vit", task="expr", options=MODEL, weights="random", epochs=epochs,
                         batch_size=batch, frame_stride=1, augment=AUGMENT, device="cpu", select_frac=0.2)
    rec = finetune(ws, cfg, progress=False).record
    stage = sum(e["seconds"] for e in rec["epochs"])
    steps = rec["epochs"][-1]["steps"]
    torch.manual_seed(0)
    enc = create_encoder("timm:test_vit", weights="random", input_size=64)
    net = FinetuneNet(enc, "expr").train()
    opt, _ = build_optimizer(net, 1e-4, 0.05, 0.75)
    x = torch.randint(0, 256, (batch, 224, 224, 3), dtype=torch.uint8)
    y = torch.randint(0, 8, (batch,))
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = FinetuneTask("expr").loss(net(x), y, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    bare = time.perf_counter() - t0
    return {"steps": steps, "stage_s": stage, "bare_s": bare, "bare_over_stage": bare / stage}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="afwpipe-ftbench-"))
    try:
        ws = build(tmp / "ws", args.videos, args.frames)
        r1 = data_path(ws, args.batch)
        print(f"1. fine-tune data path, null model: {r1['frames_per_s']:.0f} frames/s, "
              f"{r1['frames_per_cpu_s']:.0f} frames per CPU-second ({r1['frames']} frames, 224 px, RRC + flip); "
              f"a GPU at 1,000 images/s needs {r1['gpu_cores_needed']:.1f} loader cores")
        r2 = stage_vs_bare(ws, args.batch, args.epochs)
        print(f"2. fine-tune stage / bare step (test_vit 64 px, batch {args.batch}, {r2['steps']} steps): "
              f"bare {r2['bare_s']:.1f} s, stage {r2['stage_s']:.1f} s, ratio {r2['bare_over_stage']:.2f} (goal >= 0.9)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
