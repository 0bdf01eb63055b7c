"""Train one fusion head for one (task, fold[, scene]) on cached features; never touches video.

Recipe (docs/heads.md, "Training"; Netease Fuxi ABAW5/6, USTC ABAW8): clips of K=100 frames with
stride K/2, AdamW (lr 1e-4, weight decay 1e-2), batch 32, masked losses of :mod:`afwpipe.losses` with
class weights from the training labels, early stopping on a selection score. Scoring predicts every
frame: overlapping clips (``eval_stride``, default K/2) averaged per frame
(:func:`afwpipe.inference.predict_frames`).

Which videos choose the epoch (``epoch_selection``; model selection must not look at the frames a system is
then scored on, and a fold system is scored on its fold's validation videos):

- ``inner`` (default): an inner, seeded, video-level split of the fold's training names
  (:func:`afwpipe.folds.inner_split`: ``inner_frac`` of the videos, siblings ``X``/``X_left``/``X_right``
  together) chooses the epoch and the rest fits the weights. With fewer than ``inner_min_videos`` training
  videos there is nothing to split: every training name fits, exactly ``epochs`` epochs run and the last
  is kept (``selected_on: []``).
- ``val``: the fold's own validation videos choose the epoch (the usual ABAW protocol); every system scored
  on them is then ``optimistic`` (:mod:`afwpipe.postprocess`).

Fold ``all`` (:data:`afwpipe.folds.ALL`, the whole-dataset member of the fold vote) trains on every labelled
``train`` and ``val`` video of the task and has no validation video: with ``inner`` its inner split chooses
the epoch (too few videos: exactly ``epochs``), with ``val`` there is nothing to choose on and exactly
``epochs`` run (the last kept); ``best`` is None (it has no score of its own).

``selected_on`` (metrics.json and the checkpoint) lists the names that chose the epoch; ``best`` is the
validation score of the kept weights.

Validation score: ``au`` mean F1 over 12 AUs (threshold 0.5), ``expr`` macro F1 over 8 classes, ``va``
mean CCC of valence and arousal, ``mtl`` the mean of the three.

Folds and scenes: which videos train and which validate is :func:`afwpipe.folds.split_videos`.

Writes ``<ws>/models/<task>-<head>-<fold>[-<scene>]/model.pt`` (state dict, config, encoder identities,
standardisation statistics, ``selected_on``) and ``metrics.json``: ``best_epoch`` (kept epoch, 1-based),
``best`` (validation metrics of the kept weights; None for fold ``all``), ``epochs`` (per epoch the loss,
when names choose the epoch their scores, and with ``val_curves`` the validation videos' scores under
``val``), ``epoch_selection``, ``selected_on``, ``selection`` (the
selection names' score at the kept epoch, or None), ``train_videos`` (names whose frames fit the weights), ``val_videos`` and
``features_trained_on`` (per fine-tuned encoder, the videos whose labels fitted it). The same per-epoch loss and
scores go, epoch by epoch, to DVCLive's ``<ws>/curves/<task>-<fold>[-<scene>]/`` (:mod:`afwpipe.curves`), the
curves ``dvc plots show`` draws.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

from . import atomic, layout, store
from .clips import DEFAULT_CACHE_BYTES, DEFAULT_K, ClipDataset, drop_modalities
from .clips.cache import LRUCache
from .clips.gate import SpeechGate, parse_speech_gate
from .curves import EpochCurves, ScopedCurves, curves_dir
from .datasets.base import is_generic
from .heap import limit_heap_retention
from .device import autocast, resolve_device
from .config import FromParams
from .task_settings import DEFAULT_TRAIN_FEATURES, name_list, per_task
from .errors import AfwpipeError, TrainError
from .heads import create_head, is_head, list_heads
from .inference import predict_frames, save_checkpoint, to_device
from .labels import AU_NAMES, EXPR_NAMES, HEAD_TASKS, TRACKS, TRAIN_TASKS, valid_mask
from .losses import au_pos_weights, expr_class_weights, expr_log_prior, mtl_loss
from .metrics import au_f1, expr_f1, va_ccc
from .readers import ZarrFeatures, load_labels, trained_on_of
from .folds import inner_split, parse_fold, split_videos
from .records import IndexFile
from .views import FULL, parse_train_view



#: ``TrainConfig.epoch_selection``: which names choose the epoch (module docstring)
EPOCH_SELECTION = ("inner", "val")


@dataclass
class TrainConfig(FromParams):
    """Everything that decides a training run (``params.yaml`` section ``train``; every default here equals
    params.yaml); saved verbatim in the checkpoint.

    Attributes:
        task: ``au``, ``expr``, ``va`` or ``mtl`` (all three heads' outputs, summed masked losses).
        head: registered head (``tmf``, ``tcn``, ``msf``, ``xattn``, ``mamba``, ``stack``: :mod:`afwpipe.heads`);
            ``head_kwargs`` go to its constructor (sizes, ``fusion``, ``experts``, ``causal``, ``stack``).
        features: encoder names (feature stores), in concatenation order: one list for every task, or a
            per-task mapping ``{au: [...], expr: [...], va: [...], mtl: [...]}``
            (:func:`afwpipe.task_settings.per_task`; a comma-separated string is a list). Resolved to this run's ``task``'s list on construction, so the
            checkpoint records the head's own features.
        fold: ``"official"``, a fold number of the index, or ``"all"`` (every labelled ``train`` and ``val``
            video of the task trains, never a ``test`` one; no validation video, no score of its own:
            :func:`afwpipe.folds.split_videos`).
        scene: restrict train and validation videos to this scene of the index, or None.
        k: clip length (frames), an int or a per-task mapping like ``features`` (resolved to an int);
            stride: training clip stride (default K/2); eval_stride: validation clip stride (default K/2,
            overlapping clips averaged per frame).
        epochs, patience: at most ``epochs`` epochs; stop after ``patience`` epochs without a better
            selection score (0: never stop early). Without selection names exactly ``epochs`` run.
        epoch_selection: ``inner`` (an inner split of the training videos chooses the epoch) or ``val``
            (the fold's validation videos do: the usual ABAW protocol, flagged optimistic downstream);
            module docstring.
        inner_frac: fraction of the training videos (rounded up) that choose the epoch with ``inner``.
        inner_min_videos: with fewer distinct training videos, ``inner`` chooses no epoch: exactly ``epochs``
            run and the last is kept.
        lr, weight_decay, batch_size: AdamW and batch settings.
        seed: seeds torch and the clip shuffling.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``.
        standardize: standardise each encoder's features with mean/std of the training videos.
        cache_gb: byte budget (GiB) of the whole-video feature cache of the run, shared by the training and
            validation videos and counted in the bytes held (float32 for view ``mean``).
        task_weights: ``mtl`` loss weights per task (default 1 each).
        focal_gamma: focal γ of the AU and EXPR losses (Lin et al. 2017; 0: weighted BCE / CE as before,
            the positive / class weights stay as α; :mod:`afwpipe.losses`).
        logit_adjust_tau: τ of the logit-adjusted EXPR loss (Menon et al. 2021): the loss sees
            ``logits + τ·log(prior of the training labels)``, predictions the raw logits, and the class
            weights are off (the adjustment replaces them, as in the paper; 0: off).
        modality_dropout: probability that a training clip loses one encoder's whole features (zeros after
            standardisation; never all encoders of a clip; :func:`afwpipe.clips.drop_modalities`); never at
            validation or prediction (0: off; needs ≥ 2 features).
        speech_gate: ``{encoders: [logmel], threshold: 0.5}`` zeroes those audio encoders' features on
            frames whose ``vad`` probability is below ``threshold`` (training, validation and prediction;
            :mod:`afwpipe.clips.gate`), or None (off).
            With per-task ``features`` the gated encoders must be in some task's list; a task gates
            those it reads (none: the gate is off for that task).
        view: cached view of the features (:mod:`afwpipe.views`): ``full`` (``emb``), a view stored by
            ``afwpipe extract --views`` (``flip``, ``crop0.8``: visual encoders; ``tfcrop0.8``, ``fmask8``...:
            log-Mel audio encoders; the other encoders give ``emb``), or ``mean`` (average of a visual
            encoder's stored views); or a list starting with ``full`` (``[full, tfcrop0.8]``, also ``full,
            tfcrop0.8``): the global view and each local view as separate feature blocks, ``<encoder>@<view>``
            beside ``<encoder>`` for the encoders of that view's modality. Prediction reads the same view(s).
        val_curves: also score the fold's validation videos after every epoch (``val`` of each ``epochs`` entry
            and the ``val/*`` curves of :mod:`afwpipe.curves`); the scores never choose the epoch or stop
            training. Off by default: one more prediction pass per epoch. Nothing to add with
            ``epoch_selection: val`` (the ``select`` scores are the validation videos') or fold ``all``.
    """

    params_section: ClassVar[str] = "train"
    params_ignored: ClassVar[tuple[str, ...]] = ("tasks", "folds", "scenes")  # the DVC matrices' lists
    params_error: ClassVar[type[AfwpipeError]] = TrainError

    task: str = "au"
    head: str = "tmf"
    features: list[str] | dict = field(default_factory=lambda: copy.deepcopy(DEFAULT_TRAIN_FEATURES))
    fold: str | int = "official"
    scene: str | None = None
    k: int | dict = DEFAULT_K
    stride: int | None = None
    eval_stride: int | None = None
    epochs: int = 30
    patience: int = 5
    epoch_selection: str = "inner"
    inner_frac: float = 0.2
    inner_min_videos: int = 3
    lr: float = 1e-4
    weight_decay: float = 1e-2
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    standardize: bool = True
    cache_gb: float = DEFAULT_CACHE_BYTES / (1 << 30)
    head_kwargs: dict = field(default_factory=dict)
    task_weights: dict | None = None
    # loss and augmentation options the ABAW teams sweep over (issue 14); 0 = off
    focal_gamma: float = 0.0
    logit_adjust_tau: float = 0.0
    modality_dropout: float = 0.0
    speech_gate: dict | None = None  # speech gate (afwpipe.clips.gate); parsed in __post_init__
    view: str | list = FULL  # one view, or [full, <local view>...] (parse_train_view)
    val_curves: bool = False  # also score the validation videos every epoch, for the curves only (afwpipe.curves)

    def __post_init__(self):
        if self.task not in TRAIN_TASKS and not str(self.task).isidentifier():
            raise TrainError(f"unknown task {self.task!r}; use one of {', '.join(TRAIN_TASKS)} or a task the "
                             "dataset declares (data_manifest.yaml tasks:)")
        known = TRAIN_TASKS if self.task in TRAIN_TASKS else declared_task_keys(self.task, self.features, self.k)
        every_task = self.features
        self.features = name_list(per_task(self.features, [self.task], "train.features", known,
                                              TrainError)[self.task], f"train.features ({self.task})", TrainError)
        self.k = per_task(self.k, [self.task], "train.k", known, TrainError)[self.task]
        self.fold = parse_fold(self.fold)
        try:  # YAML reads 1e-4 (no dot) as a string
            self.lr, self.weight_decay, self.cache_gb = float(self.lr), float(self.weight_decay), float(self.cache_gb)
            self.k, self.epochs, self.patience = int(self.k), int(self.epochs), int(self.patience)
            self.batch_size, self.seed = int(self.batch_size), int(self.seed)
            self.focal_gamma, self.logit_adjust_tau = float(self.focal_gamma), float(self.logit_adjust_tau)
            self.modality_dropout = float(self.modality_dropout)
            self.inner_frac, self.inner_min_videos = float(self.inner_frac), int(self.inner_min_videos)
        except (TypeError, ValueError) as e:
            raise TrainError(f"train: a numeric setting is not a number: {e}") from None
        self.head_kwargs = dict(self.head_kwargs or {})
        self.stride = int(self.stride) if self.stride else max(1, self.k // 2)
        self.eval_stride = int(self.eval_stride) if self.eval_stride else max(1, self.k // 2)
        if not is_head(self.head):
            raise TrainError(f"unknown head {self.head!r}; registered heads: {', '.join(list_heads())}")
        if not self.features:
            raise TrainError("train: no features given (e.g. features: [mini_xception, logmel])")
        if self.k < 1 or self.batch_size < 1 or self.epochs < 1:
            raise TrainError(f"train: k, batch_size and epochs must be ≥ 1 (k={self.k}, "
                             f"batch_size={self.batch_size}, epochs={self.epochs})")
        if self.epoch_selection not in EPOCH_SELECTION:
            raise TrainError(f"train: epoch_selection must be one of {', '.join(EPOCH_SELECTION)}, got "
                             f"{self.epoch_selection!r}")
        if not 0 < self.inner_frac < 1 or self.inner_min_videos < 2:
            raise TrainError(f"train: inner_frac must lie in (0, 1) and inner_min_videos be ≥ 2 (inner_frac="
                             f"{self.inner_frac}, inner_min_videos={self.inner_min_videos})")
        if self.focal_gamma < 0 or self.logit_adjust_tau < 0 or not 0 <= self.modality_dropout < 1:
            raise TrainError(f"train: focal_gamma and logit_adjust_tau must be ≥ 0 and modality_dropout in [0, 1) "
                             f"(focal_gamma={self.focal_gamma}, logit_adjust_tau={self.logit_adjust_tau}, "
                             f"modality_dropout={self.modality_dropout})")
        if self.modality_dropout and len(self.features) < 2:
            raise TrainError(f"train: modality_dropout={self.modality_dropout} needs at least two features "
                             f"(one clip never loses every encoder); features: {', '.join(self.features)}")
        self.speech_gate = task_speech_gate(self.speech_gate, every_task, self.features)
        self.view = parse_train_view(self.view)
        if not isinstance(self.val_curves, bool):
            raise TrainError(f"train.val_curves must be true or false, got {self.val_curves!r}")

    @property
    def tasks(self) -> tuple[str, ...]:
        """The head's output tasks."""
        return HEAD_TASKS[self.task]

    @property
    def run_name(self) -> str:
        """``<task>-<head>-<fold>[-<scene>]``, the model folder's name."""
        return layout.model_name(self.task, self.head, self.fold, self.scene)


def declared_task_keys(task: str, *settings) -> tuple[str, ...]:
    """The task names a per-task setting may use in a run of a declared task ``task`` (a generic dataset's,
    checked against the index when the run starts): the built-in ones, the run's, and the keys the settings'
    mappings give (other declared tasks of the dataset)."""
    keys = [k for s in settings if isinstance(s, Mapping) for k in s]
    return tuple(dict.fromkeys([*TRAIN_TASKS, task, *map(str, keys)]))


def task_speech_gate(gate, every_task, features: list[str]) -> dict | None:
    """``train.speech_gate`` of a run reading ``features``, given ``train.features`` as written (``every_task``):
    one list, the gate as :func:`afwpipe.clips.gate.parse_speech_gate` parses it; a per-task mapping, the gate
    checked against the union of the tasks' lists and then kept to the encoders this run reads (None when it
    reads none of them).

    Raises:
        TrainError: as :func:`~afwpipe.clips.gate.parse_speech_gate`.
    """
    if not isinstance(every_task, Mapping) or gate is None:
        return parse_speech_gate(gate, features)
    union = [e for t, v in every_task.items() for e in name_list(v, f"train.features ({t})", TrainError)]
    parsed = parse_speech_gate(gate, list(dict.fromkeys(union)))
    mine = [e for e in parsed["encoders"] if e in features]
    return {**parsed, "encoders": mine} if mine else None


def _require_labels(labels: dict, names: list[str], tasks, side: str, where: str) -> None:
    for task in tasks:
        n = sum(int(valid_mask(labels[name][task], task).sum()) for name in names)
        if n == 0:
            raise TrainError(f"{where}: no labelled {task.upper()} frame in the {side} videos "
                             f"({', '.join(names[:5])}{', …' if len(names) > 5 else ''})")


def score(preds: dict[str, dict[str, np.ndarray]], labels: dict, tasks) -> dict:
    """Validation metrics over all frames of all videos of ``preds``.

    Returns:
        ``{"score": float, "au": {"f1", "per_au"}, "expr": {"f1", "per_class"}, "va": {"ccc", "valence",
        "arousal"}}`` for the tasks given; ``score`` is the mean of the task scores.
    """
    names = list(preds)
    out: dict = {}
    task_scores = []
    for task in tasks:
        p = np.concatenate([preds[n][task] for n in names])
        y = np.concatenate([labels[n][task] for n in names])
        if task == "au":
            mean, per = au_f1((p >= 0.5).astype(np.int64), y)
            out["au"] = {"f1": mean, "per_au": dict(zip(AU_NAMES, map(float, per)))}
        elif task == "expr":
            mean, per = expr_f1(p.argmax(axis=1), y)
            out["expr"] = {"f1": mean, "per_class": dict(zip(EXPR_NAMES, map(float, per)))}
        else:
            mean, v, a = va_ccc(p, y)
            out["va"] = {"ccc": mean, "valence": v, "arousal": a}
        task_scores.append(mean)
    out["score"] = float(np.mean(task_scores))
    return out


def train_epoch(head: torch.nn.Module, ds: ClipDataset, opt: torch.optim.Optimizer, rng: np.random.Generator,
                device: torch.device | str = "cpu", batch_size: int = 32, *, task_weights: dict | None = None,
                au_pos_weight: np.ndarray | None = None, expr_class_weight: np.ndarray | None = None,
                focal_gamma: float = 0.0, expr_logit_offset: np.ndarray | None = None,
                modality_dropout: float = 0.0, where: str = "train") -> float:
    """One pass over the shuffled clips of ``ds`` (masked :func:`~afwpipe.losses.mtl_loss` on the head's
    tasks, bf16 autocast on CUDA). Returns the mean batch loss.

    ``modality_dropout`` > 0 drops whole encoders from clips (:func:`afwpipe.clips.drop_modalities`, drawn
    from ``rng``) before the forward pass; ``focal_gamma`` and ``expr_logit_offset`` go to the loss.

    Raises:
        TrainError: the loss is not finite (``where`` says which run and epoch).
    """
    device = torch.device(device)
    head.train()
    total, n_batches = 0.0, 0
    for batch in ds.batches(batch_size, shuffle=True, rng=rng):
        if modality_dropout:
            drop_modalities(batch, modality_dropout, rng)
        b = to_device(batch, device)
        with autocast(device):
            out = head(b["x"], b["mask"], b["present"])
        loss, _ = mtl_loss({t: o.float() for t, o in out.items()}, b["labels"], b["mask"], task_weights=task_weights,
                           au_pos_weight=au_pos_weight, expr_class_weight=expr_class_weight,
                           focal_gamma=focal_gamma, expr_logit_offset=expr_logit_offset)
        if not torch.isfinite(loss):
            lr = opt.param_groups[0]["lr"]
            raise TrainError(f"train {where}: loss became {loss.item()}; lower lr (now {lr}) or check the features")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach())
        n_batches += 1
    return total / max(1, n_batches)


@dataclass
class TrainResult:
    """What a run produced: the model folder, the kept epoch (1-based), the validation metrics of its
    weights (None for fold ``all``, which has no validation video) and the names that chose it
    (``selected_on``, ``[]`` for a fixed epoch count)."""

    config: TrainConfig
    model_dir: Path
    best_epoch: int
    best: dict | None
    epochs_run: int
    n_train: int
    n_val: int
    seconds: float
    selected_on: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One-line summary for the step's output."""
        n_sel = len(self.selected_on)
        chose = ("fixed count, last kept" if not n_sel else
                 f"epoch chosen on its {n_sel} val videos (optimistic)" if self.config.epoch_selection == "val"
                 else f"epoch chosen on {n_sel} inner training videos")
        if self.best is None:
            scored = "no validation video (fold all: scored only inside the ensemble, flagged optimistic)"
        else:
            parts = [f"{t} {self.best[t].get('f1', self.best[t].get('ccc')):.4f}" for t in TRACKS if t in self.best]
            scored = f"val score {self.best['score']:.4f} ({', '.join(parts)})"
        return (f"train {self.config.run_name}: {self.n_train} train / {self.n_val} val videos, "
                f"{self.epochs_run} epochs ({chose}), kept epoch {self.best_epoch}: {scored} "
                f"in {self.seconds:.1f} s -> {self.model_dir}")


def selection_split(index: IndexFile, train_names: list[str], val_names: list[str],
                    cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """``(fit, select)``: the names whose frames fit the weights and those that choose the epoch
    (``cfg.epoch_selection``, module docstring). ``val``: ``(train_names, val_names)``; ``inner``:
    :func:`afwpipe.folds.inner_split` of ``train_names`` seeded with ``cfg.seed`` (``select`` empty with
    fewer than ``cfg.inner_min_videos`` videos)."""
    if cfg.epoch_selection == "val":
        return list(train_names), list(val_names)
    return inner_split(index, train_names, cfg.seed, cfg.inner_frac, cfg.inner_min_videos)


@contextlib.contextmanager
def _deterministic():
    prev, prev_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def open_curves(ws: store.Workspace, cfg: TrainConfig, curves: Path | ScopedCurves | None = None):
    """The run's curves: ``curves`` itself when it is a shared folder's :class:`afwpipe.curves.ScopedCurves`, else
    a DVCLive folder at ``curves`` (default :func:`afwpipe.curves.curves_dir` of the run's task, fold, scene)."""
    if isinstance(curves, ScopedCurves):
        return curves
    return EpochCurves(curves if curves is not None else curves_dir(ws, cfg.task, cfg.fold, cfg.scene))


def fit_epochs(head: torch.nn.Module, cfg: TrainConfig, run_epoch, evaluate, select_ds, val_ds,
               live: EpochCurves | ScopedCurves, progress: bool = True):
    """The epoch loop every training shares (Aff-Wild2's tasks and a dataset's declared ones): train an epoch
    (``run_epoch(epoch) -> mean loss``), score the videos that choose the epoch (``evaluate(dataset) -> {"score":
    ..., ...}`` on ``select_ds``), keep the best weights, stop after ``cfg.patience`` epochs without a better
    score, log every epoch to ``live`` (DVCLive curves; with ``cfg.val_curves`` the validation videos' scores
    too). With no ``select_ds`` (a fixed epoch count) the last epoch is kept. The kept weights are loaded into
    ``head`` and scored on ``val_ds`` unless ``val_ds`` chose them (``epoch_selection: val``).

    Returns:
        ``(history, best, best_epoch, best_state, selection)``: one dict per epoch; the kept weights' validation
        score (None without validation videos); the kept epoch (1-based); the kept ``state_dict`` (CPU
        tensors); the choosing videos' score of the kept epoch (None for a fixed count).
    """
    history, best, best_epoch, best_state, stale = [], None, 0, None, 0
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"train {cfg.run_name}", unit="epoch", disable=not progress)
    for epoch in bar:
        loss = run_epoch(epoch)
        val = evaluate(val_ds) if cfg.val_curves and val_ds is not None and select_ds is not val_ds else None
        if select_ds is None:  # a fixed epoch count: the last epoch is kept
            history.append({"epoch": epoch, "loss": loss, **({"val": val} if val else {})})
            live.log(epoch, loss, val=val)
            bar.set_postfix(loss=f"{loss:.4f}")
            continue
        sel = evaluate(select_ds)
        history.append({"epoch": epoch, "loss": loss, **sel, **({"val": val} if val else {})})
        live.log(epoch, loss, sel, val=val)
        if best is None or sel["score"] > best["score"]:
            best, best_epoch, stale = sel, epoch, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in head.state_dict().items()})
        else:
            stale += 1
        bar.set_postfix(loss=f"{loss:.4f}", select=f"{sel['score']:.4f}", best=f"{best['score']:.4f}")
        if cfg.patience and stale >= cfg.patience:
            break
    bar.close()
    live.close()
    selection = best
    if select_ds is None:
        best_epoch = len(history)
        best_state = copy.deepcopy({k: v.detach().cpu() for k, v in head.state_dict().items()})
    if cfg.epoch_selection != "val" or select_ds is None:  # the kept weights on the validation videos
        head.load_state_dict(best_state)
        best = evaluate(val_ds) if val_ds else None
    return history, best, best_epoch, best_state, selection


def train(ws: store.Workspace, cfg: TrainConfig, progress: bool = True, out_dir: Path | None = None,
          curves: Path | ScopedCurves | None = None) -> TrainResult:
    """Train ``cfg.head`` on the features of workspace ``ws`` and write the checkpoint and metrics.

    Args:
        ws: workspace with ``index.json``, ``labels.zarr`` and ``features/<encoder>.zarr``.
        cfg: the run's settings.
        progress: show a tqdm bar over epochs (loss and validation score).
        out_dir: model folder (default ``ws.models / cfg.run_name``).
        curves: DVCLive folder of the per-epoch curves (default ``<ws>/curves/<task>-<fold>[-<scene>]``;
            :mod:`afwpipe.curves`), or a shared folder's :class:`afwpipe.curves.ScopedCurves`
            (:mod:`afwpipe.train_all`).

    Raises:
        TrainError: missing store, features of different lengths, NaN/Inf in features, unknown fold or
            scene, a fold/task with no labelled frame (in the training, validation or epoch-choosing
            names), or a non-finite loss.
    """
    limit_heap_retention()  # freed video arrays go back to the OS (afwpipe.heap)
    t0 = time.perf_counter()
    index = ws.read_index()
    if is_generic(index):  # a dataset's declared tasks (video_csv, frame_csv)
        from .task_train import train_declared  # it builds on this module
        return train_declared(ws, cfg, index, progress, out_dir, curves)
    if cfg.task not in TRAIN_TASKS:
        raise TrainError(f"unknown task {cfg.task!r} for dataset {index.dataset!r}; use one of {', '.join(TRAIN_TASKS)}")
    tasks = cfg.tasks
    where = f"fold {cfg.fold}" + (f", scene {cfg.scene!r}" if cfg.scene else "")
    all_train, val_names = split_videos(index, tasks, cfg.fold, cfg.scene)
    train_names, select_names = selection_split(index, all_train, val_names, cfg)
    labels = load_labels(ws, all_train + val_names)
    _require_labels(labels, train_names, tasks, "training", where)
    if val_names:  # fold all has none: it trains on every labelled video (afwpipe.folds.split_videos)
        _require_labels(labels, val_names, tasks, "validation", where)
    if select_names and cfg.epoch_selection == "inner":
        _require_labels(labels, select_names, tasks, "epoch-choosing (an inner split of the training videos; raise "
                        "train.inner_frac)", where)

    features = ZarrFeatures(ws, cfg.features, view=cfg.view)
    cache = int(cfg.cache_gb * (1 << 30))
    identities = {e: features.identity(e, all_train + val_names) for e in features.encoders}  # + <enc>@<view>
    gate = SpeechGate.from_config(ws, cfg.speech_gate, identities)
    cache = LRUCache(cache)  # one budget for the run: training, validation and selection videos share it
    train_ds = ClipDataset(features, labels, train_names, cfg.k, cfg.stride, gate=gate, cache=cache)
    val_ds = ClipDataset(features, labels, val_names, cfg.k, cfg.eval_stride, training=False, gate=gate,
                         cache=cache) if val_names else None
    select_ds = None
    if select_names:
        select_ds = val_ds if cfg.epoch_selection == "val" else ClipDataset(
            features, labels, select_names, cfg.k, cfg.eval_stride, training=False, gate=gate, cache=cache)
    stats = train_ds.feature_stats() if cfg.standardize else None
    for ds in (train_ds, val_ds, select_ds):
        if ds is not None:
            ds.set_stats(stats)

    train_labels = {t: np.concatenate([labels[n][t] for n in train_names]) for t in tasks}
    pos_w = au_pos_weights(train_labels["au"]) if "au" in tasks else None
    # the logit-adjusted loss replaces the class weights (Menon et al. 2021, eq. 10: unweighted softmax CE)
    offset = (cfg.logit_adjust_tau * expr_log_prior(train_labels["expr"])
              if "expr" in tasks and cfg.logit_adjust_tau else None)
    cls_w = expr_class_weights(train_labels["expr"]) if "expr" in tasks and offset is None else None

    device = torch.device(resolve_device(cfg.device))
    with _deterministic():
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        head = create_head(cfg.head, train_ds.dims, tasks, **cfg.head_kwargs).to(device)
        opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        live = open_curves(ws, cfg, curves)

        def run_epoch(epoch: int) -> float:
            return train_epoch(head, train_ds, opt, rng, device, cfg.batch_size, task_weights=cfg.task_weights,
                               au_pos_weight=pos_w, expr_class_weight=cls_w, focal_gamma=cfg.focal_gamma,
                               expr_logit_offset=offset, modality_dropout=cfg.modality_dropout,
                               where=f"{cfg.run_name}, epoch {epoch}")

        fit = fit_epochs(head, cfg, run_epoch, lambda ds: score(predict_frames(head, ds, device, cfg.batch_size),
                                                                labels, tasks),
                         select_ds, val_ds, live, progress)
        history, best, best_epoch, best_state, selection = fit

    out_dir = Path(out_dir) if out_dir is not None else layout.model_dir(ws, cfg.run_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(layout.checkpoint(out_dir), best_state, config=asdict(cfg), in_dims=dict(train_ds.dims), tasks=tasks,
                    encoders=[{"name": e, **identities[e]} for e in features.encoders], stats=stats,
                    au_pos_weight=pos_w, expr_class_weight=cls_w, best_epoch=best_epoch,
                    best_score=None if best is None else best["score"],
                    train_videos=train_names, val_videos=val_names, selected_on=select_names,
                    epoch_selection=cfg.epoch_selection)
    metrics = {"run": cfg.run_name, "task": cfg.task, "head": cfg.head, "fold": cfg.fold, "scene": cfg.scene,
               "best_epoch": best_epoch, "best": best, "epochs": history,
               "epoch_selection": cfg.epoch_selection, "selected_on": select_names, "selection": selection,
               "train_videos": train_names, "val_videos": val_names,
               "features_trained_on": features_trained_on(identities)}
    atomic.write_text(out_dir / layout.RUN_RECORD, json.dumps(_finite(metrics), indent=1) + "\n")
    return TrainResult(cfg, out_dir, best_epoch, best, len(history), len(train_names), len(val_names),
                       time.perf_counter() - t0, select_names)


def features_trained_on(identities: dict) -> dict[str, list[str]]:
    """encoder -> the videos whose labels fine-tuned it (``afwpipe finetune``'s ``trained_on``, recorded in the
    feature store's ``encoder_config``), for the fine-tuned encoders among ``identities`` (encoder -> store
    identity); postprocess flags a system scored on one of these videos optimistic."""
    out = {}
    for enc, ident in identities.items():
        names = trained_on_of(ident.get("encoder_config"))
        if names:
            out[enc] = names
    return out


def _finite(obj):
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def main(ws: store.Workspace, cfg: TrainConfig, *, progress: bool = True) -> TrainResult:
    """The train step as ``afwpipe train`` and ``python -m stages.train`` run it: :func:`train`, then its
    one-line summary printed."""
    result = train(ws, cfg, progress=progress)
    print(result.line())
    return result


__all__ = ["EPOCH_SELECTION", "TrainConfig", "TrainResult", "main", "score", "selection_split", "train", "train_epoch"]
