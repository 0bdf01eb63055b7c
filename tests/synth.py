"""Small synthetic inputs for tests: videos written with PyAV and Aff-Wild2-style annotation trees."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from afwpipe.labels import AU_NAMES, EXPR_NAMES


def make_video(path: Path, n_frames: int = 10, size: tuple[int, int] = (64, 48), fps: int = 25,
               audio: bool = True, rotate: int | None = None, frames: np.ndarray | None = None) -> Path:
    """Write a video of ``n_frames`` (gradient frames, or ``frames`` [T,H,W,3] uint8) and optional 1 kHz audio.

    ``.avi`` uses mpeg4, other suffixes h264 (yuv420p). ``rotate`` sets the stream's rotate tag.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    codec = "mpeg4" if path.suffix == ".avi" else "libx264"
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if rotate is not None:
            vs.metadata["rotate"] = str(rotate)
        if audio:
            a = out.add_stream("aac", rate=16000)
            a.layout = "mono"
        for i in range(n_frames):
            img = frames[i] if frames is not None else np.full((h, w, 3), (i * 20) % 256, np.uint8)
            for pkt in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if audio:
            n = int(16000 * n_frames / fps)
            t = np.arange(n) / 16000
            wave = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None, :]
            af = av.AudioFrame.from_ndarray(wave, format="flt", layout="mono")
            af.sample_rate = 16000
            af.time_base = Fraction(1, 16000)
            af.pts = 0
            for pkt in a.encode(af):
                out.mux(pkt)
            for pkt in a.encode():
                out.mux(pkt)
    return path


def write_annotation(path: Path, task: str, n: int, header: bool = True, valid: int | None = None) -> Path:
    """Write an annotation file of ``n`` frames for ``task``; the first ``valid`` (default all) are valid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    valid = n if valid is None else valid
    rng = np.random.default_rng(n)
    lines = []
    if header:
        lines.append({"au": ",".join(AU_NAMES), "expr": ",".join(EXPR_NAMES), "va": "valence,arousal"}[task])
    for i in range(n):
        if task == "au":
            lines.append(",".join(str(int(x)) for x in rng.integers(0, 2, 12)) if i < valid else ",".join(["-1"] * 12))
        elif task == "expr":
            lines.append(str(int(rng.integers(0, 8))) if i < valid else "-1")
        else:
            lines.append(",".join(f"{x:.3f}" for x in rng.uniform(-1, 1, 2)) if i < valid else "-5,-5")
    path.write_text("\n".join(lines) + "\n")
    return path


# (edition folder, {task: challenge folder}, train folder name)
EDITIONS = {
    "abaw3": ("Third ABAW Annotations",
              {"au": "AU_Detection_Challenge", "expr": "EXPR_Classification_Challenge", "va": "VA_Estimation_Challenge"},
              "Train_Set"),
    "abaw5": ("5th ABAW Annotations",
              {"au": "AU_Detection_Challenge", "expr": "EXPR_Classification_Challenge", "va": "VA_Estimation_Challenge"},
              "Training_Set"),
    "abaw6": ("6th_ABAW_Annotations",
              {"au": "AU_Detection_Challenge", "expr": "EXPR_Recognition_Challenge", "va": "VA_Estimation_Challenge"},
              "Train_Set"),
}


def make_affwild2_tree(root: Path, edition: str = "abaw6", n_frames: int = 12) -> Path:
    """A tiny Aff-Wild2 copy: videos in batch1/ (.mp4), batch2/ (.avi), new_vids/ (two-person .mp4),
    annotations in the edition's folder names. Returns ``root``.

    Videos: ``1-30-64x48`` (train), ``5-60-64x48-1`` (val, .avi), ``10-60-64x48`` (two people:
    ``_left`` train, ``_right`` train), ``166`` (no annotation). Annotation ``ghost`` has no video.
    """
    ed, dirs, train = EDITIONS[edition]
    make_video(root / "batch1" / "1-30-64x48.mp4", n_frames)
    make_video(root / "batch2" / "5-60-64x48-1.avi", n_frames, audio=False)
    make_video(root / "new_vids" / "10-60-64x48.mp4", n_frames)
    make_video(root / "batch1" / "166.mp4", n_frames)
    ann = root / "annotations" / ed
    names = {"1-30-64x48": train, "5-60-64x48-1": "Validation_Set", "10-60-64x48_left": train,
             "10-60-64x48_right": train, "ghost": train}
    for task, cdir in dirs.items():
        for name, split in names.items():
            write_annotation(ann / cdir / split / f"{name}.txt", task, n_frames, valid=n_frames - 2)
    return root
