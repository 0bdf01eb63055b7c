"""One table of measured ratios for afwpipe on this machine, each with its raw numbers.

Rows (issue 8):
  1. extract stage frames/s / bare encoder forward frames/s (``mae`` and ``whisper``, random weights);
  2. detect stage frames/s / detector forward frames/s (same frames, decoded beforehand);
  3. peak RSS of detect and of extract on the video looped ``--loops`` times / on the video itself;
  4. head training frames/s from Zarr / from RAM (epoch 1 includes the whole-video reads; epoch 2 cached);
  5. feature cache reads: Zarr whole videos / per-frame ``.npy`` files (page cache dropped, and warm);
     Zarr / the disk's raw sequential read rate measured in the same run; Zarr bytes on disk / raw bytes;
  6. end to end, video -> one encoder's features (index + detect + extract) / the frames-to-JPEG-files
     workflow of the ABAW seeds, same detector and encoder, same video.

Pieces come from detect_speed.py, extract_speed.py, train_speed.py and e2e_speed.py (each still runs
alone). Everything is written under one temporary folder (``--workdir``), so the disk rows measure that
disk. No number is asserted anywhere: these are measurements, not tests.

Usage: python benchmarks/run.py [--quick] [--device cpu] [--video single_face] [--frames 36] [--loops 10]
       [--mae-frames 32] [--whisper-seconds 60] [--videos 12 --video-frames 1200] [--disk-mib 256]
       [--encoder mini_xception] [--json out.json] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import detect_speed  # noqa: E402
import e2e_speed  # noqa: E402
import extract_speed  # noqa: E402
import train_speed  # noqa: E402
from common import loop_video, machine, sample_video, sequential_read_rate  # noqa: E402

QUICK = {"frames": 1, "loops": 10, "mae_frames": 2, "whisper_seconds": 2.0, "videos": 3, "video_frames": 200,
         "disk_mib": 16, "batch_size": 2}

MB = 1e6


class Table:
    """Rows of (id, what, ratio, numerator, denominator, note); printed as one Markdown table."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, rid: str, what: str, num: float, den: float, num_text: str, den_text: str, note: str = ""):
        ratio = num / den if den else float("nan")
        self.rows.append({"id": rid, "what": what, "ratio": ratio, "numerator": num, "denominator": den,
                          "numerator_text": num_text, "denominator_text": den_text, "note": note})
        print(f"[{rid}] {what}: {ratio:.3g}  ({num_text} / {den_text})", file=sys.stderr, flush=True)

    def markdown(self) -> str:
        lines = ["| # | ratio | value | numerator | denominator | limited by / note |",
                 "|---|---|---:|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r['id']} | {r['what']} | {_fmt(r['ratio'])} | {r['numerator_text']} | "
                         f"{r['denominator_text']} | {r['note']} |")
        return "\n".join(lines)


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.2f}" if abs(x) < 100 else f"{x:,.0f}"


def _fps(frames: int, fps: float) -> str:
    return f"{fps:,.1f} frames/s ({frames} frames)"


def extract_rows(t: Table, tmp: Path, args) -> None:
    for enc in ("mae", "whisper"):
        visual = enc == "mae"
        frames = args.mae_frames if visual else int(args.whisper_seconds * 25)
        seconds = frames / 25 if visual else args.whisper_seconds
        ws = extract_speed.fake_face_stage(tmp / "extract" / enc, frames, seconds)
        r = extract_speed.measure(enc, ws, "random", args.device, args.batch_size)
        what = "random-weight ViT-B/16 on 224 crops" if visual else f"{args.whisper_seconds:g} s of 16 kHz audio"
        t.add(f"1{'ab'[not visual]}", f"extract `{enc}` stage ÷ encoder forward", r["stage_fps"], r["forward_fps"],
              f"stage {_fps(r['frames'], r['stage_fps'])}", f"forward {r['forward_fps']:,.1f} frames/s",
              f"{what}; 1.0 = the forward is the only cost")


