"""End to end, video -> one encoder's per-frame features: afwpipe vs the frames-to-JPEG-files workflow.

afwpipe: ``build_index`` + ``run_detect`` (streamed decode, batched detection, aligned crops into
faces.zarr, 16 kHz audio) + ``run_extract`` (features/<encoder>.zarr), in this process.

JPEG workflow, as the ABAW seeds describe it: dump every frame with OpenCV to ``frames/<video>/00001.jpg``,
detect faces per JPEG with the same detector (one image per call), align the best face with the same
alignment and size and save it to ``cropped_aligned/<video>/00001.jpg``, then load the crop JPEGs in
batches for the same encoder and save one ``.npy`` of features per video.

Both timings include building the detector and the encoder (each workflow builds its own); the video
file is read once beforehand so both start with it in the page cache.

Usage: python benchmarks/e2e_speed.py [--video single_face] [--encoder mini_xception] [--weights default]
       [--detector mtcnn] [--batch-size 16] [--device cpu] [--frames N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from common import alternating_children, disk_bytes, files_under, index_video, loop_video, sample_video


def run_afwpipe(video: Path, work: Path, detector: str, encoder: str, weights: str | None, batch_size: int,
                device: str, size: int = 224) -> dict:
    """Index + detect + extract on ``video``; wall time, frames, and the stores' bytes (disk vs raw)."""
    from afwpipe import store
    from afwpipe.crop_codec import crop_size
    from afwpipe.detect import DetectConfig, run_detect
    from afwpipe.extract import ExtractConfig, run_extract

    t = time.perf_counter()
    ws = index_video(video, work)
    det = run_detect(ws, DetectConfig(detector=detector, size=size, batch_size=batch_size, device=device),
                     progress=False)
    ext = run_extract(ws, ExtractConfig(encoder, weights=weights, device=device, batch_size=batch_size),
                      progress=False)
    dt = time.perf_counter() - t
    if det.failures or ext.failures:
        raise RuntimeError(f"afwpipe failed: {[r.error for r in det.failures + ext.failures]}")
    name = ws.read_index().records[0].name
    crops = store.open_store(ws.faces, "r")[f"{name}/crops"]
    emb = store.open_store(ws.features(encoder), "r")[f"{name}/emb"]
    paths = [ws.faces, ws.audio, ws.features(encoder)]
    # raw crop bytes: T x S x S x 3 uint8 RGB, whatever the crop codec stores
    return {"seconds": dt, "frames": det.results[0].frames, "faces": det.results[0].present,
            "files": len(files_under(*paths)), "disk_bytes": disk_bytes(*paths),
            "crops_raw_bytes": crops.shape[0] * crop_size(crops) ** 2 * 3, "crops_disk_bytes": disk_bytes(ws.faces / name / "crops"),
            "emb_raw_bytes": emb.nbytes, "emb_disk_bytes": disk_bytes(ws.features(encoder) / name / "emb")}


def run_jpeg(video: Path, work: Path, detector: str, encoder: str, weights: str | None, batch_size: int,
             device: str, size: int = 224) -> dict:
    """The frames-to-JPEG-files workflow on ``video`` (see the module docstring)."""
    from afwpipe.encoders import create_encoder
    from afwpipe.faces import align_faces, create_detector

    t = time.perf_counter()
    det = create_detector(detector, device=device)
    enc = create_encoder(encoder, weights=weights, device=device)
    frames_dir, crops_dir = work / "frames" / video.stem, work / "cropped_aligned" / video.stem
    frames_dir.mkdir(parents=True)
    crops_dir.mkdir(parents=True)
    cap = cv2.VideoCapture(str(video))
    n = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        n += 1
        cv2.imwrite(str(frames_dir / f"{n:05d}.jpg"), bgr)
    cap.release()
    faces = 0
    for f in sorted(frames_dir.iterdir()):
        rgb = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        (d,) = det.detect(rgb[None])
        if not len(d.scores):
            continue
        crop = align_faces(rgb[None], d.landmarks[:1], size)[0]  # highest score first
        cv2.imwrite(str(crops_dir / f.name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        faces += 1
    files = sorted(crops_dir.iterdir())
    feats = [np.zeros((0, enc.dim), np.float32)]
    for i in range(0, len(files), batch_size):
        batch = np.stack([cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files[i:i + batch_size]])
        feats.append(enc.encode_crops(batch))
    out = work / "features" / f"{video.stem}.npy"
    out.parent.mkdir()
    np.save(out, np.concatenate(feats).astype(np.float16))
    dt = time.perf_counter() - t
    return {"seconds": dt, "frames": n, "faces": faces, "files": len(files_under(work)),
            "disk_bytes": disk_bytes(work)}


def measure(video: Path, work: Path, detector: str = "mtcnn", encoder: str = "mini_xception",
            weights: str | None = None, batch_size: int = 16, device: str = "cpu") -> dict:
    """Both workflows on ``video`` (alone in its folder) with working folders under ``work``."""
    video.read_bytes()  # the file in the page cache for both
    a = run_afwpipe(video, work / "afwpipe", detector, encoder, weights, batch_size, device)
    j = run_jpeg(video, work / "jpeg", detector, encoder, weights, batch_size, device)
    return {"detector": detector, "encoder": encoder, "weights": weights or "default",
            "afwpipe": a, "jpeg": j, "afwpipe_fps": a["frames"] / a["seconds"], "jpeg_fps": j["frames"] / j["seconds"]}


CHILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import e2e_speed
side, video, work, det, enc, weights, bs, dev = sys.argv[1:9]
fn = e2e_speed.run_afwpipe if side == "afwpipe" else e2e_speed.run_jpeg
r = fn(Path(video), Path(work), det, enc, None if weights == "default" else weights, int(bs), dev)
print(json.dumps(r))
"""


def measure_repeated(video: Path, work: Path, detector: str = "mtcnn", encoder: str = "mini_xception",
                     weights: str | None = None, batch_size: int = 16, device: str = "cpu",
                     repeats: int = 2) -> dict:
    """Both workflows ``repeats`` times, each run in its own fresh process (models built inside the
    timing, as in ``measure``), the order alternating (afwpipe first on even repeats, JPEG first on odd
    ones). Returns ``afwpipe`` / ``jpeg``: the last run's details, and ``afwpipe_all`` / ``jpeg_all``:
    frames/s per repeat."""
    return alternating_children(CHILD, ("afwpipe", "jpeg"), video, work, repeats, detector, encoder,
                                weights or "default", str(batch_size), device)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default="single_face")
    ap.add_argument("--frames", type=int, default=None, help="use only the first N frames")
    ap.add_argument("--detector", default="mtcnn")
    ap.add_argument("--encoder", default="mini_xception")
    ap.add_argument("--weights", default="default", help="'default', 'random' or a file")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = loop_video(sample_video(args.video), Path(tmp) / "video" / f"{args.video}.mp4", 1, args.frames)
        r = measure(video, Path(tmp), args.detector, args.encoder, None if args.weights == "default" else args.weights,
                    args.batch_size, args.device)
    for k in ("afwpipe", "jpeg"):
        x = r[k]
        print(f"{k:<8} {x['frames'] / x['seconds']:8.1f} frames/s  ({x['frames']} frames, {x['faces']} faces, "
              f"{x['seconds']:.1f} s, {x['files']} files, {x['disk_bytes'] / 2**20:.1f} MiB)")
    print(f"ratio afwpipe / jpeg: {r['afwpipe_fps'] / r['jpeg_fps']:.2f}")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
