"""``afwpipe analyze`` against the pipeline's stages run separately on the same video and head.

stages: ``build_index`` + ``run_detect`` + ``run_extract`` (``mini_xception``, ``logmel``) + ``run_predict``
(one ``mtl`` tmf head, so AU, EXPR and VA), in this order, as ``dvc repro`` runs them.
analyze: :func:`afwpipe.analyze.run_analyze` with that head's folder (probe, detect, extract, predict, then
fill / smoothing / thresholds and the table written; no timeline PNG, which the stages do not draw).

The head is a randomly initialised tmf (default size) saved in the checkpoint format with the encoders'
identities: its weights do not change the work done. Each run is a fresh process building its models inside
the timing.

Usage: python benchmarks/analyze_speed.py [--video single_face] [--frames 300] [--device cpu] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import alternating_children, index_video, loop_video_to, sample_video

ENCODERS = ("mini_xception", "logmel")
MODEL = "mtl-tmf-official"


def make_model(root: Path) -> Path:
    """``root/models/mtl-tmf-official/model.pt``: a random tmf head on ``ENCODERS`` (their real identities)."""
    from afwpipe.encoders import create_encoder
    from afwpipe.heads import create_head
    from afwpipe.inference import save_checkpoint

    configs = {e: create_encoder(e, device="cpu").config for e in ENCODERS}
    in_dims = {e: c["dim"] for e, c in configs.items()}
    tasks = ["au", "expr", "va"]
    head = create_head("tmf", in_dims, tasks)
    folder = root / "models" / MODEL
    folder.mkdir(parents=True)
    save_checkpoint(folder / "model.pt", head.state_dict(),
                    config={"task": "mtl", "head": "tmf", "head_kwargs": {}, "features": list(ENCODERS), "k": 100,
                            "eval_stride": 50, "fold": "official"},
                    in_dims=in_dims, tasks=tasks,
                    encoders=[{"name": e, "encoder": e, "encoder_config": c, "modality": c["modality"],
                               "dim": c["dim"], "weights": c["weights"]} for e, c in configs.items()],
                    stats=None, au_pos_weight=None, expr_class_weight=None, best_epoch=0, best_score=0.0,
                    train_videos=[], val_videos=[])
    return folder


def run_stages(video: Path, work: Path, model: Path, device: str) -> dict:
    """index + detect + extract (each encoder) + predict, one after the other."""
    from afwpipe.detect import DetectConfig, run_detect
    from afwpipe.extract import ExtractConfig, run_extract
    from afwpipe.predict import PredictConfig, run_predict

    t = time.perf_counter()
    ws = index_video(video, work)
    det = run_detect(ws, DetectConfig(device=device), progress=False)
    for enc in ENCODERS:
        run_extract(ws, ExtractConfig(enc, device=device), progress=False)
    ws.models.mkdir()
    (ws.models / MODEL).symlink_to(model)
    pred = run_predict(ws, PredictConfig(head="tmf", tasks=["mtl"], folds=["official"], device=device), progress=False)
    dt = time.perf_counter() - t
    if det.failures or pred.frames != det.results[0].frames:
        raise RuntimeError(f"stages failed: {[r.error for r in det.failures]}, predicted {pred.frames} frames")
    return {"seconds": dt, "frames": det.results[0].frames}


def run_analyze(video: Path, work: Path, model: Path, device: str) -> dict:
    """``afwpipe analyze VIDEO --model MODEL --no-timeline`` as a function call."""
    from afwpipe.analyze import AnalyzeConfig, resolve_model, run_analyze as analyze

    t = time.perf_counter()
    summary = analyze([video], resolve_model(str(model), None), AnalyzeConfig(timeline=False, device=device),
                      work, progress=False)
    dt = time.perf_counter() - t
    (v,) = summary.videos
    if v.error:
        raise RuntimeError(f"analyze failed: {v.error}")
    return {"seconds": dt, "frames": v.frames}


CHILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import analyze_speed
side, video, work, model, dev = sys.argv[1:6]
fn = analyze_speed.run_analyze if side == "analyze" else analyze_speed.run_stages
print(json.dumps(fn(Path(video), Path(work), Path(model), dev)))
"""


def measure_repeated(video: Path, work: Path, device: str = "cpu", repeats: int = 2) -> dict:
    """Both sides ``repeats`` times, each a fresh process, order alternating (analyze first on even repeats).
    Returns ``analyze_all`` / ``stages_all`` (frames/s per repeat) and the last run of each side."""
    model = make_model(work / "model_ws")
    return alternating_children(CHILD, ("analyze", "stages"), video, work, repeats, str(model), device)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default="single_face")
    ap.add_argument("--frames", type=int, default=300, help="the video looped to N frames")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = loop_video_to(sample_video(args.video), Path(tmp) / "video" / f"{args.video}.mp4", args.frames)
        r = measure_repeated(video, Path(tmp), args.device, args.repeats)
    ratios = [a / s for a, s in zip(r["analyze_all"], r["stages_all"])]
    print(f"analyze {r['analyze_all']} frames/s, stages {r['stages_all']} frames/s, ratios {ratios}")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
