"""Inference with a trained head, and the checkpoint format that training writes and prediction reads.

A checkpoint (``models/<task>-<head>-<fold>[-<scene>]/model.pt``) is a :class:`afwpipe.records.Checkpoint`:
the kept epoch's weights, the exact TrainConfig (with its ``speech_gate``, which prediction applies again:
:mod:`afwpipe.clips.gate`), the encoders and standardisation statistics, the kept epoch and its score and the
names that fit and chose the weights (the record's docstring lists every field). It loads with
``torch.load(weights_only=True)``.

Per-frame predictions: a video's overlapping clips are run through the head and averaged per frame
(:func:`afwpipe.temporal.window_average`); sigmoid for AU, softmax for EXPR, raw values for VA.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .clips import ClipDataset
from .device import autocast
from .heads import create_head
from .records import Checkpoint
from .temporal import window_average


def to_device(batch: dict, device: torch.device) -> dict:
    """Every tensor of a (nested) batch dict moved to ``device`` (non-blocking from pinned memory)."""
    return {k: to_device(v, device) if isinstance(v, dict) else v.to(device, non_blocking=True)
            for k, v in batch.items()}


def predict_frames(head: torch.nn.Module, ds: ClipDataset, device: torch.device | str = "cpu",
                   batch_size: int = 32) -> dict[str, dict[str, np.ndarray]]:
    """Per-frame predictions of every video of ``ds``: overlapping clips averaged per frame.

    Returns:
        name -> task -> ``au [T, 12]`` probabilities (sigmoid), ``expr [T, 8]`` probabilities (softmax),
        ``va [T, 2]`` values; float64. Holds every video's outputs: :func:`iter_frames` yields them one
        video at a time.
    """
    return dict(iter_frames(head, ds, device, batch_size))


@torch.no_grad()
def iter_frames(head: torch.nn.Module, ds: ClipDataset, device: torch.device | str = "cpu",
                batch_size: int = 32):
    """:func:`predict_frames` one video at a time: yields ``(name, task -> [T, C] float64)`` as soon as the
    batch holding a video's last clip is done, then forgets that video's clip outputs, so memory holds the
    outputs of the videos in flight (with clips in order: one or two), not of every video."""
    device = torch.device(device)
    was_training = head.training
    head.eval()
    order = ds.order(False)
    last_batch = {}  # video -> index of the batch holding its last clip
    for pos, v in enumerate(ds.clips[order, 0].tolist()):
        last_batch[v] = pos // batch_size
    ends: dict[int, list[int]] = {}
    for v, j in last_batch.items():
        ends.setdefault(j, []).append(v)
    probs = {"au": lambda o: torch.sigmoid(o), "expr": lambda o: torch.softmax(o, -1), "va": lambda o: o}
    windows: dict[int, dict[str, list]] = {}
    try:
        for j, batch in enumerate(ds.batches(batch_size)):
            b = to_device(batch, device)
            with autocast(device):
                out = head(b["x"], b["mask"], b["present"])
            out = {t: probs[t](o.float()).cpu().numpy() for t, o in out.items()}
            for row, (v, s) in enumerate(zip(batch["video"].tolist(), batch["start"].tolist())):
                w = windows.setdefault(v, {t: [] for t in out})
                for t, o in out.items():
                    w[t].append((s, o[row]))
            for v in ends.get(j, []):
                w = windows.pop(v)
                yield ds.names[v], {t: window_average(x, ds.n_frames[v]) for t, x in w.items()}
    finally:
        head.train(was_training)


def save_checkpoint(path: str | Path, state_dict: dict, *, config: dict, in_dims: dict, tasks, encoders: list[dict],
                    stats: dict | None, au_pos_weight: np.ndarray | None, expr_class_weight: np.ndarray | None,
                    best_epoch: int, best_score: float, train_videos: list[str], val_videos: list[str],
                    selected_on: list[str] | None = None, epoch_selection: str | None = None) -> Path:
    """Write a :class:`~afwpipe.records.Checkpoint` to ``path`` (atomically); numpy arrays become tensors."""
    def tensor(a):
        return None if a is None else torch.from_numpy(np.asarray(a))

    ckpt = Checkpoint(
        state_dict=state_dict, config=config, in_dims=dict(in_dims),
        tasks=dict(tasks) if isinstance(tasks, Mapping) else list(tasks),  # declared tasks: output specs
        encoders=encoders,
        stats=None if stats is None else {e: {"mean": tensor(m), "std": tensor(s)} for e, (m, s) in stats.items()},
        au_pos_weight=tensor(au_pos_weight), expr_class_weight=tensor(expr_class_weight), best_epoch=best_epoch,
        best_score=best_score, train_videos=train_videos, val_videos=val_videos, selected_on=list(selected_on or []),
        epoch_selection=epoch_selection, afwpipe_version=__version__)
    return ckpt.save(path)  # atomic: Checkpoint.save writes through atomic.open_atomic


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Checkpoint]:
    """Rebuild the head of checkpoint ``path`` (``model.pt``) in eval mode; returns ``(head, checkpoint)``.

    ``checkpoint.stats`` (encoder -> mean/std tensors, or None) must be applied to new features the
    same way (:meth:`ClipDataset.set_stats`); ``checkpoint.encoders`` lists the feature stores used.

    Raises:
        RecordError: the file is no checkpoint of this version (:meth:`afwpipe.records.Checkpoint.from_json`).
    """
    ckpt = Checkpoint.load(path, device)
    cfg = ckpt.config
    head = create_head(cfg["head"], ckpt.in_dims, ckpt.tasks, **cfg["head_kwargs"]).to(device)
    head.load_state_dict(ckpt.state_dict)
    return head.eval(), ckpt


def checkpoint_stats(ckpt: Checkpoint) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """The standardisation statistics of a checkpoint as numpy ``(mean, std)`` per encoder, or None."""
    if ckpt.stats is None:
        return None
    return {e: (s["mean"].cpu().numpy(), s["std"].cpu().numpy()) for e, s in ckpt.stats.items()}


__all__ = ["checkpoint_stats", "iter_frames", "load_model", "predict_frames", "save_checkpoint", "to_device"]
