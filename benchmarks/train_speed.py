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
3. ``--candidates``: the ways of reading the same arrays whole that issue 21 compared before choosing
   (``measure_candidates``: zarr-python and tensorstore on the sharded store, both on one chunk per video,
   a flat memory-mapped file per encoder, one ``.npy`` per video and array), warm and cold, handles
   opened before timing, MB/s and the ratio to the ``.npy`` files with the spread over ``--repeats``.

Run: ``OMP_NUM_THREADS=1 python benchmarks/train_speed.py [--videos 24 --frames 1200] [--candidates --repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
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
    """One ``.npy`` per video, encoder and array (``out/<encoder>/<video>.npy``, float16 [T, D], and
    ``out/<encoder>/<video>.present.npy``, bool [T]): the simple cache a team writes when it does not split
    frames into files, holding the same arrays as the Zarr store, in as many files."""
    for enc in DIMS:
        (out / enc).mkdir(parents=True)
        for name in names:
            np.save(out / enc / f"{name}.npy", store.read_array(ws.features(enc), name, "emb"))
            np.save(out / enc / f"{name}.present.npy", store.read_array(ws.features(enc), name, "present"))


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
    measurement is repeated ``repeats`` times (a fresh Zarr-backed dataset, empty cache, each time; its
    array handles are opened when the dataset is built, before timing). The in-memory side is a warm
    dataset like the Zarr side's epoch 2: its first epoch (which fills its cache and checks each video for
    NaN/Inf once) runs untimed, the second is timed.

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
            run(dm)  # the in-memory dataset's cache filled and checked: a warm dataset, as the Zarr side's epoch 2
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
        zf = opened_zarr_features(ws, names, BIG_DIMS)  # metadata opened before timing, as the loader's dataset does
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


def opened_zarr_features(ws: store.Workspace, names: list[str], dims=DIMS) -> ZarrFeatures:
    """``ZarrFeatures`` of ``dims`` with every video's array handles opened (metadata read), as the loader's
    dataset has them before an epoch."""
    zf = ZarrFeatures(ws, list(dims))
    for e in dims:
        for n in names:
            zf.shape(e, n)
    return zf


def zarr_files(ws: store.Workspace, names: list[str], dims=DIMS) -> list[Path]:
    """The data files ``ZarrFeatures.load`` reads (``emb`` and ``present`` shards of every video), in
    reading order."""
    return [f for e in dims for n in names for a in ("emb", "present")
            for f in sorted((ws.features(e) / n / a).rglob("*")) if f.is_file() and f.name != "zarr.json"]


def measure_reads(ws: store.Workspace, names: list[str], npy: Path, cold: bool = False,
                  npy_video: Path | None = None) -> dict:
    """Read every video's features in each layout of ``READ_LAYOUTS`` (the per-frame .npy cache in ``npy``,
    see ``write_npy_cache``; the per-video one in ``npy_video``, see ``write_npy_video_cache``, skipped
    when None); warm: after one untimed read; cold: after evicting that layout's files from the
    page cache. Zarr whole-video reads go through ``ZarrFeatures.load`` (``emb`` and ``present``), its array
    handles opened before timing; the per-video ``.npy`` files (``emb`` and ``present``) are opened before
    timing too and read with ``np.load`` from the open file. Zarr per-clip reads (zarr-python slices) and
    the per-frame ``.npy`` files open inside the timing (what their workflows do).

    Returns per layout: frames/s (frames counted once, all encoders read), seconds, frames,
    ``raw_bytes`` (float16 features), ``disk_bytes`` (file sizes read) and ``cache`` ('cold' / 'warm' / ...).
    """
    n_frames = len(store.read_array(ws.features(next(iter(DIMS))), names[0], "emb"))
    zf = opened_zarr_features(ws, names)

    def zarr_whole():
        return sum(len(zf.load(e, n)[0]) for e in DIMS for n in names) // len(DIMS)

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

    video_files = [npy_video / e / f"{n}{a}.npy" for e in DIMS for n in names for a in ("", ".present")] \
        if npy_video is not None else []
    handles = [open(f, "rb") for f in video_files]  # noqa: SIM115 - closed below

    def npy_videos():
        frames = 0
        for i, fh in enumerate(handles):
            fh.seek(0)
            a = np.load(fh)
            frames += len(a) if i % 2 == 0 else 0
        return frames // len(DIMS)

    embs = zarr_files(ws, names)
    out = {}
    try:
        for label, fn, paths, read in ((READ_LAYOUTS[0], zarr_whole, embs, embs),
                                       (READ_LAYOUTS[1], zarr_clips, embs, [f for f in embs if "emb" in f.parts]),
                                       (READ_LAYOUTS[2], npy_frames, [npy], [npy]),
                                       (READ_LAYOUTS[3], npy_videos, video_files, video_files)):
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
    finally:
        for fh in handles:
            fh.close()
    return out


