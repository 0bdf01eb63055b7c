"""A small synthetic workspace for fine-tune tests: index.json, labels.zarr and faces.zarr of a few videos whose
face crops carry a planted EXPR signal (class 1: bright crop, class 0: dark crop, both with noise)."""

from __future__ import annotations

import json

import numpy as np

from synth import complete_index
from afwpipe import store

#: the encoder the tests fine-tune: timm's random-weight test_vit (0.3 M parameters, LayerNorm, no BatchNorm) on 32-px inputs
TINY = {"encoder": "timm:test_vit", "input_size": 32}


def planted_crops(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``[T, size, size, 3]``: noise in [0, 90), plus 120 where the label is 1."""
    crops = rng.integers(0, 90, (len(labels), size, size, 3), dtype=np.uint8)
    crops[labels == 1] += 120
    return crops


def make_workspace(root, videos: dict[str, dict], size: int = 32, frames: int = 60, seed: int = 0) -> store.Workspace:
    """Workspace ``root`` with one video per entry of ``videos`` (name -> ``{"split": train|val|test, "fold": k}``):
    ``frames`` frames, the last 5 without a face, EXPR labels alternating in runs of 7 frames between 0 and 1 with
    every 10th frame invalid (-1). AU and VA are all invalid."""
    ws = store.Workspace(root)
    ws.root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    recs = []
    for name, spec in videos.items():
        expr = ((np.arange(frames) // 7) % 2).astype(np.int8)
        expr[::10] = -1
        present = np.ones(frames, bool)
        present[-5:] = False
        g = store.begin_video(ws.labels, name)
        store.write_time_array(g, "expr", expr)
        store.write_time_array(g, "au", np.full((frames, 12), -1, np.int8))
        store.write_time_array(g, "va", np.full((frames, 2), -5, np.float32))
        store.mark_complete(g)
        f = store.begin_video(ws.faces, name)
        store.write_time_array(f, "present", present)
        store.write_time_array(f, "crops", planted_crops(np.where(present, expr, 2), size, rng))
        store.write_time_array(f, "times", np.arange(frames) / 25.0)
        store.mark_complete(f, n_frames=frames)
        recs.append({"name": name, "video": spec.get("video", name), "splits": {t: spec["split"] for t in ("au", "expr", "va")},
                     "split": spec["split"], "fold": spec.get("fold", -1), "n_frames": frames,
                     "labelled": {"au": 0, "expr": int((expr >= 0).sum()), "va": 0}})
    ws.index.write_text(json.dumps(complete_index({"dataset": "synthetic", "folds": {"k": 2, "seed": 0}, "scenes": {},
                                    "videos": recs})))
    return ws


#: five official-train videos (an inner split of 5 holds out one to choose the epoch), two val, fold 0/1 members
VIDEOS = {f"tr{i}": {"split": "train", "fold": i % 2} for i in range(5)} | {
    "va0": {"split": "val", "fold": 0}, "va1": {"split": "val", "fold": 1}}

#: two official-train videos: too few for an inner split, so the last epoch is kept (resume and DDP tests compare
#: the weights of the last epoch, not of an early epoch both runs happened to choose)
TWO = {"tr0": {"split": "train", "fold": 0}, "tr1": {"split": "train", "fold": 1}, "va0": {"split": "val", "fold": 0}}
