"""Face stage speed and memory on the sample (CPU or GPU).

Prints:
  1. frames/s of the whole detect stage (decode + detect + align + write + audio) on one video and
     frames/s of the bare detector forward on the same frames (decoded beforehand), and their ratio;
  2. peak RSS of the detect stage on that video looped 1x and 10x, and their ratio (must stay ~1:
     the stage streams frames and writes shard by shard);
  3. with ``--data-path``: the face stage's own data path (issue 21): the stage with the ``null`` detector
     (benchmarks/null_detector.py, costs nothing) / PyAV's bare decode of the same video, in frames per
     CPU-second, at 1280x720 and 1920x1080 (the sample's real faces scaled, libx264).

Usage: python benchmarks/detect_speed.py [--video single_face] [--detector mtcnn] [--batch-size 16]
       [--device cpu] [--loops 10] [--data-path [--data-frames 300] [--repeats 2]]
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
        res = worker.run_video(ws.read_index().records[0])
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


def scaled_video(src: Path, dst: Path, width: int, height: int, n_frames: int) -> Path:
    """``src``'s frames (its real faces) scaled to ``width x height`` (``cv2.INTER_CUBIC``) and looped to
    ``n_frames``, encoded with libx264 (its default preset and CRF, yuv420p) at ``src``'s rate, video only;
    reused when it exists."""
    import av
    import cv2

    if dst.is_file():
        return dst
    frames = frames_of(src)
    rate = av.open(str(src)).streams.video[0].average_rate
    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(dst), "w") as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        for i in range(n_frames):
            img = cv2.resize(frames[i % len(frames)], (width, height), interpolation=cv2.INTER_CUBIC)
            for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    return dst


def bare_decode(video: Path) -> tuple[int, float, float]:
    """PyAV's decode of every frame of ``video`` (threads as the stage's: ``thread_type="AUTO"``), no pixel
    conversion: ``(frames, CPU seconds of this process, wall seconds)``."""
    import av

    c0, t0 = time.process_time(), time.perf_counter()
    n = 0
    with av.open(str(video)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        for _ in c.decode(vs):
            n += 1
    return n, time.process_time() - c0, time.perf_counter() - t0


def conversion_ms(video: Path, width: int, n: int = 30, trials: int = 4) -> dict:
    """CPU ms per frame (best of ``trials`` over the first ``n`` frames) of PyAV's RGB conversions of
    ``video``: ``full`` (unscaled ``to_ndarray(format="rgb24")``, what the stage does), ``scaled`` (one
    libswscale pass to ``width`` wide, bilinear: ``to_ndarray(width=, height=, format="rgb24")``) and
    ``full_resize`` (unscaled, then ``cv2.resize`` INTER_LINEAR to ``width``)."""
    import av
    import cv2

    with av.open(str(video)) as c:
        frames = [f for _, f in zip(range(n), c.decode(video=0))]
    w, h = frames[0].width, frames[0].height
    size = (width, round(h * width / w))

    def best(fn) -> float:
        out = []
        for _ in range(trials):
            c0 = time.process_time()
            for f in frames:
                fn(f)
            out.append((time.process_time() - c0) / len(frames) * 1e3)
        return min(out)

    return {"width": width, "full": best(lambda f: f.to_ndarray(format="rgb24")),
            "scaled": best(lambda f: f.to_ndarray(width=size[0], height=size[1], format="rgb24")),
            "full_resize": best(lambda f: cv2.resize(f.to_ndarray(format="rgb24"), size, interpolation=cv2.INTER_LINEAR))}


def measure_data_path(src: Path, work: Path, n_frames: int = 300, repeats: int = 2, batch_size: int = 16,
                      sizes: tuple[tuple[int, int], ...] = ((1280, 720), (1920, 1080))) -> dict:
    """The face stage with the ``null`` detector vs PyAV's bare decode of the same video, in one process.

    Per size: ``src`` scaled and looped to ``n_frames`` (:func:`scaled_video`); the stage
    (``FaceWorker.run_video``: decode, RGB, selection, alignment, fill, Zarr writes, audio, each run into a
    fresh workspace indexed before timing) and :func:`bare_decode` alternate
    ``repeats`` times after one warm-up each. CPU time is ``time.process_time()`` (every thread of the
    process: FFmpeg's decoder threads, the prefetch and writer threads).

    Returns ``{"<W>x<H>": {"frames", "stage_cpu_fps": [...], "decode_cpu_fps": [...], "stage_fps": [...],
    "decode_fps": [...], "rgb_ms": conversion_ms(...)}}`` (frames per CPU-second, and per wall second).
    """
    from null_detector import register

    from afwpipe.detect import DetectConfig, FaceWorker

    cfg = DetectConfig(detector=register(), batch_size=batch_size, device="cpu")
    out = {}
    for w, h in sizes:
        video = scaled_video(src, work / f"{w}x{h}" / f"{src.stem}_{w}x{h}.mp4", w, h, n_frames)

        def stage(tag: str) -> tuple[float, float]:
            ws = index_video(video, work / f"ws_{w}x{h}_{tag}")
            rec = ws.read_index().records[0]
            worker = FaceWorker(ws, cfg, progress=False)
            c0, t0 = time.process_time(), time.perf_counter()
            res = worker.run_video(rec)
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            if res.frames != n_frames or res.present != n_frames:
                raise RuntimeError(f"{video}: stage saw {res.frames} frames, {res.present} faces; expected {n_frames}")
            return n_frames / cpu, n_frames / wall

        def decode() -> tuple[float, float]:
            n, cpu, wall = bare_decode(video)
            if n != n_frames:
                raise RuntimeError(f"{video}: decoded {n} frames, expected {n_frames}")
            return n / cpu, n / wall

        stage("warmup"), decode()
        r = {"frames": n_frames, "stage_cpu_fps": [], "decode_cpu_fps": [], "stage_fps": [], "decode_fps": []}
        for i in range(repeats):
            for side in (("stage", "decode") if i % 2 == 0 else ("decode", "stage")):
                cpu_fps, fps = stage(str(i)) if side == "stage" else decode()
                r[f"{side}_cpu_fps"].append(cpu_fps)
                r[f"{side}_fps"].append(fps)
        r["rgb_ms"] = conversion_ms(video, 640)
        out[f"{w}x{h}"] = r
    return out


def measure(src: Path, work: Path, detector: str = "mtcnn", batch_size: int = 16, device: str = "cpu",
            loops: int = 10, max_frames: int | None = None, more_loops: tuple[int, ...] = ()) -> dict:
    """Detect stage vs detector forward on ``src`` (first ``max_frames`` frames), and peak RSS x1 / x``loops``
    (and for each of ``more_loops`` (e.g. 40, 80): ``more``, a list of ``{"loops", "frames", "rss_mib"}``, to
    tell a plateau from a leak).

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
    more = []
    for k in more_loops:
        video = loop_video(src, work / f"x{k}" / f"{stem}_x{k}.mp4", k, max_frames)
        r, rss = run_child(STAGE, str(video), str(work / f"w{k}"), *child)
        more.append({"loops": k, "frames": r["frames"], "rss_mib": rss})
    return {"more": more, "detector": detector, "batch_size": batch_size, "device": device, "loops": loops,
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
    ap.add_argument("--data-path", action="store_true",
                    help="only the null-detector stage / bare PyAV decode rows (720p, 1080p), frames per CPU-second")
    ap.add_argument("--data-frames", type=int, default=300, help="--data-path: frames of each scaled video")
    ap.add_argument("--repeats", type=int, default=2, help="--data-path: repeats, order alternating")
    args = ap.parse_args()
    if args.data_path:
        with tempfile.TemporaryDirectory() as tmp:
            d = measure_data_path(sample_video(args.video), Path(tmp), args.data_frames, args.repeats, args.batch_size)
        for size, r in d.items():
            ratios = [a / b for a, b in zip(r["stage_cpu_fps"], r["decode_cpu_fps"])]
            print(f"{size}: null-detector stage {r['stage_cpu_fps']} / bare decode {r['decode_cpu_fps']} frames per "
                  f"CPU-second = {[round(x, 2) for x in ratios]} (wall: stage {r['stage_fps']}, decode {r['decode_fps']}); "
                  f"RGB ms/frame {r['rgb_ms']}")
        print(json.dumps(d))
        return
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