def detect_rows(t: Table, tmp: Path, args) -> None:
    src = sample_video(args.video)
    d = detect_speed.measure(src, tmp / "detect", args.detector, args.batch_size, args.device, args.loops, args.frames)
    t.add("2", f"detect stage ÷ `{args.detector}` forward", d["stage_fps"], d["forward_fps"],
          f"stage {_fps(d['frames'], d['stage_fps'])}", f"forward {d['forward_fps']:,.1f} frames/s",
          f"{args.video}, batch {args.batch_size}; stage adds decode, alignment, Zarr writes, audio")
    t.add("3a", f"detect peak RSS ×{args.loops} video ÷ ×1", d["rss_long_mib"], d["rss1_mib"],
          f"{d['rss_long_mib']:,.0f} MiB ({d['frames_long']} frames)", f"{d['rss1_mib']:,.0f} MiB ({d['frames']} frames)",
          "VmHWM of a fresh process per length; ~1.0 = memory does not grow with video length")
    e = extract_speed.measure_rss(Path(d["work1"]), Path(d["work_long"]), args.encoder, args.weights, args.device,
                                  args.batch_size)
    t.add("3b", f"extract `{args.encoder}` peak RSS ×{args.loops} ÷ ×1", e["rss_long_mib"], e["rss1_mib"],
          f"{e['rss_long_mib']:,.0f} MiB ({e['frames_long']} frames)", f"{e['rss1_mib']:,.0f} MiB ({e['frames']} frames)",
          "on the face stores of row 3a; VmHWM of a fresh process per length")


def train_and_read_rows(t: Table, tmp: Path, args) -> None:
    ws, names = train_speed.build(tmp / "train" / "ws", args.videos, args.video_frames)
    frames = args.videos * args.video_frames
    size = f"{args.videos} videos × {args.video_frames} frames, mae 768 + logmel 80 float16"
    r = train_speed.measure_training(ws, names, "cpu")["train"]
    for rid, key, note in (("4a", "zarr_epoch1", "epoch 1: whole-video Zarr reads inside the timing"),
                           ("4b", "zarr_epoch2", "epoch 2: videos in the loader's cache")):
        t.add(rid, f"tcn head training from Zarr ÷ from RAM ({key[-6:]})", r[key], r["memory"],
              f"{r[key]:,.0f} frames/s", f"{r['memory']:,.0f} frames/s", f"{size}; CPU, batch 32, K=100")

    npy = tmp / "train" / "npy"
    train_speed.write_npy_cache(ws, names, npy)
    disk = sequential_read_rate(tmp / "train" / "raw.bin", args.disk_mib)
    cold = train_speed.measure_reads(ws, names, npy, cold=True)
    warm = train_speed.measure_reads(ws, names, npy, cold=False)
    zc, nc = cold[train_speed.READ_LAYOUTS[0]], cold[train_speed.READ_LAYOUTS[2]]
    zw, nw = warm[train_speed.READ_LAYOUTS[0]], warm[train_speed.READ_LAYOUTS[2]]
    n_npy = frames * len(train_speed.DIMS)
    for rid, z, n in (("5a", zc, nc), ("5b", zw, nw)):
        t.add(rid, f"feature read, Zarr whole videos ÷ per-frame .npy ({z['cache']} / {n['cache']})",
              z["frames_per_s"], n["frames_per_s"], f"Zarr {z['frames_per_s']:,.0f} frames/s",
              f".npy {n['frames_per_s']:,.0f} frames/s ({n_npy:,} files)",
              f"{size}; page cache dropped per file (POSIX_FADV_DONTNEED); inode/dentry caches stay warm"
              if z["cache"] == "cold" else f"{size}; files read once before timing")
    zarr_raw_bps, zarr_disk_bps = zc["raw_bytes"] / zc["seconds"], zc["disk_bytes"] / zc["seconds"]
    t.add("5c", f"Zarr read ÷ disk sequential read ({zc['cache']} / {disk['cache']})", zarr_raw_bps,
          disk["bytes_per_s"], f"{zarr_raw_bps / MB:,.0f} MB/s of features ({zarr_disk_bps / MB:,.0f} MB/s from disk)",
          f"{disk['bytes_per_s'] / MB:,.0f} MB/s ({disk['bytes'] / 2**20:.0f} MiB file, 8 MiB reads)",
          "same disk, same run; ≥1 = the read is at the physical limit")
    t.add("5d", "Zarr bytes on disk ÷ raw bytes (synthetic features)", zc["disk_bytes"], zc["raw_bytes"],
          f"{zc['disk_bytes'] / 2**20:,.1f} MiB on disk", f"{zc['raw_bytes'] / 2**20:,.1f} MiB float16",
          "Gaussian noise, near-incompressible: codec + shard-index overhead only")


