"""Outputs of a head trained on a dataset's declared tasks (:mod:`afwpipe.datasets`), one video at a time.

A frame task's clip outputs are averaged per frame over the overlapping clips
(:func:`afwpipe.temporal.window_average`); a video task's clip outputs (logits, or values) are averaged over the
video's clips (mean of logits: every clip of a video votes equally), one output per video. Then the task's
activation: softmax (``class``), sigmoid (``multilabel``), none (``regression``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .clips import ClipDataset
from .datasets.base import TaskSpec
from .device import autocast
from .inference import to_device
from .temporal import window_average


def activate(task: TaskSpec, out: np.ndarray) -> np.ndarray:
    """Probabilities / values from a head's raw outputs ``[..., C]`` (float64)."""
    out = np.asarray(out, np.float64)
    if task.type == "class":
        e = np.exp(out - out.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    if task.type == "multilabel":
        return 1.0 / (1.0 + np.exp(-out))
    return out


@torch.no_grad()
def predict_declared(head: torch.nn.Module, ds: ClipDataset, tasks: Mapping[str, TaskSpec],
                     device: torch.device | str = "cpu", batch_size: int = 32) -> dict[str, dict[str, np.ndarray]]:
    """name -> task -> ``[T, C]`` per-frame (frame task) or ``[1, C]`` per-video (video task) probabilities /
    values, float64, for every video of ``ds`` (module docstring)."""
    device = torch.device(device)
    was_training = head.training
    head.eval()
    frames: dict[int, dict[str, list]] = {}
    clips: dict[int, dict[str, list]] = {}
    try:
        for batch in ds.batches(batch_size):
            b = to_device(batch, device)
            with autocast(device):
                out = head(b["x"], b["mask"], b["present"])
            out = {t: o.float().cpu().numpy() for t, o in out.items()}
            for row, (v, s) in enumerate(zip(batch["video"].tolist(), batch["start"].tolist())):
                for t, spec in tasks.items():
                    if spec.level == "frame":
                        frames.setdefault(v, {}).setdefault(t, []).append((s, out[t][row]))
                    else:
                        clips.setdefault(v, {}).setdefault(t, []).append(out[t][row])
    finally:
        head.train(was_training)
    result = {}
    for v, name in enumerate(ds.names):
        result[name] = {}
        for t, spec in tasks.items():
            if spec.level == "frame":
                raw = window_average(frames[v][t], ds.n_frames[v])
            else:
                raw = np.mean(clips[v][t], axis=0, keepdims=True)
            result[name][t] = activate(spec, raw)
    return result
