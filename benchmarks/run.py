"""One table of measured ratios for afwpipe on this machine, each with its raw numbers.

Rows (issue 8):
  1. extract stage frames/s / bare encoder forward frames/s (``mae`` and ``whisper``, random weights), both
     warm in one process, the model built once apart; 1c the same for extract-text (words/s, a random BERT);
  2. detect stage frames/s / detector forward frames/s (same frames, decoded beforehand), both warm in one
     process with one detector, over ``--detect-frames // --batch-size`` batches;
  2b-2c. the face stage's own data path (issue 21): the stage with the ``null`` detector
     (benchmarks/null_detector.py) / PyAV's bare decode of the same video, frames per CPU-second, at 1280x720
     and 1920x1080 (``--data-frames``), with what one GPU's ViT-B consumes in cores;
  3. peak RSS of detect and of extract on the video looped ``--loops`` times / on the video itself; 3c-3c2
     detect at ``--detect-loops`` (x40, x80) against the previous length, to tell a plateau from a leak;
  4. head training frames/s, and the clip loader alone, from Zarr / from RAM (epoch 1 includes the
     whole-video reads; epoch 2 cached);
  5. feature cache reads: ``ZarrFeatures.load`` whole videos / per-frame ``.npy`` files and / one ``.npy`` per
     video and array (page cache dropped, and warm; handles opened before timing);
     5c: Zarr / a raw read of the same bytes in the same files, and in one file (5c1), measured in the same
     repeats; Zarr bytes on disk / raw bytes; 5j/5k: tensorstore / zarr-python on the same store (the
     candidates of issue 21, ``train_speed.measure_candidates``);
  4e-4g, 5i. training beyond the cache (issue 14): a synthetic store ``--big-videos`` x ``--big-frames`` of
     two encoders, several times a ``--big-cache-gb`` whole-video cache: a shuffled epoch from Zarr (page
     cache dropped) / from RAM, the loader's peak RSS against the cache budget, and whole-video reads through
     ZarrFeatures / the disk's sequential read rate;
  4h-4i. memory against its budget (issue 20): peak RSS above the base ÷ the feature cache budget of
     ``afwpipe train`` with ``view: mean`` and of ``afwpipe predict``, each in a fresh process on a synthetic
     store 3x the budget it reads through (benchmarks/memory_budget.py; ``--mem-budget-gb``, ``--mem-frames``);
  6. end to end, video -> one encoder's features (index + detect + extract) / the frames-to-JPEG-files
     workflow of the ABAW seeds, same detector and encoder, same video; each run its own process;
  7. ``afwpipe analyze`` frames/s / the stages index + detect + extract + predict run separately (same video,
     same head); each run its own process.
  8. the extract stage's data path (issue 21): crops per CPU-second with a null encoder (registered through the
     encoder registry) on a faces store of each crop codec ÷ the goal's 1,000, beside the cores one GPU needs;
  1d. describe stage segments/s ÷ the model's own generate on the same crops (issue 24; a random Qwen2-VL,
     ``--describe-seconds`` of 25 fps JPEG crops, segments of 2 s, 4 frames each, batches of 4; both warm);
  9. crop codecs (issue 21): bytes per 224x224 crop ÷ the goal's 20 KB, with encode / decode crops per
     CPU-second, the projected size of Aff-Wild2's faces store (2.8 M frames) and the cosine of mini_xception /
     random ViT-B features of the decoded crops to the raw crops' (benchmarks/crop_codecs.py).

Timed ratios are measured ``--repeats`` times with the two sides' order alternating; the table gives the
median of the per-repeat ratios and their spread (min-max), and for rows with a goal whether it is met.

Pieces come from detect_speed.py, extract_speed.py, train_speed.py, e2e_speed.py and analyze_speed.py (each still runs
alone). Everything is written under one temporary folder (``--workdir``), so the disk rows measure that
disk. No number is asserted anywhere: these are measurements, not tests.

Usage: python benchmarks/run.py [--quick] [--device cpu] [--video single_face] [--frames 36] [--loops 10]
       [--mae-frames 40 --mae-batch-size 2] [--detect-frames 320] [--e2e-frames 300] [--repeats 2]
       [--whisper-seconds 60] [--text-words 1500] [--videos 12 --video-frames 1200] [--disk-mib 256]
       [--encoder mini_xception] [--json out.json] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import analyze_speed  # noqa: E402
import crop_codecs  # noqa: E402
import describe_speed  # noqa: E402
import detect_speed  # noqa: E402
import e2e_speed  # noqa: E402
import extract_speed  # noqa: E402
import memory_budget  # noqa: E402
import text_speed  # noqa: E402
import train_speed  # noqa: E402
from common import disk_bytes, loop_video_to, machine, sample_video, sequential_read_rate  # noqa: E402

QUICK = {"describe_seconds": 4.0, "describe_hidden": 32, "path_frames": 16, "codec_crops": 4, "vit_crops": 1, "text_words": 30, "big_videos": 6, "big_frames": 300, "big_cache_gb": 1.5e-3, "frames": 1, "loops": 10, "mae_frames": 2, "mae_batch_size": 1, "whisper_seconds": 2.0, "videos": 3,
         "video_frames": 200, "disk_mib": 16, "batch_size": 2, "rss_frames": 4, "detect_frames": 4, "e2e_frames": 4,
         "data_frames": 8, "detect_loops": [20, 30],
         "repeats": 2,
         "mem_budget_gb": 2e-3, "mem_frames": 200}

MB = 1e6
GOALS = {">=": (lambda x, g: x >= g, "≥"), "<=": (lambda x, g: x <= g, "≤")}


class Table:
    """Rows of (id, what, ratio, spread, goal, numerator, denominator, note); printed as one Markdown table.

    With ``ratios`` (one ratio per repeat, both sides measured in the same repeat) the value is their
    median and the spread their min-max; ``goal`` is ``(">=" | "<=", value)`` and the row says whether
    the median meets it.
    """

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, rid: str, what: str, num: float, den: float, num_text: str, den_text: str, note: str = "",
            ratios: list[float] | None = None, goal: tuple[str, float] | None = None):
        ratio = float(np.median(ratios)) if ratios else (num / den if den else float("nan"))
        spread = [min(ratios), max(ratios)] if ratios else None
        met = None if goal is None else bool(GOALS[goal[0]][0](ratio, goal[1]))
        self.rows.append({"id": rid, "what": what, "ratio": ratio, "spread": spread, "repeats": len(ratios or [1]),
                          "goal": list(goal) if goal else None, "goal_met": met, "numerator": num,
                          "denominator": den, "numerator_text": num_text, "denominator_text": den_text, "note": note})
        print(f"[{rid}] {what}: {ratio:.3g} {_spread(self.rows[-1])} ({num_text} / {den_text})", file=sys.stderr,
              flush=True)

    def markdown(self) -> str:
        lines = ["| # | ratio | value | spread (n) | goal | numerator | denominator | limited by / note |",
                 "|---|---|---:|---|---|---|---|---|"]
        for r in self.rows:
            goal = ""
            if r["goal"]:
                goal = f"{GOALS[r['goal'][0]][1]} {r['goal'][1]:g}: {'met' if r['goal_met'] else '**not met**'}"
            lines.append(f"| {r['id']} | {r['what']} | {_fmt(r['ratio'])} | {_spread(r)} | {goal} | "
                         f"{r['numerator_text']} | {r['denominator_text']} | {r['note']} |")
        return "\n".join(lines)


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.2f}" if abs(x) < 100 else f"{x:,.0f}"


def _spread(r: dict) -> str:
    return f"{_fmt(r['spread'][0])}–{_fmt(r['spread'][1])} ({r['repeats']})" if r["spread"] else "one run"


def _rate(values: list[float], unit: str = "frames/s") -> str:
    """'median unit (min–max)' of per-repeat rates."""
    lo, hi = min(values), max(values)
    dec = 1 if max(values) < 100 else 0
    return f"{np.median(values):,.{dec}f} {unit} ({lo:,.{dec}f}–{hi:,.{dec}f})"


def _fps(frames: int, fps: float) -> str:
    return f"{fps:,.1f} frames/s ({frames} frames)"


def _paired(nums: list[float], dens: list[float]) -> list[float]:
    return [n / d for n, d in zip(nums, dens)]


def extract_rows(t: Table, tmp: Path, args) -> None:
    for enc in ("mae", "whisper"):
        visual = enc == "mae"
        frames = args.mae_frames if visual else int(args.whisper_seconds * 25)
        seconds = frames / 25 if visual else args.whisper_seconds
        bs = args.mae_batch_size if visual else args.batch_size
        ws = extract_speed.fake_face_stage(tmp / "extract" / enc, frames, seconds)
        r = extract_speed.measure(enc, ws, "random", args.device, bs, args.repeats)
        what = (f"random-weight ViT-B/16 on 224 crops, batch {bs} ({-(-frames // bs)} batches)" if visual
                else f"{args.whisper_seconds:g} s of 16 kHz audio")
        t.add(f"1{'ab'[not visual]}", f"extract `{enc}` stage ÷ encoder forward", r["stage_fps"], r["forward_fps"],
              f"stage {_rate(r['stage_all'])}, {frames} frames", f"forward {_rate(r['forward_all'])}",
              f"{what}; both warm in one process, model built once apart ({r['model_build_s']:.1f} s), order "
              f"alternating; 1.0 = the forward is the only cost", ratios=_paired(r["stage_all"], r["forward_all"]))


def text_rows(t: Table, tmp: Path, args) -> None:
    # BERT-base's size (12 x 768, Devlin et al. 2019), the smallest text encoder teams use; --quick: 4 x 256
    layers, hidden = (4, 256) if getattr(args, "quick", False) else (12, 768)
    folder = text_speed.bench_bert(tmp / "text" / "bert", layers=layers, hidden=hidden)
    ws = text_speed.fake_transcript_stage(tmp / "text" / "ws", args.text_words)
    r = text_speed.measure(ws, folder, args.device, args.repeats)
    t.add("1c", "extract-text `text:` stage ÷ encoder forward", r["stage_fps"], r["forward_fps"],
          f"stage {_rate(r['stage_all'], 'words/s')}, {r['words']} words",
          f"forward {_rate(r['forward_all'], 'words/s')}",
          f"random-weight BERT {layers} × {hidden}, 128 positions, {r['chunks']} chunks of whole words, batch 1; synthetic "
          f"transcript at 2.5 words/s on 25 fps frames; both warm in one process, model built once apart "
          f"({r['model_build_s']:.1f} s), order alternating; 1.0 = the forward is the only cost",
          ratios=_paired(r["stage_all"], r["forward_all"]), goal=(">=", 0.9))
    shutil.rmtree(tmp / "text", ignore_errors=True)


def describe_rows(t: Table, tmp: Path, args) -> None:
    folder = describe_speed.bench_model(tmp / "describe" / "vlm", hidden=args.describe_hidden, layers=2)
    ws = describe_speed.fake_face_stage(tmp / "describe" / "ws", args.describe_seconds)
    r = describe_speed.measure(ws, folder, args.device, max(args.repeats, 5))
    t.add("1d", "describe stage ÷ the model's own generate", r["stage_fps"], r["generate_fps"],
          f"stage {_rate(r['stage_all'], 'segments/s')}, {r['segments']} segments",
          f"generate {_rate(r['generate_all'], 'segments/s')}",
          f"random-weight Qwen2-VL 2 × {args.describe_hidden}; {args.describe_seconds:g} s of 25 fps JPEG 224 crops, "
          f"2 s segments of {r['frames_per_segment']} crops, batches of {r['batch_size']}, {r['max_new_tokens']} new "
          f"tokens; generate = the model's processor + chat template + generate on the crops in memory; both warm in "
          f"one process, order alternating; 1.0 = the model is the only cost",
          ratios=_paired(r["stage_all"], r["generate_all"]), goal=(">=", 0.9))
    shutil.rmtree(tmp / "describe", ignore_errors=True)


def detect_rows(t: Table, tmp: Path, args) -> None:
    src = sample_video(args.video)
    s = detect_speed.measure_speed(src, tmp / "detect_speed", args.detector, args.batch_size, args.device,
                                   args.detect_frames, args.repeats)
    t.add("2", f"detect stage ÷ `{args.detector}` forward", float(np.median(s["stage_fps"])),
          float(np.median(s["forward_fps"])), f"stage {_rate(s['stage_fps'])}, {s['frames']} frames",
          f"forward {_rate(s['forward_fps'])}",
          f"{args.video} looped, batch {args.batch_size} ({s['batches']} batches); both warm in one process, one "
          f"detector built apart ({s['build_s']:.1f} s), order alternating; stage adds decode, alignment, Zarr "
          f"writes, audio", ratios=_paired(s["stage_fps"], s["forward_fps"]))
    shutil.rmtree(tmp / "detect_speed", ignore_errors=True)
    face_data_path_rows(t, tmp, args)
    more = 2 * args.loops  # rows 3b / 3d (extract)
    d = detect_speed.measure(src, tmp / "detect", args.detector, args.batch_size, args.device, args.loops, args.frames,
                             more_loops=tuple(args.detect_loops))
    t.add("3a", f"detect peak RSS ×{args.loops} video ÷ ×1", d["rss_long_mib"], d["rss1_mib"],
          f"{d['rss_long_mib']:,.0f} MiB ({d['frames_long']} frames)", f"{d['rss1_mib']:,.0f} MiB ({d['frames']} frames)",
          "VmHWM of a fresh process per length; ~1.0 = memory does not grow with video length")
    prev = {"loops": args.loops, "frames": d["frames_long"], "rss_mib": d["rss_long_mib"]}
    for rid, m in zip(("3c", "3c2"), d["more"]):
        t.add(rid, f"detect peak RSS ×{m['loops']} video ÷ ×{prev['loops']}", m["rss_mib"], prev["rss_mib"],
              f"{m['rss_mib']:,.0f} MiB ({m['frames']} frames)", f"{prev['rss_mib']:,.0f} MiB ({prev['frames']} frames)",
              f"as 3a; lengths ×{args.loops}, ×{', ×'.join(str(x['loops']) for x in d['more'])}: ~1.0 at each step = a "
              f"plateau, a steady rise = a leak", goal=("<=", 1.1))
        prev = m
    shutil.rmtree(tmp / "detect", ignore_errors=True)
    n = args.rss_frames
    works = [tmp / "extract_rss" / f"x{k}" for k in (1, args.loops, more)]
    for k, w in zip((1, args.loops, more), works):
        extract_speed.long_face_stage(w, n * k)
    e1, e10, e20 = extract_speed.measure_rss(works, args.encoder, args.weights, args.device, args.batch_size)
    shutil.rmtree(tmp / "extract_rss", ignore_errors=True)
    crops_mib = n * args.loops * 224 * 224 * 3 / 2**20
    note = (f"synthetic face stores of {n:,} / {n * args.loops:,} / {n * more:,} frames (crops of ×{args.loops}: "
            f"{crops_mib:,.0f} MiB, {crops_mib / e1['rss_mib']:.1f}× the ×1 peak); VmHWM of a fresh process per length")
    t.add("3b", f"extract `{args.encoder}` peak RSS ×{args.loops} ÷ ×1", e10["rss_mib"], e1["rss_mib"],
          f"{e10['rss_mib']:,.0f} MiB ({e10['frames']:,} frames)", f"{e1['rss_mib']:,.0f} MiB ({e1['frames']:,} frames)",
          note, goal=("<=", 1.1))
    t.add("3d", f"extract `{args.encoder}` peak RSS ×{more} ÷ ×{args.loops}", e20["rss_mib"], e10["rss_mib"],
          f"{e20['rss_mib']:,.0f} MiB ({e20['frames']:,} frames)", f"{e10['rss_mib']:,.0f} MiB ({e10['frames']:,} frames)",
          note, goal=("<=", 1.1))


#: ViT-B/16 images/s of one H100/H200 in bf16 (timm's published inference benchmarks), for the cores-per-GPU note.
GPU_IMAGES_PER_S = (3000, 5000)


def face_data_path_rows(t: Table, tmp: Path, args) -> None:
    """Rows 2b/2c: the face stage with the ``null`` detector ÷ PyAV's bare decode, frames per CPU-second."""
    d = detect_speed.measure_data_path(sample_video(args.video), tmp / "data_path", args.data_frames, args.repeats,
                                       args.batch_size)
    for rid, (size, r) in zip(("2b", "2c"), d.items()):
        rgb = r["rgb_ms"]
        stage = float(np.median(r["stage_cpu_fps"]))
        lo, hi = (g / stage for g in GPU_IMAGES_PER_S)
        t.add(rid, f"face stage, `null` detector ÷ bare PyAV decode, {size} (frames per CPU-second)", stage,
              float(np.median(r["decode_cpu_fps"])), f"stage {_rate(r['stage_cpu_fps'], 'frames/CPU-s')}",
              f"decode {_rate(r['decode_cpu_fps'], 'frames/CPU-s')}",
              f"{args.video}'s faces scaled, libx264, {r['frames']} frames, one process, order alternating; stage = "
              f"decode + RGB ({rgb['full']:.2f} ms/frame; one swscale pass to {rgb['width']} wide: {rgb['scaled']:.2f}, "
              f"unscaled + cv2.resize: {rgb['full_resize']:.2f}) + selection, alignment, fill, Zarr crop writes (the "
              f"crop codec), audio; one GPU's ViT-B/16 ({GPU_IMAGES_PER_S[0]:,}–{GPU_IMAGES_PER_S[1]:,} images/s) needs "
              f"{lo:.0f}–{hi:.0f} such cores",
              ratios=_paired(r["stage_cpu_fps"], r["decode_cpu_fps"]), goal=(">=", 0.8))
    shutil.rmtree(tmp / "data_path", ignore_errors=True)