def e2e_rows(t: Table, tmp: Path, args) -> None:
    src = sample_video(args.video)
    video = loop_video(src, tmp / "e2e" / "video" / f"{args.video}.mp4", 1, args.frames)
    r = e2e_speed.measure(video, tmp / "e2e", args.detector, args.encoder, args.weights, args.batch_size, args.device)
    a, j = r["afwpipe"], r["jpeg"]
    t.add("5e", "Zarr bytes on disk ÷ raw bytes (real face crops)", a["crops_disk_bytes"], a["crops_raw_bytes"],
          f"{a['crops_disk_bytes'] / 2**20:,.2f} MiB on disk", f"{a['crops_raw_bytes'] / 2**20:,.2f} MiB uint8",
          f"faces.zarr crops of row 6 ({a['frames']} frames, 224², default Zarr codec)")
    t.add("5f", f"Zarr bytes on disk ÷ raw bytes (real `{args.encoder}` features)", a["emb_disk_bytes"],
          a["emb_raw_bytes"], f"{a['emb_disk_bytes'] / 2**10:,.1f} KiB on disk", f"{a['emb_raw_bytes'] / 2**10:,.1f} KiB float16",
          "features of row 6")
    t.add("6", f"end to end video → `{args.encoder}` features: afwpipe ÷ JPEG-files workflow",
          r["afwpipe_fps"], r["jpeg_fps"],
          f"afwpipe {_fps(a['frames'], r['afwpipe_fps'])}, {a['files']} files, {a['disk_bytes'] / 2**20:.1f} MiB",
          f"JPEG {_fps(j['frames'], r['jpeg_fps'])}, {j['files']} files, {j['disk_bytes'] / 2**20:.1f} MiB",
          f"{args.video}, `{args.detector}`; both build their models inside the timing; JPEG detects one image per call")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny inputs (the smoke test): every row, no meaning")
    ap.add_argument("--device", default="cpu", help="torch device for detect / extract (training stays on CPU)")
    ap.add_argument("--video", default="single_face", help="sample video for rows 2, 3 and 6")
    ap.add_argument("--frames", type=int, default=36, help="use only its first N frames (0: all)")
    ap.add_argument("--loops", type=int, default=10, help="row 3: the long video is the video looped N times")
    ap.add_argument("--detector", default="mtcnn")
    ap.add_argument("--encoder", default="mini_xception", help="rows 3b and 6 (e.g. mae with --weights random)")
    ap.add_argument("--weights", default=None, help="weights of --encoder: default, random or a file")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--mae-frames", type=int, default=32)
    ap.add_argument("--whisper-seconds", type=float, default=60.0)
    ap.add_argument("--videos", type=int, default=12, help="rows 4-5: synthetic feature store, videos")
    ap.add_argument("--video-frames", type=int, default=1200, help="rows 4-5: frames per video")
    ap.add_argument("--disk-mib", type=int, default=256, help="row 5c: size of the raw sequential-read file")
    ap.add_argument("--workdir", type=Path, default=None, help="folder for the temporary files (the disk measured)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows and the machine as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    if args.weights == "default":
        args.weights = None
    args.frames = args.frames or None
    logging.basicConfig(level=logging.ERROR)

    mach = machine(args.device)
    t0 = time.perf_counter()
    table = Table()
    tmp = Path(tempfile.mkdtemp(prefix="afwpipe-bench-", dir=args.workdir))
    try:
        for part in (extract_rows, detect_rows, train_and_read_rows, e2e_rows):
            t = time.perf_counter()
            part(table, tmp, args)
            print(f"   ({part.__name__}: {time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table.rows.sort(key=lambda r: r["id"])
    wall = time.perf_counter() - t0

    m = mach
    print(f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['memory_gib']} GiB RAM; "
          f"torch {m['torch']} ({m['torch_threads']} threads), device {m['device']}; Python {m['python']}, {m['os']}; "
          f"temporary files under {tmp.parent}")
    print(f"Run: `python benchmarks/run.py{' --quick' if args.quick else ''}` in {wall:.0f} s"
          f"{' (tiny inputs: checks the rows, the numbers mean little)' if args.quick else ''}")
    print()
    print(table.markdown())
    out = {"machine": mach, "seconds": wall, "quick": args.quick, "rows": table.rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