def measure_raw_reads(files: list[Path], one_file: Path, cold: bool = True) -> dict:
    """Bytes/s of reading ``files`` whole, one after the other (one ``read`` per file, every file opened
    before timing), and of reading ``one_file`` (the same bytes in one file, see ``concatenate``) in 8 MiB
    reads, opened before timing: what the disk gives for the bytes a reader fetches, with no format.
    ``cold``: each side's files evicted from the page cache first."""
    out = {}
    for label, paths, block in (("same files", files, None), ("one file", [one_file], 8 << 20)):
        fds = [os.open(f, os.O_RDONLY) for f in paths]
        try:
            sizes = [os.fstat(fd).st_size for fd in fds]
            if cold:
                drop_page_cache(*paths)
            else:
                for fd, size in zip(fds, sizes):
                    os.pread(fd, size, 0)
            state = cache_state(resident_fraction(*paths))
            t = time.perf_counter()
            for fd, size in zip(fds, sizes):
                step = block or size
                for off in range(0, size, step):
                    os.pread(fd, min(step, size - off), off)
            dt = time.perf_counter() - t
        finally:
            for fd in fds:
                os.close(fd)
        out[label] = {"bytes_per_s": sum(sizes) / dt, "bytes": sum(sizes), "files": len(paths), "seconds": dt,
                      "cache": state}
    return out


def concatenate(files: list[Path], out: Path) -> Path:
    """Write the bytes of ``files`` one after the other into ``out`` (fsync'd): one file of the same bytes."""
    with open(out, "wb") as fh:
        for f in files:
            fh.write(f.read_bytes())
        fh.flush()
        os.fsync(fh.fileno())
    return out


# --- the candidates for feature reads (issue 21): the same arrays, read whole, several ways -----------------

CANDIDATES = ("zarr-python, sharded (afwpipe before issue 21)", "tensorstore, sharded (ZarrFeatures)",
              "zarr-python, one chunk per video", "tensorstore, one chunk per video",
              "flat memory-mapped file per encoder", "one .npy per video and array")