def train_and_read_rows(t: Table, tmp: Path, args) -> None:
    ws, names = train_speed.build(tmp / "train" / "ws", args.videos, args.video_frames)
    frames = args.videos * args.video_frames
    size = f"{args.videos} videos × {args.video_frames} frames, mae 768 + logmel 80 float16"
    res = train_speed.measure_training(ws, names, "cpu", repeats=max(args.repeats, 3))
    for rid, what, part, key, goal in (
            ("4a", "tcn head training", "train", "zarr_epoch1", None),
            ("4b", "tcn head training", "train", "zarr_epoch2", None),
            ("4c", "clip loader alone (no model)", "loader", "zarr_epoch1", (">=", 0.9)),
            ("4d", "clip loader alone (no model)", "loader", "zarr_epoch2", (">=", 0.9))):
        runs = res[part + "_all"]
        t.add(rid, f"{what} from Zarr ÷ from RAM ({key[-6:]})", res[part][key], res[part]["memory"],
              f"Zarr {_rate(runs[key])}", f"RAM {_rate(runs['memory'])}",
              f"{size}; CPU, batch 32, K=100; "
              + ("epoch 1: whole-video Zarr reads inside the timing" if key.endswith("1")
                 else "epoch 2: videos in the loader's cache")
              + ("; what a GPU head waits for" if part == "loader" else ""),
              ratios=_paired(runs[key], runs["memory"]), goal=goal)

    npy, npy_video = tmp / "train" / "npy", tmp / "train" / "npy_video"
    train_speed.write_npy_cache(ws, names, npy)
    train_speed.write_npy_video_cache(ws, names, npy_video)
    files = train_speed.zarr_files(ws, names)
    one_file = train_speed.concatenate(files, tmp / "train" / "raw.bin")
    reads, raw = {"cold": [], "warm": []}, []
    for _ in range(args.repeats):  # one repeat = every layout cold, the raw reads of the same bytes, every layout warm
        reads["cold"].append(train_speed.measure_reads(ws, names, npy, cold=True, npy_video=npy_video))
        raw.append(train_speed.measure_raw_reads(files, one_file, cold=True))
        reads["warm"].append(train_speed.measure_reads(ws, names, npy, cold=False, npy_video=npy_video))
    zarr_l, frame_l, video_l = (train_speed.READ_LAYOUTS[i] for i in (0, 2, 3))
    n_npy = frames * len(train_speed.DIMS)
    for cache in ("cold", "warm"):
        rs = reads[cache]
        z = [r[zarr_l]["frames_per_s"] for r in rs]
        how = (f"{size}; page cache dropped per file (POSIX_FADV_DONTNEED); inode/dentry caches stay warm"
               if cache == "cold" else f"{size}; files read once before timing")
        for rid, layout, base, files_n, goal in (
                ("5a" if cache == "cold" else "5b", frame_l, "per-frame .npy", n_npy, None),
                ("5g" if cache == "cold" else "5h", video_l, "one .npy per video and array",
                 2 * len(names) * len(train_speed.DIMS), (">=", 0.9))):
            n = [r[layout]["frames_per_s"] for r in rs]
            state = f"{rs[0][zarr_l]['cache']} / {rs[0][layout]['cache']}"
            t.add(rid, f"feature read, `ZarrFeatures.load` whole videos ÷ {base} ({state})", float(np.median(z)),
                  float(np.median(n)), f"Zarr {_rate(z)}", f".npy {_rate(n)}, {files_n:,} files", how + (
                      "; the seeds' workflow (files opened inside the timing)" if layout == frame_l else
                      "; the simple alternative, the same arrays (emb + present) in as many files; both sides' "
                      "handles opened before timing"), ratios=_paired(z, n), goal=goal)
    zc = [r[zarr_l] for r in reads["cold"]]
    zarr_bps = [r["disk_bytes"] / r["seconds"] for r in zc]
    for rid, key, what in (("5c", "same files", "the same files"), ("5c1", "one file", "one file of the same bytes")):
        d = [r[key] for r in raw]
        dps = [r["bytes_per_s"] for r in d]
        t.add(rid, f"Zarr read ÷ raw read of {what} ({zc[0]['cache']} / {d[0]['cache']})", float(np.median(zarr_bps)),
              float(np.median(dps)), f"{_rate([b / MB for b in zarr_bps], 'MB/s')} from disk through `ZarrFeatures.load`, "
              f"{len(files)} files", f"{_rate([b / MB for b in dps], 'MB/s')}, {d[0]['files']} file(s), "
              + ("one read per file" if key == "same files" else "8 MiB reads"),
              f"{size}; the same {d[0]['bytes'] / 2**20:,.1f} MiB on both sides, every handle opened before timing, "
              f"page cache dropped before each side, paired per repeat; ≥1 = the read is at the physical limit",
              ratios=_paired(zarr_bps, dps))
    zc = reads["cold"][0][zarr_l]
    t.add("5d", "Zarr bytes on disk ÷ raw bytes (synthetic features)", zc["disk_bytes"], zc["raw_bytes"],
          f"{zc['disk_bytes'] / 2**20:,.1f} MiB on disk", f"{zc['raw_bytes'] / 2**20:,.1f} MiB float16",
          "Gaussian noise, near-incompressible: codec + shard-index overhead only (emb and present files)")
    cand = train_speed.measure_candidates(ws, names, tmp / "train" / "candidates", args.repeats)
    ts_c, zp_c = train_speed.CANDIDATES[1], train_speed.CANDIDATES[0]
    for rid, cache in (("5j", "cold"), ("5k", "warm")):
        a, b = cand[(ts_c, cache)], cand[(zp_c, cache)]
        others = "; ".join(f"{c} {_rate([v / MB for v in cand[(c, cache)]], 'MB/s')}" for c in train_speed.CANDIDATES[2:])
        t.add(rid, f"feature read, tensorstore ÷ zarr-python on the same sharded store ({cache})", float(np.median(a)),
              float(np.median(b)), f"tensorstore {_rate([v / MB for v in a], 'MB/s')}",
              f"zarr-python {_rate([v / MB for v in b], 'MB/s')}",
              f"{size}, emb + present, handles opened before timing (`train_speed.measure_candidates`); the other "
              f"candidates measured beside them: {others}", ratios=_paired(a, b))
    shutil.rmtree(tmp / "train" / "candidates", ignore_errors=True)


