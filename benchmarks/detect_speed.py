"""Face stage speed and memory on the sample (CPU or GPU).

Prints:
  1. frames/s of the whole detect stage (decode + detect + align + write + audio) on one video and
     frames/s of the bare detector forward on the same frames (decoded beforehand), and their ratio;
  2. peak RSS of the detect stage on that video looped 1x and 10x, and their ratio (must stay ~1:
     the stage streams frames and writes shard by shard).

Usage: python benchmarks/detect_speed.py [--video single_face] [--detector mtcnn] [--batch-size 16]
       [--device cpu] [--loops 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import fmt_ratio, frames_of, index_video, loop_video, loop_video_to, run_child, sample_video

STAGE = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, "benchmarks")
from common import index_video
from afwpipe.detect import DetectConfig, run_detect
video, work, det, bs, dev = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
ws = index_video(video, work)
t = time.perf_counter()
s = run_detect(ws, DetectConfig(detector=det, batch_size=bs, device=dev), progress=False)
dt = time.perf_counter() - t
if s.failures:
    raise SystemExit(f"detect failed: {[r.error for r in s.failures]}")
print(json.dumps({"frames": sum(r.frames for r in s.results), "seconds": dt}))
"""


def measure_speed(src: Path, work: Path, detector: str = "mtcnn", batch_size: int = 16, device: str = "cpu",
                  n_frames: int = 320, repeats: int = 2) -> dict:
    """Detect stage vs bare detector forward, both warm, in this process, on ``src`` looped to about
    ``n_frames`` frames (``n_frames // batch_size`` batches; 20+ to average over batches).

    One detector instance serves both sides (built and warmed up on one batch, its build time reported
    apart); the stage (``FaceWorker.run_video``: decode, detect, align, Zarr writes, audio) is warmed up on
    a first run, then stage and forward alternate ``repeats`` times (stage first on even repeats, forward
    first on odd ones), each stage run into a fresh workspace under ``work``.

    Returns frames, batches, ``build_s``, and per repeat ``stage_fps`` / ``forward_fps`` (lists).
    """
    from afwpipe.detect import DetectConfig, FaceWorker
    from afwpipe.faces import create_detector

    video = loop_video_to(src, work / "speed" / f"{src.stem}_{n_frames}.mp4", n_frames)
    t = time.perf_counter()
    det = create_detector(detector, device=device)
    build_s = time.perf_counter() - t
    frames = frames_of(video)
    det.detect(frames[:batch_size])  # warm-up: first-call costs belong to neither side
    cfg = DetectConfig(detector=detector, batch_size=batch_size, device=device)

    def stage(i: int) -> float:
        ws = index_video(video, work / f"speed_ws{i}")
        worker = FaceWorker(ws, cfg, progress=False)
        worker._detector = det  # the same warm instance as the forward side
        t = time.perf_counter()
        res = worker.run_video(ws.read_index()["videos"][0])
        dt = time.perf_counter() - t
        if res.frames != len(frames):
            raise RuntimeError(f"stage saw {res.frames} frames, forward {len(frames)}")
        return len(frames) / dt

    def forward() -> float:
        t = time.perf_counter()
        for i in range(0, len(frames), batch_size):
            det.detect(frames[i:i + batch_size])
        return len(frames) / (time.perf_counter() - t)

    stage("warmup")
    stage_fps, forward_fps = [], []
    for i in range(repeats):
        for side in (("stage", "forward") if i % 2 == 0 else ("forward", "stage")):
            if side == "stage":
                stage_fps.append(stage(i))
            else:
                forward_fps.append(forward())
    return {"frames": len(frames), "batches": -(-len(frames) // batch_size), "build_s": build_s,
            "stage_fps": stage_fps, "forward_fps": forward_fps}


def measure(src: Path, work: Path, detector: str = "mtcnn", batch_size: int = 16, device: str = "cpu",
            loops: int = 10, max_frames: int | None = None, more_loops: int = 0) -> dict:
    """Detect stage vs detector forward on ``src`` (first ``max_frames`` frames), and peak RSS x1 / x``loops``
    (and x``more_loops`` when > 0: ``rss_more_mib``, ``frames_more``, to see whether the growth levels off).

    Each length runs in a fresh process; videos and workspaces are written under ``work``: ``w1`` and
    ``w<loops>`` hold complete face stores afterwards (``extract_speed.measure_rss`` reuses them).
    """
    stem = src.stem
    one = loop_video(src, work / "x1" / f"{stem}_x1.mp4", 1, max_frames)
    many = loop_video(src, work / f"x{loops}" / f"{stem}_x{loops}.mp4", loops, max_frames)
    child = (detector, str(batch_size), device)
    stage1, rss1 = run_child(STAGE, str(one), str(work / "w1"), *child)

    from afwpipe.faces import create_detector

    det = create_detector(detector, device=device)
    frames = frames_of(one)
    det.detect(frames[:batch_size])  # warm-up
    t = time.perf_counter()
    for i in range(0, len(frames), batch_size):
        det.detect(frames[i:i + batch_size])
    fwd_s = time.perf_counter() - t
    del frames, det

    stage10, rss10 = run_child(STAGE, str(many), str(work / f"w{loops}"), *child)
    more = {}
    if more_loops:
        video = loop_video(src, work / f"x{more_loops}" / f"{stem}_x{more_loops}.mp4", more_loops, max_frames)
        r, rss = run_child(STAGE, str(video), str(work / f"w{more_loops}"), *child)
        more = {"frames_more": r["frames"], "rss_more_mib": rss}
    return {**more, "detector": detector, "batch_size": batch_size, "device": device, "loops": loops,
            "frames": stage1["frames"], "stage_s": stage1["seconds"], "stage_fps": stage1["frames"] / stage1["seconds"],
            "forward_s": fwd_s, "forward_fps": stage1["frames"] / fwd_s,
            "frames_long": stage10["frames"], "stage_long_fps": stage10["frames"] / stage10["seconds"],
            "rss1_mib": rss1, "rss_long_mib": rss10,
            "work1": str(work / "w1"), "work_long": str(work / f"w{loops}")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default="single_face")
    ap.add_argument("--detector", default="mtcnn")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--loops", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = measure(sample_video(args.video), Path(tmp), args.detector, args.batch_size, args.device, args.loops)
    rows = [
        ("detect stage frames/s", f"{r['stage_fps']:.1f}", f"{r['frames']} frames in {r['stage_s']:.1f} s"),
        ("detector forward frames/s", f"{r['forward_fps']:.1f}", f"{args.detector}, batch {args.batch_size}, {args.device}"),
        ("ratio stage / forward", fmt_ratio(r["stage_fps"], r["forward_fps"]), "1.0 = the detector is the only cost"),
        ("peak RSS x1 (MiB)", f"{r['rss1_mib']:.0f}", f"{r['frames']} frames"),
        (f"peak RSS x{args.loops} (MiB)", f"{r['rss_long_mib']:.0f}",
         f"{r['frames_long']} frames, {r['stage_long_fps']:.1f} frames/s"),
        (f"ratio RSS x{args.loops} / x1", fmt_ratio(r["rss_long_mib"], r["rss1_mib"]),
         "~1.0 = memory does not grow with video length"),
    ]
    for name, val, note in rows:
        print(f"{name:<28} {val:>8}   {note}")
    print(json.dumps({"stage_fps": r["stage_fps"], "forward_fps": r["forward_fps"], "rss1_mib": r["rss1_mib"],
                      "rss10_mib": r["rss_long_mib"]}))


if __name__ == "__main__":
    main()
