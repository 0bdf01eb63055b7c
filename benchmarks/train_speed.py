"""Training throughput on cached features, and read speed of the feature cache layouts.

Prints (frames/s and ratios) on a synthetic workspace sized to run in about a minute on a laptop CPU:

1. Training frames/s of one epoch of a ``tcn`` head with the Zarr-backed loader (whole-video reads into
   the LRU cache, first epoch included) vs the same clips from in-memory arrays (``ArrayFeatures``), and
   the loaders alone (no model) for the same two sources.
2. Read speed of the features of every video: the Zarr stores (whole-video reads, what afwpipe does)
   vs per-clip Zarr reads (100-frame slices) vs a per-frame ``.npy`` cache (one file per frame and
   encoder, the layout several ABAW teams use). Files are in the page cache for every layout (each is
   read once before timing), so these are the software costs, not the disk's.

Run: ``OMP_NUM_THREADS=1 python benchmarks/train_speed.py [--videos 24 --frames 1200]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from afwpipe import store
from afwpipe.clips import ArrayFeatures, ClipDataset, ZarrFeatures, load_labels
from afwpipe.heads import create_head
from afwpipe.losses import au_pos_weights
from afwpipe.train import train_epoch

DIMS = {"mae": 768, "logmel": 80}  # a visual and an audio encoder of the DESIGN table
K = 100


def build(root: Path, n_videos: int, n_frames: int, seed: int = 0) -> tuple[store.Workspace, list[str]]:
    rng = np.random.default_rng(seed)
    ws = store.Workspace(root)
    labels = store.open_store(ws.labels, "w")
    names = [f"video{i:03d}" for i in range(n_videos)]
    for name in names:
        for enc, d in DIMS.items():
            g = store.begin_video(ws.features(enc), name, {"encoder": enc, "dim": d, "weights": "random"})
            store.write_time_array(g, "emb", rng.normal(size=(n_frames, d)).astype(np.float16))
            store.write_time_array(g, "present", np.ones(n_frames, bool))
            store.mark_complete(g)
        g = labels.create_group(name)
        store.write_time_array(g, "au", rng.integers(0, 2, (n_frames, 12)).astype(np.int8))
        store.write_time_array(g, "expr", rng.integers(0, 8, n_frames).astype(np.int8))
        store.write_time_array(g, "va", rng.uniform(-1, 1, (n_frames, 2)).astype(np.float32))
    return ws, names


def write_npy_cache(ws: store.Workspace, names: list[str], out: Path) -> None:
    for enc in DIMS:
        for name in names:
            emb = store.read_array(ws.features(enc), name, "emb")
            d = out / enc / name
            d.mkdir(parents=True)
            for i, row in enumerate(emb):
                np.save(d / f"{i + 1:05d}.npy", row)


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def loader_pass(ds: ClipDataset, batch_size: int = 32) -> int:
    frames = 0
    for b in ds.batches(batch_size, shuffle=True, rng=np.random.default_rng(0)):
        frames += int(b["mask"].sum())
    return frames


def train_pass(ds: ClipDataset, labels: dict) -> int:
    torch.manual_seed(0)
    head = create_head("tcn", ds.dims, ["au"], channels=128, mlp_dim=256, dilations=(1, 2, 4))
    opt = torch.optim.AdamW(head.parameters(), lr=1e-4, weight_decay=1e-2)
    pos_w = au_pos_weights(np.concatenate([labels[n]["au"] for n in ds.names]))
    train_epoch(head, ds, opt, np.random.default_rng(0), "cpu", 32, au_pos_weight=pos_w)
    return sum(ds.n_frames) * 2  # stride K/2: every frame is in two clips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--frames", type=int, default=1200)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="afwpipe-bench-"))
    try:
        t_build, (ws, names) = timed(lambda: build(tmp / "ws", args.videos, args.frames))
        total = args.videos * args.frames
        mib = total * sum(DIMS.values()) * 2 / 2**20
        print(f"synthetic store: {args.videos} videos x {args.frames} frames, encoders {DIMS} "
              f"(float16, {mib:.0f} MiB) built in {t_build:.1f} s; K={K}, stride {K // 2}, batch 32, "
              f"torch threads {torch.get_num_threads()}")
        labels = load_labels(ws, names)

        def zarr_ds():
            return ClipDataset(ZarrFeatures(ws, list(DIMS)), labels, names, K)

        memory = ArrayFeatures({e: {n: ZarrFeatures(ws, [e]).load(e, n) for n in names} for e in DIMS})

        def mem_ds():
            return ClipDataset(memory, labels, names, K)

        print("\n1. training (tcn head, CPU); datasets built before timing, the Zarr cache starts empty")
        train_pass(mem_ds(), labels)  # warm-up: torch's first forward/backward costs are not the loader's
        for what, run in (("loader only", loader_pass), ("train epoch", lambda d: train_pass(d, labels))):
            dz, dm = zarr_ds(), mem_ds()
            tz, fz = timed(lambda: run(dz))  # first epoch: whole-video reads are inside the timing
            tz2, fz2 = timed(lambda: run(dz))  # second epoch: everything cached
            tm, fm = timed(lambda: run(dm))
            print(f"   {what:12s} in-memory {fm / tm:9,.0f} frames/s | zarr-backed epoch 1 {fz / tz:9,.0f} frames/s "
                  f"(ratio {(fz / tz) / (fm / tm):.2f}), epoch 2 {fz2 / tz2:9,.0f} frames/s "
                  f"(ratio {(fz2 / tz2) / (fm / tm):.2f})")

        print("\n2. reading every video's features")
        groups = {e: store.open_store(ws.features(e), "r") for e in DIMS}

        def zarr_whole():
            return sum(len(groups[e][f"{n}/emb"][...]) for e in DIMS for n in names) // len(DIMS)

        def zarr_clips():
            return sum(len(groups[e][f"{n}/emb"][s:s + K]) for e in DIMS for n in names
                       for s in range(0, args.frames, K)) // len(DIMS)

        npy = tmp / "npy"
        t_npy_write, _ = timed(lambda: write_npy_cache(ws, names, npy))

        def npy_frames():
            n = 0
            for e in DIMS:
                for name in names:
                    files = sorted((npy / e / name).iterdir())
                    n += len(np.stack([np.load(f) for f in files]))
            return n // len(DIMS)

        rates = {}
        for label, fn in (("zarr whole-video", zarr_whole), ("zarr per-clip (100 frames)", zarr_clips),
                          ("per-frame .npy files", npy_frames)):
            fn()  # warm the page cache
            t, frames = timed(fn)
            rates[label] = frames / t
            print(f"   {label:28s} {frames / t:12,.0f} frames/s (all encoders)")
        z = rates["zarr whole-video"]
        print(f"   ratio zarr whole-video / per-frame .npy: {z / rates['per-frame .npy files']:.1f}x; "
              f"/ zarr per-clip: {z / rates['zarr per-clip (100 frames)']:.1f}x "
              f"(.npy cache: {total * len(DIMS):,} files, written in {t_npy_write:.1f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