def beyond_cache_rows(t: Table, tmp: Path, args) -> None:
    cache = int(args.big_cache_gb * (1 << 30))
    ws, names = train_speed.build(tmp / "big" / "ws", args.big_videos, args.big_frames, dims=train_speed.BIG_DIMS)
    stored = disk_bytes(*[ws.features(e) for e in train_speed.BIG_DIMS])
    dims = " + ".join(f"{e} {d}" for e, d in train_speed.BIG_DIMS.items())
    size = (f"{args.big_videos} videos × {args.big_frames:,} frames, {dims} float16: {stored / 2**30:.2f} GiB, "
            f"{stored / cache:.1f}× the {_gib(cache)} cache")
    load = os.getloadavg()[0]
    res = train_speed.measure_beyond_cache(ws, names, cache, repeats=max(args.repeats, 3))
    for rid, what, part, goal in (("4e", "tcn head training beyond the cache", "train", (">=", 0.9)),
                                  ("4f", "clip loader alone (no model) beyond the cache", "loader", (">=", 0.9))):
        z, m = res[part]["zarr"], res[part]["memory"]
        t.add(rid, f"{what}, from Zarr ÷ from RAM (per epoch)", float(np.median(z)), float(np.median(m)),
              f"Zarr {_rate(z)}", f"RAM {_rate(m)}",
              f"{size}; one shuffled epoch (block-shuffled: blocks of half the cache), K=100, stride 100, batch 32, "
              f"CPU; Zarr: page cache dropped and whole-video cache empty before each epoch, next videos read "
              f"ahead in a thread; RAM: the same clips in the same order from `ArrayFeatures`; load average "
              f"{load:.1f} at the start", ratios=_paired(z, m), goal=goal)
    rss = train_speed.measure_beyond_cache_rss(ws, cache, "loader")
    over = (rss["peak_mib"] - rss["base_mib"]) * 2**20
    t.add("4g", "clip loader peak RSS above its base ÷ whole-video cache budget", over, cache,
          f"{over / 2**20:,.0f} MiB (peak {rss['peak_mib']:,.0f} − base {rss['base_mib']:,.0f} MiB)",
          f"{_gib(cache)} cache (largest filling seen {rss['cache_max_mib']:,.0f} MiB)",
          f"{size}; one shuffled loader epoch from Zarr (read-ahead on) in a fresh process; base: RSS after "
          f"building the dataset and importing torch; VmHWM; ≤ 1 + a few batches and the video being read = the "
          f"read-ahead stays inside the cache budget")
    disk = sequential_read_rate(tmp / "big" / "raw.bin", args.disk_mib)
    reads = [train_speed.read_rates(ws, names) for _ in range(args.repeats)]
    ahead = [r["ahead_2"]["bytes_per_s"] for r in reads]
    plain = [r["ahead_0"]["bytes_per_s"] for r in reads]
    warm = [r["warm"]["bytes_per_s"] for r in reads]
    t.add("5i", f"Zarr whole-video reads, as the loader reads ahead ÷ disk sequential read "
          f"({reads[0]['ahead_2']['cache']} / {disk['cache']})", float(np.median(ahead)), disk["bytes_per_s"],
          f"{_rate([a / MB for a in ahead], 'MB/s')}", f"{disk['bytes_per_s'] / MB:,.0f} MB/s ({args.disk_mib} MiB file, "
          f"8 MiB reads)", f"{size}; every video through `ZarrFeatures.load`, the next 2 announced with `will_need`; "
          f"without announcing {_rate([p / MB for p in plain], 'MB/s')}; page cache warm (Zarr's own cost) "
          f"{_rate([w / MB for w in warm], 'MB/s')}; disk measured once, load average {os.getloadavg()[0]:.1f}",
          ratios=[a / disk["bytes_per_s"] for a in ahead], goal=(">=", 0.6))
    shutil.rmtree(tmp / "big", ignore_errors=True)