def measure_candidates(ws: store.Workspace, names: list[str], work: Path, repeats: int = 3) -> dict:
    """Bytes/s of reading every video's ``emb`` and ``present`` whole, both arrays of every encoder, in each
    layout of ``CANDIDATES`` (written under ``work`` from the store of ``ws``), warm (after one untimed
    read) and cold (``POSIX_FADV_DONTNEED`` on that layout's files), every handle opened before timing,
    ``repeats`` times with the layouts' order alternating. Every layout is checked to give the same bytes.

    Returns ``{(candidate, "warm" | "cold"): [bytes/s per repeat]}``.
    """
    import zarr

    from afwpipe.readers import open_array

    arrays = {(e, n): ZarrFeatures(ws, [e]).load(e, n) for e in DIMS for n in names}
    single = work / "single"
    for (e, n), (emb, present) in arrays.items():
        g = zarr.open_group(str(single / f"{e}.zarr"), mode="a").require_group(n)
        for key, a in (("emb", emb), ("present", present)):
            g.create_array(key, shape=a.shape, dtype=a.dtype, chunks=a.shape, compressors=None, overwrite=True)[...] = a
    offsets = {}
    for e in DIMS:
        with open(work / f"flat_{e}.bin", "wb") as fh:
            for n in names:
                emb, present = arrays[(e, n)]
                offsets[(e, n)] = (fh.tell(), emb.shape)
                fh.write(emb.tobytes())
                fh.write(present.tobytes())
    write_npy_video_cache(ws, names, work / "npy")
    keys = list(arrays)

    def zarr_python(root_of):
        h = [(zarr.open_group(str(root_of(e)), mode="r")[n]["emb"], zarr.open_group(str(root_of(e)), mode="r")[n]["present"])
             for e, n in keys]
        return lambda: [(a[...], b[...]) for a, b in h]

    def tensorstore(root_of):
        h = [(open_array(root_of(e) / n / "emb"), open_array(root_of(e) / n / "present")) for e, n in keys]

        def read():
            out = []
            for a, b in h:
                fa, fb = a.read(), b.read()
                out.append((fa.result(), fb.result()))
            return out
        return read

    def flat():
        maps = {e: np.memmap(work / f"flat_{e}.bin", dtype=np.uint8, mode="r") for e in DIMS}

        def read():
            out = []
            for (e, n), (off, (t, d)) in offsets.items():
                end = off + t * d * 2
                out.append((np.array(maps[e][off:end]).view(np.float16).reshape(t, d),
                            np.array(maps[e][end:end + t]).view(bool)))
            return out
        return read

    def npy():
        fhs = [(open(work / "npy" / e / f"{n}.npy", "rb"), open(work / "npy" / e / f"{n}.present.npy", "rb"))  # noqa: SIM115
               for e, n in keys]

        def read():
            out = []
            for a, b in fhs:
                a.seek(0)
                b.seek(0)
                out.append((np.load(a), np.load(b)))
            return out
        return read

    sharded = ws.features
    readers = {CANDIDATES[0]: (zarr_python(sharded), [sharded(e) for e in DIMS]),
               CANDIDATES[1]: (tensorstore(sharded), [sharded(e) for e in DIMS]),
               CANDIDATES[2]: (zarr_python(lambda e: single / f"{e}.zarr"), [single]),
               CANDIDATES[3]: (tensorstore(lambda e: single / f"{e}.zarr"), [single]),
               CANDIDATES[4]: (flat(), [work / f"flat_{e}.bin" for e in DIMS]),
               CANDIDATES[5]: (npy(), [work / "npy"])}
    want = [arrays[k] for k in keys]
    for label, (read, _) in readers.items():
        got = read()
        if not all(np.array_equal(a.view(np.uint16), x.view(np.uint16)) and np.array_equal(b, p)
                   for (a, b), (x, p) in zip(got, want)):
            raise AssertionError(f"candidate {label!r} read other bytes than the store holds")
    nbytes = sum(x.nbytes + p.nbytes for x, p in want)
    out: dict = {(c, s): [] for c in CANDIDATES for s in ("warm", "cold")}
    for r in range(repeats):
        for state in ("warm", "cold"):
            for label in (CANDIDATES if r % 2 == 0 else CANDIDATES[::-1]):
                read, paths = readers[label]
                if state == "cold":
                    drop_page_cache(*paths)
                else:
                    read()
                t, _ = timed(read)
                out[(label, state)].append(nbytes / t)
    return out


def print_candidates(res: dict, args) -> None:
    """One line per candidate and cache state: median MB/s (min-max) and the per-repeat ratio to the ``.npy``
    files (median, min-max)."""
    print(f"reading {args.videos} videos x {args.frames} frames of {DIMS} (emb + present), handles opened "
          f"before timing, {args.repeats} repeats")
    for state in ("warm", "cold"):
        base = np.array(res[(CANDIDATES[-1], state)])
        for c in CANDIDATES:
            v = np.array(res[(c, state)])
            r = v / base
            print(f"   {state} {c:48s} {np.median(v) / 1e6:7,.0f} MB/s ({v.min() / 1e6:,.0f}-{v.max() / 1e6:,.0f}), "
                  f"÷ .npy {np.median(r):.2f} ({r.min():.2f}-{r.max():.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--frames", type=int, default=1200)
    ap.add_argument("--candidates", action="store_true",
                    help="only compare the ways of reading the same arrays whole (issue 21), warm and cold")
    ap.add_argument("--repeats", type=int, default=5, help="--candidates: repeats, the layouts' order alternating")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="afwpipe-bench-"))
    try:
        t_build, (ws, names) = timed(lambda: build(tmp / "ws", args.videos, args.frames))
        if args.candidates:
            print_candidates(measure_candidates(ws, names, tmp, args.repeats), args)
            return
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
