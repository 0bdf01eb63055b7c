"""Training throughput on cached features, and read speed of the feature cache layouts.

Prints (frames/s and ratios) on a synthetic workspace sized to run in about a minute on a laptop CPU:

1. Training frames/s of one epoch of a ``tcn`` head with the Zarr-backed loader (whole-video reads into
   the LRU cache, first epoch included) vs the same clips from in-memory arrays (``ArrayFeatures``), and
   the loaders alone (no model) for the same two sources.
2. Read speed of the features of every video: the Zarr stores (whole-video reads, what afwpipe does)
   vs per-clip Zarr reads (100-frame slices) vs a per-frame ``.npy`` cache (one file per frame and
   encoder, the layout several ABAW teams use). Files are in the page cache for every layout (each is
   read once before timing), so these are the software costs, not the disk's. ``measure_reads(cold=True)``
   (used by run.py) evicts each layout's files from the page cache instead, to see the disk's share.

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
from afwpipe.clips import ClipDataset
from afwpipe.readers import ArrayFeatures, ZarrFeatures, load_labels
from afwpipe.heads import create_head
from afwpipe.losses import au_pos_weights
from afwpipe.train import train_epoch
from common import cache_state, disk_bytes, drop_page_cache, resident_fraction

DIMS = {"mae": 768, "logmel": 80}  # a visual and an audio encoder of docs/encoders.md
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


def write_npy_video_cache(ws: store.Workspace, names: list[str], out: Path) -> None:
    """One ``.npy`` per video and encoder (``out/<encoder>/<video>.npy``, float16 [T, D]): the simple
    cache a team writes when it does not split frames into files."""
    for enc in DIMS:
        (out / enc).mkdir(parents=True)
        for name in names:
            np.save(out / enc / f"{name}.npy", store.read_array(ws.features(enc), name, "emb"))


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def loader_pass(ds: ClipDataset, batch_size: int = 32) -> int:
    frames = 0
    for b in ds.batches(batch_size, shuffle=True, rng=np.random.default_rng(0)):
        frames += int(b["mask"].sum())
    return frames


def train_pass(ds: ClipDataset, labels: dict, device: str = "cpu") -> int:
    torch.manual_seed(0)
    head = create_head("tcn", ds.dims, ["au"], channels=128, mlp_dim=256, dilations=(1, 2, 4)).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-4, weight_decay=1e-2)
    pos_w = au_pos_weights(np.concatenate([labels[n]["au"] for n in ds.names]))
    train_epoch(head, ds, opt, np.random.default_rng(0), device, 32, au_pos_weight=pos_w)
    return sum(ds.n_frames) * 2  # stride K/2: every frame is in two clips


def measure_training(ws: store.Workspace, names: list[str], device: str = "cpu", repeats: int = 1) -> dict:
    """Frames/s of the loader alone and of a ``tcn`` training epoch, from in-memory arrays and from the
    Zarr-backed loader (epoch 1: whole-video reads inside the timing; epoch 2: all cached). Each
    measurement is repeated ``repeats`` times (a fresh Zarr-backed dataset, empty cache, each time).

    Returns ``{"loader" | "train": {"memory", "zarr_epoch1", "zarr_epoch2"}}`` in frames/s (the median
    of the repeats) and the same keys under ``"loader_all"`` / ``"train_all"``: lists, one per repeat.
    """
    labels = load_labels(ws, names)

    def zarr_ds():
        return ClipDataset(ZarrFeatures(ws, list(DIMS)), labels, names, K)

    memory = ArrayFeatures({e: {n: ZarrFeatures(ws, [e]).load(e, n) for n in names} for e in DIMS})

    def mem_ds():
        return ClipDataset(memory, labels, names, K)

    train_pass(mem_ds(), labels, device)  # warm-up: torch's first forward/backward costs are not the loader's
    out = {}
    for what, run in (("loader", loader_pass), ("train", lambda d: train_pass(d, labels, device))):
        run(mem_ds())  # warm-up of this pass (allocator, first-call costs)
        runs = {"memory": [], "zarr_epoch1": [], "zarr_epoch2": []}
        for _ in range(repeats):
            dz, dm = zarr_ds(), mem_ds()
            tz, fz = timed(lambda: run(dz))  # first epoch: whole-video reads are inside the timing
            tz2, fz2 = timed(lambda: run(dz))  # second epoch: everything cached
            tm, fm = timed(lambda: run(dm))
            for k, v in (("memory", fm / tm), ("zarr_epoch1", fz / tz), ("zarr_epoch2", fz2 / tz2)):
                runs[k].append(v)
        out[what] = {k: float(np.median(v)) for k, v in runs.items()}
        out[what + "_all"] = runs
    return out


READ_LAYOUTS = ("zarr whole-video", "zarr per-clip (100 frames)", "per-frame .npy files", "per-video .npy files")


def measure_reads(ws: store.Workspace, names: list[str], npy: Path, cold: bool = False,
                  npy_video: Path | None = None) -> dict:
    """Read every video's features in each layout of ``READ_LAYOUTS`` (the per-frame .npy cache in ``npy``,
    see ``write_npy_cache``; the per-video one in ``npy_video``, see ``write_npy_video_cache``, skipped
    when None); warm: after one untimed read; cold: after evicting that layout's files from the
    page cache. Returns per layout: frames/s (frames counted once, all encoders read), seconds, frames,
    ``raw_bytes`` (float16 features), ``disk_bytes`` (file sizes) and ``cache`` ('cold' / 'warm' / ...).
    """
    n_frames = len(store.read_array(ws.features(next(iter(DIMS))), names[0], "emb"))

    def zarr_whole():
        groups = {e: store.open_store(ws.features(e), "r") for e in DIMS}
        return sum(len(groups[e][f"{n}/emb"][...]) for e in DIMS for n in names) // len(DIMS)

    def zarr_clips():
        groups = {e: store.open_store(ws.features(e), "r") for e in DIMS}
        return sum(len(groups[e][f"{n}/emb"][s:s + K]) for e in DIMS for n in names
                   for s in range(0, n_frames, K)) // len(DIMS)

    def npy_frames():
        n = 0
        for e in DIMS:
            for name in names:
                files = sorted((npy / e / name).iterdir())
                n += len(np.stack([np.load(f) for f in files]))
        return n // len(DIMS)

    def npy_videos():
        return sum(len(np.load(npy_video / e / f"{n}.npy")) for e in DIMS for n in names) // len(DIMS)

    stores = [ws.features(e) for e in DIMS]
    embs = [ws.features(e) / n / "emb" for e in DIMS for n in names]  # what is read (not `present`)
    out = {}
    for label, fn, paths, read in ((READ_LAYOUTS[0], zarr_whole, stores, embs), (READ_LAYOUTS[1], zarr_clips, stores, embs),
                                   (READ_LAYOUTS[2], npy_frames, [npy], [npy]),
                                   (READ_LAYOUTS[3], npy_videos, [npy_video], [npy_video])):
        if label == READ_LAYOUTS[3] and npy_video is None:
            continue
        if cold:
            drop_page_cache(*paths)
        else:
            fn()  # warm the page cache
        state = cache_state(resident_fraction(*read))
        t, frames = timed(fn)
        out[label] = {"frames_per_s": frames / t, "seconds": t, "frames": frames, "cache": state,
                      "raw_bytes": frames * sum(DIMS.values()) * 2, "disk_bytes": disk_bytes(*read)}
    return out


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

        print("\n1. training (tcn head, CPU); datasets built before timing, the Zarr cache starts empty")
        for what, r in ((k, v) for k, v in measure_training(ws, names).items() if not k.endswith("_all")):
            m = r["memory"]
            print(f"   {what + (' only' if what == 'loader' else ' epoch'):12s} in-memory {m:9,.0f} frames/s | "
                  f"zarr-backed epoch 1 {r['zarr_epoch1']:9,.0f} frames/s (ratio {r['zarr_epoch1'] / m:.2f}), "
                  f"epoch 2 {r['zarr_epoch2']:9,.0f} frames/s (ratio {r['zarr_epoch2'] / m:.2f})")

        print("\n2. reading every video's features")
        npy = tmp / "npy"
        t_npy_write, _ = timed(lambda: write_npy_cache(ws, names, npy))
        rates = {k: v["frames_per_s"] for k, v in measure_reads(ws, names, npy).items()}
        for label, rate in rates.items():
            print(f"   {label:28s} {rate:12,.0f} frames/s (all encoders)")
        z = rates[READ_LAYOUTS[0]]
        print(f"   ratio zarr whole-video / per-frame .npy: {z / rates[READ_LAYOUTS[2]]:.1f}x; "
              f"/ zarr per-clip: {z / rates[READ_LAYOUTS[1]]:.1f}x "
              f"(.npy cache: {total * len(DIMS):,} files, written in {t_npy_write:.1f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
