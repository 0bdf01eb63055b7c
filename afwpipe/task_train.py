"""Train a head on a dataset's declared tasks (a generic reader's ``tasks:``, :mod:`afwpipe.datasets`).

:func:`afwpipe.train.train` hands an index with declared tasks here; everything else is the recipe of
:mod:`afwpipe.train` (folds and scenes of :func:`afwpipe.folds.split_videos`, the epoch chosen by ``inner`` or
``val`` selection, AdamW, standardisation, the speech gate, modality dropout, checkpoint and ``metrics.json``
in ``models/<task>-<head>-<fold>[-<scene>]``). What differs:

- ``train.task`` is a declared task, or ``mtl`` for every declared task in one head;
- a video task gets the head's video-level readout (:mod:`afwpipe.heads.readout`; ``train.head_kwargs``
  ``video_pool: mean | attention``), one output per clip, and its clips carry the video's label;
- losses by type (:mod:`afwpipe.task_losses`); the validation score is each task's headline score
  (class ``uar``, multilabel ``f1``, regression ``ccc``; :mod:`afwpipe.task_metrics`), averaged over the tasks,
  a video task scored on one output per video (its clips' mean logits, :mod:`afwpipe.task_inference`).

The AU / EXPR / VA options (``focal_gamma``, ``logit_adjust_tau``, ``task_weights``) do not apply and are refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from . import atomic, layout, store
from .clips import ClipDataset, drop_modalities
from .clips.cache import LRUCache
from .clips.gate import SpeechGate
from .datasets.base import ALL_TASKS, TaskSpec, index_tasks
from .device import autocast, resolve_device
from .errors import TrainError
from .folds import split_videos
from .heads import create_head
from .inference import save_checkpoint, to_device
from .readers import ZarrFeatures, load_labels
from .records import IndexFile
from .task_inference import predict_declared
from .task_losses import class_weights, tasks_loss
from .task_metrics import HEADLINE, decide, task_scores
from .train import (TrainConfig, TrainResult, _deterministic, _finite, features_trained_on, fit_epochs,
                    open_curves, selection_split)

def run_tasks(index: IndexFile, task: str) -> dict[str, TaskSpec]:
    """The declared tasks a run of ``train.task`` fits: that one, or every one for ``mtl``.

    Raises:
        TrainError: ``task`` is not declared (the message lists the dataset's tasks).
    """
    declared = index_tasks(index)
    if task == ALL_TASKS:
        return declared
    if task not in declared:
        raise TrainError(f"unknown task {task!r} for dataset {index.dataset!r}; its tasks: "
                         f"{', '.join(declared)} (or {ALL_TASKS}: all of them in one head)")
    return {task: declared[task]}


def output_specs(tasks: dict[str, TaskSpec]) -> dict[str, dict]:
    """The head's output specs (:func:`afwpipe.heads.common.output_specs`): one output per class or target."""
    return {n: {"width": len(t.names), "level": t.level} for n, t in tasks.items()}


def score_declared(preds: dict, labels: dict, tasks: dict[str, TaskSpec]) -> dict:
    """``{task: scores, "score": mean headline score}`` of :func:`~afwpipe.task_inference.predict_declared`'s
    outputs over every video of ``preds`` (:func:`afwpipe.task_metrics.task_scores`)."""
    out, heads = {}, []
    for n, t in tasks.items():
        p = np.concatenate([decide(t, preds[v][n]) for v in preds])
        y = np.concatenate([labels[v][n] for v in preds])
        out[n] = task_scores(t, p, y)
        heads.append(out[n][HEADLINE[t.type]])
    out["score"] = float(np.mean(heads))
    return out


def _require(labels: dict, names: list[str], tasks: dict[str, TaskSpec], side: str, where: str) -> None:
    for n, t in tasks.items():
        if not sum(int(t.valid(labels[v][n]).sum()) for v in names):
            raise TrainError(f"{where}: no valid {n} label in the {side} videos ({', '.join(names[:5])}"
                             f"{', …' if len(names) > 5 else ''})")


def _epoch(head, ds: ClipDataset, tasks, weights, opt, rng, device, cfg: TrainConfig, where: str) -> float:
    head.train()
    total, n = 0.0, 0
    for batch in ds.batches(cfg.batch_size, shuffle=True, rng=rng):
        if cfg.modality_dropout:
            drop_modalities(batch, cfg.modality_dropout, rng)
        b = to_device(batch, device)
        with autocast(device):
            out = head(b["x"], b["mask"], b["present"])
        loss = tasks_loss(tasks, out, b, weights)
        if not torch.isfinite(loss):
            raise TrainError(f"train {where}: loss became {loss.item()}; lower lr (now {cfg.lr}) or check the features")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total, n = total + float(loss.detach()), n + 1
    return total / max(1, n)


def train_declared(ws: store.Workspace, cfg: TrainConfig, index: IndexFile, progress: bool = True,
                   out_dir: Path | None = None, curves=None) -> TrainResult:
    """Train ``cfg.head`` on the declared task(s) ``cfg.task`` (module docstring); write ``model.pt`` and
    ``metrics.json`` as :func:`afwpipe.train.train` does (``out_dir``, ``curves``: as there).

    Raises:
        TrainError: an undeclared task, an AU/EXPR/VA-only option set, no valid label on a side, what
            :func:`afwpipe.train.train` raises for features and folds.
    """
    t0 = time.perf_counter()
    tasks = run_tasks(index, cfg.task)
    if cfg.focal_gamma or cfg.logit_adjust_tau or cfg.task_weights:
        raise TrainError("train: focal_gamma, logit_adjust_tau and task_weights are AU/EXPR/VA options; the declared "
                         f"tasks of {index.dataset!r} take none (set them to 0 / null)")
    where = f"fold {cfg.fold}" + (f", scene {cfg.scene!r}" if cfg.scene else "")
    all_train, val_names = split_videos(index, tuple(tasks), cfg.fold, cfg.scene)
    train_names, select_names = selection_split(index, all_train, val_names, cfg)
    labels = load_labels(ws, all_train + val_names, tuple(tasks))
    _require(labels, train_names, tasks, "training", where)
    if val_names:
        _require(labels, val_names, tasks, "validation", where)
    if select_names and cfg.epoch_selection == "inner":
        _require(labels, select_names, tasks, "epoch-choosing (raise train.inner_frac)", where)

    features = ZarrFeatures(ws, cfg.features, view=cfg.view)
    identities = {e: features.identity(e, all_train + val_names) for e in features.encoders}
    gate = SpeechGate.from_config(ws, cfg.speech_gate, identities)
    cache = LRUCache(int(cfg.cache_gb * (1 << 30)))

    def clips(names, stride, training=False):
        return ClipDataset(features, labels, names, cfg.k, stride, training=training, gate=gate, cache=cache,
                           tasks=tasks) if names else None

    train_ds = clips(train_names, cfg.stride, training=True)
    val_ds = clips(val_names, cfg.eval_stride)
    select_ds = val_ds if cfg.epoch_selection == "val" else clips(select_names, cfg.eval_stride)
    stats = train_ds.feature_stats() if cfg.standardize else None
    for ds in (train_ds, val_ds, select_ds):
        if ds is not None:
            ds.set_stats(stats)
    weights_np = {n: class_weights(t, np.concatenate([labels[v][n] for v in train_names])) for n, t in tasks.items()}

    device = torch.device(resolve_device(cfg.device))
    weights = {n: None if w is None else torch.as_tensor(w, device=device) for n, w in weights_np.items()}
    with _deterministic():
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        head = create_head(cfg.head, train_ds.dims, output_specs(tasks), **cfg.head_kwargs).to(device)
        opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        live = open_curves(ws, cfg, curves)
        fit = fit_epochs(head, cfg,
                         lambda epoch: _epoch(head, train_ds, tasks, weights, opt, rng, device, cfg,
                                              f"{cfg.run_name}, epoch {epoch}"),
                         lambda ds: score_declared(predict_declared(head, ds, tasks, device, cfg.batch_size), labels,
                                                   tasks),
                         select_ds, val_ds, live, progress)
        history, best, best_epoch, best_state, selection = fit

    out_dir = Path(out_dir) if out_dir is not None else layout.model_dir(ws, cfg.run_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(layout.checkpoint(out_dir), best_state, config=asdict(cfg), in_dims=dict(train_ds.dims),
                    tasks=output_specs(tasks), encoders=[{"name": e, **identities[e]} for e in features.encoders],
                    stats=stats, au_pos_weight=None, expr_class_weight=None, best_epoch=best_epoch,
                    best_score=None if best is None else best["score"], train_videos=train_names,
                    val_videos=val_names, selected_on=select_names, epoch_selection=cfg.epoch_selection)
    metrics = {"run": cfg.run_name, "task": cfg.task, "tasks": list(tasks), "head": cfg.head, "fold": cfg.fold,
               "scene": cfg.scene, "best_epoch": best_epoch, "best": best, "epochs": history,
               "epoch_selection": cfg.epoch_selection, "selected_on": select_names, "selection": selection,
               "train_videos": train_names, "val_videos": val_names,
               "features_trained_on": features_trained_on(identities)}
    atomic.write_text(out_dir / layout.RUN_RECORD, json.dumps(_finite(metrics), indent=1) + "\n")
    return TrainResult(cfg, out_dir, best_epoch, best, len(history), len(train_names), len(val_names),
                       time.perf_counter() - t0, select_names)
