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

from common import fmt_ratio, frames_of, loop_video, run_child, sample_video

STAGE = """
import json, sys, time
from pathlib import Path
from afwpipe.detect import DetectConfig, run_detect
from afwpipe.index import build_index
from afwpipe.manifest import DatasetSpec
from afwpipe.store import Workspace
video, work, det, bs, dev = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
spec = DatasetSpec("bench", Path(video).parent, (Path(video).parent,), work / "no_annotations", folds_k=0)
ws = Workspace(work)
build_index(spec, ws, progress=False)
t = time.perf_counter()
s = run_detect(ws, DetectConfig(detector=det, batch_size=bs, device=dev), progress=False)
dt = time.perf_counter() - t
frames = sum(r.frames for r in s.results)
print(json.dumps({"frames": frames, "seconds": dt}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default="single_face")
    ap.add_argument("--detector", default="mtcnn")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--loops", type=int, default=10)
    args = ap.parse_args()

    from afwpipe.faces import create_detector

    src = sample_video(args.video)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = loop_video(src, tmp / "x1" / f"{args.video}_x1.mp4", 1)
        many = loop_video(src, tmp / f"x{args.loops}" / f"{args.video}_x{args.loops}.mp4", args.loops)

        stage1, rss1 = run_child(STAGE, str(one), str(tmp / "w1"), args.detector, str(args.batch_size), args.device)
        stage_fps = stage1["frames"] / stage1["seconds"]

        det = create_detector(args.detector, device=args.device)
        frames = frames_of(one)
        det.detect(frames[: args.batch_size])  # warm-up
        t = time.perf_counter()
        for i in range(0, len(frames), args.batch_size):
            det.detect(frames[i:i + args.batch_size])
        fwd_fps = len(frames) / (time.perf_counter() - t)

        stage10, rss10 = run_child(STAGE, str(many), str(tmp / "w10"), args.detector, str(args.batch_size), args.device)

    rows = [
        ("detect stage frames/s", f"{stage_fps:.1f}", f"{stage1['frames']} frames in {stage1['seconds']:.1f} s"),
        ("detector forward frames/s", f"{fwd_fps:.1f}", f"{args.detector}, batch {args.batch_size}, {args.device}"),
        ("ratio stage / forward", fmt_ratio(stage_fps, fwd_fps), "1.0 = the detector is the only cost"),
        (f"peak RSS x1 (MiB)", f"{rss1:.0f}", f"{stage1['frames']} frames"),
        (f"peak RSS x{args.loops} (MiB)", f"{rss10:.0f}", f"{stage10['frames']} frames, {stage10['frames'] / stage10['seconds']:.1f} frames/s"),
        (f"ratio RSS x{args.loops} / x1", fmt_ratio(rss10, rss1), "~1.0 = memory does not grow with video length"),
    ]
    for name, val, note in rows:
        print(f"{name:<28} {val:>8}   {note}")
    print(json.dumps({"stage_fps": stage_fps, "forward_fps": fwd_fps, "rss1_mib": rss1, "rss10_mib": rss10}))


if __name__ == "__main__":
    main()
