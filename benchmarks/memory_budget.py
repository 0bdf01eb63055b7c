"""Memory against its budget (issue 20, point 5): peak RSS above the process's base ÷ the feature cache
budget, for ``afwpipe train`` with ``view: mean`` (float32 views averaged from two stored float16 views) and
for ``afwpipe predict``, each in a fresh process on a synthetic store 3x the budget it reads through.

The store: ``--videos`` x ``--frames`` of a visual encoder ``mae`` (768, views ``full`` and ``flip``) and an
audio encoder ``logmel`` (80), float16, random labels; the first half of the videos ``train``, the rest
``val``. Train reads every video (training and validation share ``train.cache_gb``); predict reads the
``val`` half, so its budget is a third of that half's held bytes. Goal (issue 20): ≤ 1.1 plus one batch.

Usage: python benchmarks/memory_budget.py [--budget-gb 0.2] [--frames 1500] [--workdir DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import run_child, write_index  # noqa: E402

DIMS = {"mae": 768, "logmel": 80}
VIEWS = ["full", "flip"]
HEAD = {"channels": 32, "mlp_dim": 32, "dilations": [1, 2], "dropout": 0.0}
BATCH, K = 32, 100


def held_bytes(n_frames: int) -> int:
    """Bytes one video holds in the cache with view ``mean``: mae float32, logmel float16, two ``present``."""
    return n_frames * (DIMS["mae"] * 4 + DIMS["logmel"] * 2 + 2)


def build(root: Path, n_videos: int, n_frames: int, seed: int = 0):
    """The workspace of the module docstring, written through :mod:`afwpipe.store` as extract writes it."""
    from afwpipe import store
    from train_speed import random_labels

    rng = np.random.default_rng(seed)
    ws = store.Workspace(root)
    ws.root.mkdir(parents=True, exist_ok=True)
    labels = store.open_store(ws.labels, "w")
    records = []
    for i in range(n_videos):
        name = f"video{i:03d}"
        for enc, d in DIMS.items():
            visual = enc == "mae"
            g = store.begin_video(ws.features(enc), name, {"encoder": enc, "dim": d, "weights": "random",
                                                           "modality": "visual" if visual else "audio",
                                                           "views": VIEWS if visual else ["full"]})
            for v in (VIEWS if visual else ["full"]):
                store.write_time_array(g, "emb" if v == "full" else f"emb_{v}",
                                       rng.normal(size=(n_frames, d)).astype(np.float16))
            store.write_time_array(g, "present", np.ones(n_frames, bool))
            store.mark_complete(g)
        random_labels(labels, name, n_frames, rng)
        split = "train" if i < n_videos // 2 else "val"
        records.append({"name": name, "video": name, "split": split, "splits": dict.fromkeys(("au", "expr", "va"), split),
                        "fold": i % 2, "n_frames": n_frames, "labelled": dict.fromkeys(("au", "expr", "va"), n_frames)})
    write_index(ws, records, folds={"k": 2, "seed": 0})
    return ws


_CHILD = """
import json, re, sys
from pathlib import Path
rss = lambda: int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
import torch
torch.zeros(1)
from afwpipe import store
from afwpipe.clips import cache as cache_module
from afwpipe.predict import PredictConfig, run_predict
from afwpipe.train import TrainConfig, train
root, part, budget_gb, head = sys.argv[1], sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4])
ws = store.Workspace(root)
most, caches = [0], []
put = cache_module.LRUCache.put
def recording_put(self, key, value, pin=False):
    put(self, key, value, pin)
    if all(c is not self for c in caches):
        caches.append(self)
    most[0] = max(most[0], sum(c.nbytes for c in caches))
cache_module.LRUCache.put = recording_put
base = rss()
if part == "train":
    train(ws, TrainConfig(task="au", head="tcn", fold="official", features=["mae", "logmel"], view="mean",
                          k=100, epochs=1, patience=0, batch_size=32, head_kwargs=head, device="cpu",
                          cache_gb=budget_gb), progress=False)
else:
    run_predict(ws, PredictConfig(head="tcn", tasks=["au"], folds=["official"], device="cpu", cache_gb=budget_gb),
                progress=False)
print(json.dumps({"base_mib": base, "cache_max_mib": most[0] / 2**20}))
"""


def measure(root: Path, part: str, budget_gb: float) -> dict:
    """Fresh process running ``part`` (``train`` or ``predict``) with ``budget_gb``: its base RSS (torch and
    afwpipe imported, before the step), peak RSS (VmHWM) and the most bytes the caches held."""
    out, peak = run_child(_CHILD, str(root), part, str(budget_gb), json.dumps(HEAD))
    over = (peak - out["base_mib"]) * 2**20
    budget = budget_gb * (1 << 30)
    batch = BATCH * K * (DIMS["mae"] + DIMS["logmel"]) * 4  # one collated float32 batch
    return {**out, "peak_mib": peak, "over_bytes": over, "budget_bytes": budget, "ratio": over / budget,
            "batch_bytes": batch, "goal_bytes": 1.1 * budget + batch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-gb", type=float, default=0.2, help="train.cache_gb of the train run (GiB)")
    ap.add_argument("--frames", type=int, default=1500, help="frames per video")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    budget = args.budget_gb * (1 << 30)
    n_videos = 2 * math.ceil(1.5 * budget / held_bytes(args.frames))  # train + val = 3x the budget
    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="afwpipe-mem-"))
    ws = build(tmp / "ws", n_videos, args.frames)
    rows = {"videos": n_videos, "frames": args.frames}
    rows["train"] = measure(ws.root, "train", args.budget_gb)
    val_bytes = (n_videos - n_videos // 2) * held_bytes(args.frames)
    rows["predict"] = measure(ws.root, "predict", val_bytes / 3 / (1 << 30))
    for part in ("train", "predict"):
        r = rows[part]
        print(f"{part}: peak RSS above base {r['over_bytes'] / 2**20:,.0f} MiB (peak {r['peak_mib']:,.0f} - base "
              f"{r['base_mib']:,.0f}) / budget {r['budget_bytes'] / 2**20:,.0f} MiB = {r['ratio']:.2f} "
              f"(goal <= 1.1 + one batch {r['batch_bytes'] / 2**20:,.0f} MiB = "
              f"{r['goal_bytes'] / r['budget_bytes']:.2f}); caches held at most {r['cache_max_mib']:,.0f} MiB")
    print(f"store: {n_videos} videos x {args.frames} frames, held with view mean "
          f"{n_videos * held_bytes(args.frames) / 2**20:,.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