def memory_rows(t: Table, tmp: Path, args) -> None:
    budget = args.mem_budget_gb * (1 << 30)
    n_videos = 2 * math.ceil(1.5 * budget / memory_budget.held_bytes(args.mem_frames))
    ws = memory_budget.build(tmp / "mem" / "ws", n_videos, args.mem_frames)
    size = f"{n_videos} videos × {args.mem_frames:,} frames, mae 768 (views full, flip) + logmel 80 float16"
    load = os.getloadavg()[0]
    val_bytes = (n_videos - n_videos // 2) * memory_budget.held_bytes(args.mem_frames)
    for rid, part, gb, what in (("4h", "train", args.mem_budget_gb, "train (`view: mean`, train + val)"),
                                ("4i", "predict", val_bytes / 3 / (1 << 30), "predict (the val half)")):
        r = memory_budget.measure(ws.root, part, gb)
        t.add(rid, f"{what} peak RSS above its base ÷ feature cache budget", r["over_bytes"], r["budget_bytes"],
              f"{r['over_bytes'] / 2**20:,.0f} MiB (peak {r['peak_mib']:,.0f} − base {r['base_mib']:,.0f} MiB)",
              f"{_gib(r['budget_bytes'])} budget (caches held at most {r['cache_max_mib']:,.1f} MiB)",
              f"{size}; the store it reads is 3× the budget; one epoch / one predict run in a fresh process, tcn "
              f"head, K=100, batch 32, CPU; goal 1.1 + one float32 batch ({r['batch_bytes'] / 2**20:,.0f} MiB); "
              f"load average {load:.1f} at the start", goal=("<=", round(r["goal_bytes"] / r["budget_bytes"], 2)))
    shutil.rmtree(tmp / "mem", ignore_errors=True)


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**28 else f"{nbytes / 2**20:,.1f} MiB"


def e2e_rows(t: Table, tmp: Path, args) -> None:
    src = sample_video(args.video)
    video = loop_video_to(src, tmp / "e2e" / "video" / f"{args.video}.mp4", args.e2e_frames)
    r = e2e_speed.measure_repeated(video, tmp / "e2e", args.detector, args.encoder, args.weights, args.batch_size,
                                   args.device, args.repeats)
    a, j = r["afwpipe"], r["jpeg"]
    t.add("5e", "Zarr bytes on disk ÷ raw bytes (real face crops)", a["crops_disk_bytes"], a["crops_raw_bytes"],
          f"{a['crops_disk_bytes'] / 2**20:,.2f} MiB on disk", f"{a['crops_raw_bytes'] / 2**20:,.2f} MiB uint8",
          f"faces.zarr crops of row 6 ({a['frames']} frames, 224², default crop codec; rows 9 compare codecs)")
    t.add("5f", f"Zarr bytes on disk ÷ raw bytes (real `{args.encoder}` features)", a["emb_disk_bytes"],
          a["emb_raw_bytes"], f"{a['emb_disk_bytes'] / 2**10:,.1f} KiB on disk", f"{a['emb_raw_bytes'] / 2**10:,.1f} KiB float16",
          "features of row 6")
    t.add("6", f"end to end video → `{args.encoder}` features: afwpipe ÷ JPEG-files workflow",
          float(np.median(r["afwpipe_all"])), float(np.median(r["jpeg_all"])),
          f"afwpipe {_rate(r['afwpipe_all'])}, {a['files']} files, {a['disk_bytes'] / 2**20:.1f} MiB",
          f"JPEG {_rate(r['jpeg_all'])}, {j['files']} files, {j['disk_bytes'] / 2**20:.1f} MiB",
          f"{args.video} looped to {a['frames']} frames, `{args.detector}`; each run a fresh process building its "
          f"models inside the timing, order alternating; JPEG detects one image per call",
          ratios=_paired(r["afwpipe_all"], r["jpeg_all"]))


def extract_data_path_rows(t: Table, tmp: Path, args) -> None:
    crops = extract_speed.real_crops(args.path_frames, args.video)
    rows = extract_speed.measure_data_path(tmp / "data_path", crops, ["jpeg90", "zstd", "lz4"], repeats=args.repeats)
    for rid, r in zip("abc", rows):
        t.add(f"8{rid}", f"extract data path, null encoder, `{r['codec']}` crops: crops per CPU-second ÷ 1,000",
              r["crops_per_cpu_s"], 1000.0, _rate(r["cpu_all"], "crops/CPU-s"), "1,000 crops/CPU-s (goal)",
              f"{r['frames']} real crops ({args.video}), {r['store_bytes_per_crop'] / 1e3:.1f} KB each; one GPU "
              f"(ViT-B/16 bf16, ~{r['gpu_crops_per_s']:,.0f} crops/s) needs {r['cores_per_gpu']:.1f} cores"
              + (" (on CUDA JPEG crops are decoded by nvJPEG: ~0 cores)" if r["codec"].startswith("jpeg") else "")
              + f"; wall {r['crops_per_s']:,.0f} crops/s", ratios=[c / 1000.0 for c in r["cpu_all"]],
              goal=(">=", 1.0))


def codec_rows(t: Table, tmp: Path, args) -> None:
    crops = extract_speed.real_crops(args.codec_crops, args.video)
    out = crop_codecs.measure(crops, None, crop_codecs.CODECS.split(","), vit_crops=args.vit_crops)
    for i, r in enumerate(out["rows"]):
        m, v = r["mini_xception"], r["vit_b_random"]
        t.add(f"9{'abcdefghij'[i]}", f"crop codec `{r['codec']}`: bytes per 224² crop ÷ 20 KB", r["bytes_per_crop"],
              20e3, f"{r['bytes_per_crop'] / 1e3:,.1f} KB", "20 KB (goal)",
              f"Aff-Wild2 (2.8 M frames) {r['projected_gb']:,.0f} GB; encode {crop_codecs.rate(r['encode_per_cpu_s'])}, "
              f"decode {crop_codecs.rate(r['decode_per_cpu_s'])} crops/CPU-s; cosine to raw crops' features min/mean: mini_xception "
              f"{m['cos_min']:.4f}/{m['cos_mean']:.4f}, random ViT-B {v['cos_min']:.4f}/{v['cos_mean']:.4f} "
              f"({out['crops']} crops of {args.video}){'; ' + r['note'] if r.get('note') else ''}",
              goal=("<=", 1.0))


def analyze_rows(t: Table, tmp: Path, args) -> None:
    video = loop_video_to(sample_video(args.video), tmp / "analyze" / "video" / f"{args.video}.mp4", args.e2e_frames)
    r = analyze_speed.measure_repeated(video, tmp / "analyze", args.device, args.repeats)
    t.add("7", "`afwpipe analyze` ÷ index + detect + extract + predict run separately",
          float(np.median(r["analyze_all"])), float(np.median(r["stages_all"])),
          f"analyze {_rate(r['analyze_all'])}, {r['analyze']['frames']} frames",
          f"stages {_rate(r['stages_all'])}",
          f"{args.video} looped to {r['analyze']['frames']} frames, `mtcnn`, {' + '.join(analyze_speed.ENCODERS)}, one "
          f"mtl tmf head; each run a fresh process building its models inside the timing, order alternating; "
          f"analyze adds post-processing and the CSV, no timeline PNG", ratios=_paired(r["analyze_all"], r["stages_all"]),
          goal=(">=", 0.9))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny inputs (the smoke test): every row, no meaning")
    ap.add_argument("--device", default="cpu", help="torch device for detect / extract (training stays on CPU)")
    ap.add_argument("--video", default="single_face", help="sample video for rows 2, 3 and 6")
    ap.add_argument("--frames", type=int, default=36, help="row 3: use only its first N frames (0: all)")
    ap.add_argument("--loops", type=int, default=10, help="row 3: the long video is the video looped N times (and 2N)")
    ap.add_argument("--rss-frames", type=int, default=1800, help="rows 3b/3d: frames of the ×1 synthetic face store")
    ap.add_argument("--detector", default="mtcnn")
    ap.add_argument("--encoder", default="mini_xception", help="rows 3b and 6 (e.g. mae with --weights random)")
    ap.add_argument("--weights", default=None, help="weights of --encoder: default, random or a file")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--mae-frames", type=int, default=40)
    ap.add_argument("--mae-batch-size", type=int, default=2, help="row 1a: encoder batch (frames / it = batches)")
    ap.add_argument("--detect-frames", type=int, default=320, help="row 2: the video looped to N frames")
    ap.add_argument("--data-frames", type=int, default=300,
                    help="rows 2b/2c: frames of the 1280x720 and 1920x1080 videos (null-detector stage ÷ bare decode)")
    ap.add_argument("--detect-loops", type=lambda x: [int(v) for v in x.split(",")], default=[40, 80],
                    help="rows 3c/3c2: detect peak RSS at these loop counts (after --loops), e.g. 40,80")
    ap.add_argument("--e2e-frames", type=int, default=300, help="rows 6 and 7: the video looped to N frames")
    ap.add_argument("--repeats", type=int, default=2, help="repeats of each timed ratio (order alternating)")
    ap.add_argument("--whisper-seconds", type=float, default=60.0)
    ap.add_argument("--text-words", type=int, default=1500, help="row 1c: words of the synthetic transcript")
    ap.add_argument("--videos", type=int, default=12, help="rows 4-5: synthetic feature store, videos")
    ap.add_argument("--video-frames", type=int, default=1200, help="rows 4-5: frames per video")
    ap.add_argument("--disk-mib", type=int, default=256, help="row 5i: size of the raw sequential-read file")
    ap.add_argument("--big-videos", type=int, default=420, help="rows 4e-4g, 5i: videos of the store beyond the cache")
    ap.add_argument("--big-frames", type=int, default=3000, help="rows 4e-4g, 5i: frames per video")
    ap.add_argument("--big-cache-gb", type=float, default=1.0, help="rows 4e-4g, 5i: whole-video cache (GiB)")
    ap.add_argument("--mem-budget-gb", type=float, default=0.2, help="rows 4h-4i: feature cache budget (GiB)")
    ap.add_argument("--mem-frames", type=int, default=1500, help="rows 4h-4i: frames per video")
    ap.add_argument("--workdir", type=Path, default=None, help="folder for the temporary files (the disk measured)")
    ap.add_argument("--path-frames", type=int, default=2000, help="rows 8: crops in the null-encoder data path")
    ap.add_argument("--codec-crops", type=int, default=300, help="rows 9: real crops coded with each codec")
    ap.add_argument("--vit-crops", type=int, default=24, help="rows 9: of those, crops through the random ViT-B")
    ap.add_argument("--describe-seconds", type=float, default=60.0, help="row 1d: seconds of the synthetic face store")
    ap.add_argument("--describe-hidden", type=int, default=128, help="row 1d: width of the random Qwen2-VL")
    ap.add_argument("--rows", default=None, help="only these parts, comma-separated (e.g. describe_rows)")
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
        parts = (extract_rows, text_rows, detect_rows, train_and_read_rows, beyond_cache_rows, memory_rows, e2e_rows,
                 analyze_rows, extract_data_path_rows, codec_rows, describe_rows)
        for part in (p for p in parts if args.rows is None or p.__name__ in args.rows.split(",")):
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
