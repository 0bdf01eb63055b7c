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
from common import cache_state, disk_bytes, drop_page_cache, resident_fraction, run_child

DIMS = {"mae": 768, "logmel": 80}  # a visual and an audio encoder of docs/encoders.md
K = 100


def build(root: Path, n_videos: int, n_frames: int, seed: int = 0, dims: dict[str, int] = DIMS
          ) -> tuple[store.Workspace, list[str]]:
    """A workspace of ``n_videos`` x ``n_frames`` float16 features of ``dims`` (Gaussian noise) and random
    labels, written through :mod:`afwpipe.store` like extract does."""
    rng = np.random.default_rng(seed)
    ws = store.Workspace(root)
    labels = store.open_store(ws.labels, "w")
    names = [f"video{i:03d}" for i in range(n_videos)]
    for name in names:
        for enc, d in dims.items():
            g = store.begin_video(ws.features(enc), name, {"encoder": enc, "dim": d, "weights": "random"})
            store.write_time_array(g, "emb", rng.normal(size=(n_frames, d)).astype(np.float16))
            store.write_time_array(g, "present", np.ones(n_frames, bool))
            store.mark_complete(g)
        random_labels(labels, name, n_frames, rng)
    return ws, names


def random_labels(labels, name: str, n_frames: int, rng: np.random.Generator) -> None:
    """Random AU / EXPR / VA labels of video ``name`` in the labels store ``labels`` (an open group)."""
    g = labels.create_group(name)
    store.write_time_array(g, "au", rng.integers(0, 2, (n_frames, 12)).astype(np.int8))
    store.write_time_array(g, "expr", rng.integers(0, 8, n_frames).astype(np.int8))
    store.write_time_array(g, "va", rng.uniform(-1, 1, (n_frames, 2)).astype(np.float32))


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


# --- training beyond the cache (issue 14): a store several times the whole-video cache ---------------------

BIG_DIMS = {"mae": 768, "whisper": 512}  # a visual and an audio encoder of docs/encoders.md


def big_dataset(features, labels: dict, names: list[str], cache_bytes: int) -> ClipDataset:
    """The training clips of the beyond-the-cache rows: K=100, stride K (every frame once: the reads are a
    larger share of an epoch than with the default stride K/2)."""
    return ClipDataset(features, labels, names, K, stride=K, cache_bytes=cache_bytes)


def measure_beyond_cache(ws: store.Workspace, names: list[str], cache_bytes: int, repeats: int = 3,
                         device: str = "cpu") -> dict:
    """Frames/s of one shuffled epoch (loader alone, and a ``tcn`` head) from the Zarr stores, page cache
    dropped and the whole-video cache empty before each, vs the same clips in the same order from
    in-memory arrays (``ArrayFeatures``, same cache budget, so the same block-shuffled order). Repeats
    alternate which side runs first. Returns per part ``{"zarr": [...], "memory": [...]}`` frames/s."""
    labels = load_labels(ws, names)
    zf = ZarrFeatures(ws, list(BIG_DIMS))
    memory = ArrayFeatures({e: {n: zf.load(e, n) for n in names} for e in BIG_DIMS})
    stores = [ws.features(e) for e in BIG_DIMS]
    frames = sum(big_dataset(memory, labels, names[:1], cache_bytes).n_frames) * len(names)

    def run(part: str, feats) -> float:
        ds = big_dataset(feats, labels, names, cache_bytes)
        if feats is not memory:
            drop_page_cache(*stores)
        t = time.perf_counter()
        if part == "loader":
            loader_pass(ds)
        else:
            train_pass(ds, labels, device)
        return frames / (time.perf_counter() - t)

    train_pass(big_dataset(memory, labels, names[:4], cache_bytes), labels, device)  # torch's first-call costs
    out = {}
    for part in ("loader", "train"):
        runs = {"zarr": [], "memory": []}
        for r in range(repeats):
            for side in (("zarr", "memory") if r % 2 == 0 else ("memory", "zarr")):
                runs[side].append(run(part, memory if side == "memory" else ZarrFeatures(ws, list(BIG_DIMS))))
        out[part] = runs
    out["frames"] = frames
    return out


_RSS_CHILD = """
import json, re, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import numpy as np
import train_speed as ts
from afwpipe import store
from afwpipe.readers import ZarrFeatures, load_labels
from common import drop_page_cache
ws, cache, part = store.Workspace(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
names = sorted(p.name for p in ws.features("mae").iterdir() if p.is_dir())
labels = load_labels(ws, names)
ds = ts.big_dataset(ZarrFeatures(ws, list(ts.BIG_DIMS)), labels, names, cache)
drop_page_cache(*[ws.features(e) for e in ts.BIG_DIMS])
import torch
torch.zeros(1)
if part == "train":  # the model, optimiser and torch's first-call buffers before the base is taken
    ts.train_pass(ts.big_dataset(ds.features, labels, names[:2], cache), labels)
rss = lambda key: int(re.search(key + r":\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
base = rss("VmRSS")
ts.loader_pass(ds) if part == "loader" else ts.train_pass(ds, labels)
print(json.dumps({"base_mib": base, "cache_max_mib": ds.cache.nbytes / 2**20, "misses": ds.cache.misses}))
"""


def measure_beyond_cache_rss(ws: store.Workspace, cache_bytes: int, part: str = "train") -> dict:
    """Peak RSS (``VmHWM``, MiB) of a fresh process running one shuffled Zarr epoch (``part``: ``loader``
    or ``train``) on ``ws`` with a ``cache_bytes`` cache, and its RSS just before the epoch (``base_mib``,
    the dataset built, torch loaded and, for ``train``, one warm-up step on one video done)."""
    out, peak = run_child(_RSS_CHILD, str(ws.root), str(cache_bytes), part)
    return {**out, "peak_mib": peak}


def read_rates(ws: store.Workspace, names: list[str], ahead: tuple[int, ...] = (0, 2, 8)) -> dict:
    """Bytes/s of reading every video's features (``BIG_DIMS``, emb + present) through ``ZarrFeatures``,
    one video after the other, the page cache dropped before each way: ``ahead_0`` plain, ``ahead_<n>``
    with the next ``n`` videos announced (``will_need``) before each video is read (the loader announces 2),
    and ``warm`` (plain, every file already in the page cache: Zarr's own cost)."""
    stores = [ws.features(e) for e in BIG_DIMS]
    out = {}
    for way in [f"ahead_{n}" for n in ahead] + ["warm"]:
        zf = ZarrFeatures(ws, list(BIG_DIMS))
        for e in BIG_DIMS:  # metadata opened before timing, as the loader's dataset does
            for n in names:
                zf.shape(e, n)
        if way != "warm":
            drop_page_cache(*stores)
        state = cache_state(resident_fraction(*stores))
        n_ahead = int(way.split("_")[1]) if way != "warm" else 0
        t, nbytes = time.perf_counter(), 0
        for i, n in enumerate(names):
            if n_ahead:
                zf.will_need(names[i:i + 1 + n_ahead])
            for e in BIG_DIMS:
                emb, present = zf.load(e, n)
                nbytes += emb.nbytes + present.nbytes
        dt = time.perf_counter() - t
        out[way] = {"bytes_per_s": nbytes / dt, "bytes": nbytes, "seconds": dt, "cache": state}
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
