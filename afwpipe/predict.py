"""Per-frame predictions of every trained head on its evaluation videos (cached features in, raw outputs out).

Which heads: the model folders ``models/<task>-<head>-<fold>[-<scene>]/model.pt`` of the chosen head type,
tasks and folds (params ``train.head``, ``train.tasks``, ``train.folds``), scene heads included (those of
``train.scenes`` in the DVC stage, :attr:`PredictConfig.scenes`).

Which videos, per head (its *evaluation videos*):

- its own validation videos (``val_videos`` of the checkpoint: the fold's held-out videos),
- every name that is ``val`` (for the fold ensemble) or ``test`` (for submissions) in any track's split
  (:func:`afwpipe.folds.split_of`), whatever task the head was trained for: a name can be VA-train and EXPR-test,
  and each side ``X_left`` / ``X_right`` of a two-person test video is its own name;

a scene head keeps only the videos of its scene (the index's ``scenes``). A head of fold ``all`` (trained on every
labelled video, no validation video of its own) predicts the ``val`` and ``test`` names: what the fold ensemble
and a submission need. Videos without complete features (e.g. a test video whose detection failed) are skipped
with a warning.

Each head reads its own encoders and clip length, those its checkpoint records (``config["features"]``,
``config["k"]``: ``train.features`` / ``train.k`` resolved for its task at training), never params'.

How: clips of the checkpoint's K frames every ``eval_stride`` frames (its training config), standardised with
the checkpoint's training statistics, outputs averaged per frame over the overlapping clips
(:func:`afwpipe.inference.predict_frames`); sigmoid for AU, softmax for EXPR. Features are read in the view the
head was trained on (``train.view``, :mod:`afwpipe.views`). With ``predict.tta`` (test-time augmentation) each head
predicts once per view that every visual encoder of the head stored (``afwpipe extract --views``) and the
outputs are averaged per frame (probabilities for AU and EXPR, values for VA).

Output (:attr:`Workspace.predictions_dir`)::

    predictions/index.json                         one record per head: name, task, head, fold, scene,
                                                   val_videos, videos, view (trained), tta (views
                                                   averaged, or null)
    predictions/<model>.zarr/<video>/au       [T, 12] float32 AU probabilities   (heads with an AU output)
                                     expr     [T, 8]  float32 EXPR probabilities (EXPR output)
                                     va       [T, 2]  float32 valence, arousal   (VA output)
                                     present  [T]     bool, a face was found (faces.zarr; else the first
                                                      visual feature store's mask; else all True)

Every store opens with ``zarr.open_group`` without afwpipe; a video group is complete when its ``complete``
attribute is True. A run rewrites ``predictions/`` from scratch (heads are small; inference is seconds).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

from . import __version__, atomic, layout, store
from .clips import DEFAULT_CACHE_BYTES, ClipDataset
from .clips.gate import SpeechGate
from .heap import limit_heap_retention
from .device import resolve_device
from .config import FromParams
from .datasets.base import is_generic
from .errors import AfwpipeError, PredictError
from .inference import checkpoint_stats, iter_frames, load_model
from .labels import TASKS
from .folds import parse_fold, split_of
from .readers import ZarrFeatures
from .records import Checkpoint, IndexFile
from .views import FULL

log = logging.getLogger(__name__)

#: dtype of the stored outputs (probabilities and VA values)
PRED_DTYPE = np.float32


def find_models(ws: store.Workspace, head: str | None = None, tasks=None, folds=None,
                scenes=None) -> list[layout.ModelRef]:
    """Trained heads under ``ws.models`` (folders holding ``model.pt``, in a group folder or not:
    :func:`afwpipe.layout.model_folders`), optionally only of head type ``head``, tasks ``tasks`` (a list holding
    ``"auto"``: every task), folds ``folds`` (``"official"`` or numbers) and, among scene heads, scenes ``scenes``
    (params ``train.scenes``; None: every scene head). Sorted by name."""
    folds = None if folds is None else {parse_fold(f) for f in folds}
    tasks = None if tasks is None or layout.AUTO in tasks else tasks  # auto: every task (afwpipe.train_all)
    out = []
    for d in layout.model_folders(ws):
        ref = layout.parse_model_name(d.name, d)
        if ref is None or not ref.checkpoint.is_file():
            continue
        if (head is None or ref.head == head) and (tasks is None or ref.task in tasks) and \
                (folds is None or ref.fold in folds) and (scenes is None or ref.scene is None or ref.scene in scenes):
            out.append(ref)
    return out


def evaluation_videos(index: IndexFile, val_videos, scene: str | None = None) -> list[str]:
    """A head's evaluation videos: its own ``val_videos`` plus every name that is ``val`` or ``test`` in any
    track (:func:`afwpipe.folds.split_of`; e.g. a VA-train name in the EXPR test list, or ``X_left`` of a two-person
    test video), only the members of ``scene`` for a scene head, in index order."""
    own = set(val_videos)
    members = None
    if scene is not None:
        members = set(index.scenes.get(scene, []))
    out = []
    for r in index.records:
        if r.name in own or any(split_of(r, t) in ("val", "test") for t in TASKS):
            if members is None or r.name in members or r.video in members:
                out.append(r.name)
    return out


def _labels_or_invalid(ws: store.Workspace, features: ZarrFeatures, names) -> dict:
    """Labels of ``names`` from labels.zarr; a video without labels (test) gets all-invalid arrays."""
    root = store.open_store(ws.labels, "r") if ws.labels.is_dir() else None
    out = {}
    for name in names:
        if root is not None and name in root:
            out[name] = {t: root[name][t][...] for t in TASKS}
            continue
        t = features.shape(features.encoders[0], name)[0]
        out[name] = {"au": np.full((t, 12), -1, np.int8), "expr": np.full(t, -1, np.int8),
                     "va": np.full((t, 2), -5.0, np.float32)}
    return out


def face_present(ws: store.Workspace, name: str, n_frames: int, features: ZarrFeatures | None = None) -> np.ndarray:
    """``[T]`` bool: a face was found in the frame. From ``faces.zarr/<name>/present``; without it, the mask
    of the first visual feature store; else all True (logged)."""
    if store.is_complete(ws.faces, name):
        present = np.asarray(store.read_array(ws.faces, name, "present"), dtype=bool)
        if len(present) == n_frames:
            return present
        log.warning("%s: faces.zarr present has %d frames, predictions %d; no face mask used",
                    name, len(present), n_frames)
        return np.ones(n_frames, bool)
    if features is not None:
        for enc in features.encoders:
            attrs = features._groups[enc][name].attrs
            if attrs.get("modality", "visual") == "visual":
                present = features.load(enc, name)[1]
                if len(present) == n_frames:
                    return present
    return np.ones(n_frames, bool)


def _check_encoders(ckpt: Checkpoint, features: ZarrFeatures, names, model: str) -> None:
    for enc in ckpt.encoders:
        have = features.identity(enc["name"], names)
        for key in ("weights", "dim"):
            if enc.get(key) is not None and have.get(key) is not None and have.get(key) != enc.get(key):
                raise PredictError(f"{model}: feature store {features.paths[enc['name']]} has {key} "
                                   f"{have.get(key)!r} but the head was trained on {enc.get(key)!r}; retrain it "
                                   f"(`dvc repro train`) or re-extract with the old encoder settings")


@dataclass
class PredictConfig(FromParams):
    """Which heads predict and how (``params.yaml`` section ``predict``, with ``head``, ``tasks`` and ``folds``
    from section ``train``; every default here equals params.yaml).

    Attributes:
        head: head type of the model folders to use (params ``train.head``); None: every head type.
        tasks: trained tasks to use (params ``train.tasks``); None: all.
        folds: folds to use (params ``train.folds``); None: all.
        scenes: scene heads to use (params ``train.scenes``); None: every scene head found, ``[]``: none.
        batch_size: clips per forward pass.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (bf16 autocast on CUDA).
        tta: average each head's outputs over the cached views of its visual encoders (module docstring).
        cache_gb: byte budget (GiB) of the whole-video feature cache of the run (shared by the TTA views),
            as ``train.cache_gb``; videos are written and dropped one at a time, so memory stays within it
            plus one batch and the videos in flight.
    """

    params_section: ClassVar[str] = "predict"
    params_error: ClassVar[type[AfwpipeError]] = PredictError

    head: str | None = None
    tasks: list | None = None
    folds: list | None = None
    scenes: list | None = None
    batch_size: int = 32
    device: str = "auto"
    tta: bool = False
    cache_gb: float = DEFAULT_CACHE_BYTES / (1 << 30)

    def __post_init__(self):
        self.cache_gb = float(self.cache_gb)
        if not self.cache_gb > 0:
            raise PredictError(f"predict.cache_gb must be > 0 GiB, got {self.cache_gb}")

    @property
    def cache_bytes(self) -> int:
        return int(self.cache_gb * (1 << 30))


@dataclass
class PredictSummary:
    models: list[dict] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)

    def line(self) -> str:
        n_videos = len({v for m in self.models for v in m["videos"]})
        return (f"predict: {len(self.models)} heads on {n_videos} videos ({self.frames} head-frames) "
                f"in {self.seconds:.1f} s" + (f"; skipped {len(self.skipped)} video(s) without features"
                                              if self.skipped else ""))


def predict_model(ws: store.Workspace, model: torch.nn.Module, ckpt: Checkpoint, names, device: str = "cpu",
                  batch_size: int = 32, who: str = "head", view: str | None = None,
                  cache_bytes: int | None = DEFAULT_CACHE_BYTES) -> dict[str, dict[str, np.ndarray]]:
    """Outputs of a loaded head (:func:`afwpipe.inference.load_model`) on videos ``names``: name -> task ->
    ``[T, C]`` float64 (see the module docstring); clips of the checkpoint's K and ``eval_stride``, features of
    ``view`` (None: the view the head was trained on, ``full`` for older checkpoints), read through a cache of
    ``cache_bytes``. Holds every video's outputs; :func:`head_outputs` streams them.

    Raises:
        PredictError: the head's feature stores changed since training (weights or dim); ``who`` names it.
        TrainError: a feature store is missing, or a video's features are incomplete.
    """
    return dict(_iter_view(ws, model, ckpt, names, device, batch_size, who, view, cache_bytes))


def _iter_view(ws: store.Workspace, model: torch.nn.Module, ckpt: Checkpoint, names, device: str, batch_size: int,
               who: str, view: str | None, cache_bytes: int | None):
    cfg = ckpt.config
    features = ZarrFeatures(ws, cfg["features"], view=view or cfg.get("view", FULL))
    _check_encoders(ckpt, features, names, who)
    labels = _labels_or_invalid(ws, features, names)
    ds = ClipDataset(features, labels, names, int(cfg["k"]), int(cfg["eval_stride"]), training=False,
                     stats=checkpoint_stats(ckpt), cache_bytes=cache_bytes,
                     gate=SpeechGate.from_config(ws, cfg.get("speech_gate")))  # as in training
    yield from iter_frames(model, ds, device, batch_size)


def head_outputs(ws: store.Workspace, model: torch.nn.Module, ckpt: Checkpoint, names, device: str = "cpu",
                 batch_size: int = 32, who: str = "head", views: list[str] | None = None,
                 cache_bytes: int | None = DEFAULT_CACHE_BYTES):
    """A head's raw outputs on videos ``names``, one video at a time, as ``predict`` writes them and
    ``afwpipe analyze`` post-processes them: yields ``(name, task -> [T, C] float64)`` in the order of
    ``names``.

    ``views`` None: the view the head was trained on; a list (test-time augmentation, :func:`tta_views`):
    the mean over those views of the per-view outputs (probabilities for AU / EXPR, values for VA). The
    speech gate of the checkpoint (``config["speech_gate"]``) is applied as in training. ``cache_bytes`` is
    the whole run's feature budget (None: unbounded), shared by the views (each reads through
    ``cache_bytes / len(views)``), so memory holds that plus the outputs of the videos in flight.

    Raises:
        PredictError, TrainError: as :func:`predict_model`.
    """
    if not views:
        yield from _iter_view(ws, model, ckpt, names, device, batch_size, who, None, cache_bytes)
        return
    share = None if cache_bytes is None else cache_bytes // len(views)
    streams = [_iter_view(ws, model, ckpt, names, device, batch_size, who, v, share) for v in views]
    for items in zip(*streams):
        name = items[0][0]
        yield name, {t: np.mean([o[t] for _, o in items], axis=0) for t in items[0][1]}


def tta_views(features: ZarrFeatures, names, who: str = "head") -> list[str]:
    """The views stored by every visual encoder of ``features`` for videos ``names`` (in the first encoder's
    order), for test-time augmentation.

    Raises:
        PredictError: the head has no visual encoder, or its visual encoders share fewer than two views (the
            message says to run ``afwpipe extract --views``).
    """
    identities = {e: features.identity(e, names) for e in features.encoders}
    per_encoder = {e: list(i.get("views", [FULL])) for e, i in identities.items()
                   if i.get("modality", "visual") == "visual"}
    views = [v for v in next(iter(per_encoder.values()), []) if all(v in vs for vs in per_encoder.values())]
    if len(views) < 2:
        have = "; ".join(f"{e}: {', '.join(vs)}" for e, vs in per_encoder.items()) or "no visual encoder"
        raise PredictError(f"{who}: predict.tta needs two or more views stored by every visual encoder ({have}); "
                           f"run `afwpipe extract --encoder NAME --views full,flip,...` or set predict.tta: false")
    return views


def run_predict(ws: store.Workspace, cfg: PredictConfig, progress: bool = True) -> PredictSummary:
    """Predict every selected head on its evaluation videos and write ``predictions/`` (module docstring).

    Raises:
        PredictError: no trained head matches (names what exists), or :func:`predict_model`'s errors.
    """
    index = ws.read_index()
    if is_generic(index):  # a dataset's declared tasks (video_csv, frame_csv)
        from .task_predict import run_predict_declared  # it builds on this module
        return run_predict_declared(ws, cfg, index, progress)
    limit_heap_retention()  # freed video arrays go back to the OS (afwpipe.heap)
    t0 = time.perf_counter()
    refs = find_models(ws, cfg.head, cfg.tasks, cfg.folds, cfg.scenes)
    if not refs:
        have = ", ".join(r.name for r in find_models(ws)) or "(none)"
        raise PredictError(f"{ws.models}: no trained head of type {cfg.head!r}, tasks {cfg.tasks}, folds {cfg.folds}; "
                           f"heads there: {have} (run `afwpipe train` or `dvc repro train`)")
    device = resolve_device(cfg.device)
    if ws.predictions_dir.exists():
        shutil.rmtree(ws.predictions_dir)
    ws.predictions_dir.mkdir(parents=True)
    summary = PredictSummary()
    for ref in tqdm(refs, desc="predict", unit="head", disable=not progress):
        model, ckpt = load_model(ref.checkpoint, device)
        features = ZarrFeatures(ws, ckpt.config["features"])
        val = list(ckpt.val_videos)
        names = []
        for name in evaluation_videos(index, val, ref.scene):
            if all(store.is_complete(features.paths[e], name) for e in features.encoders):
                names.append(name)
            else:
                log.warning("predict %s: video %s has no complete features; skipped", ref.name, name)
                summary.skipped.append(name)
        if cfg.tta and isinstance(ckpt.config.get("view"), list):
            raise PredictError(f"{ref.name}: predict.tta averages a head's outputs over single views, but this head "
                               f"reads the views {ckpt.config['view']} as separate inputs; set predict.tta: false")
        views = tta_views(features, names, ref.name) if cfg.tta and names else None
        path = ws.predictions(ref.name)
        for name, out in head_outputs(ws, model, ckpt, names, device, cfg.batch_size, ref.name, views,
                                      cfg.cache_bytes):  # one video at a time: written, then dropped
            n = len(next(iter(out.values())))
            g = store.begin_video(path, name, {"model": ref.name, "own_val": name in val})
            for task, arr in out.items():
                store.write_time_array(g, task, arr.astype(PRED_DTYPE))
            store.write_time_array(g, "present", face_present(ws, name, n, features))
            store.mark_complete(g)
            summary.frames += n
        summary.models.append({"name": ref.name, "task": ref.task, "head": ref.head, "fold": ref.fold,
                               "scene": ref.scene, "tasks": list(ckpt.tasks),
                               "val_videos": [v for v in val if v in names], "videos": names,
                               "view": ckpt.config.get("view", FULL), "tta": views})
    atomic.write_text(ws.predictions_index, json.dumps({"afwpipe_version": __version__, "models": summary.models},
                                               indent=1) + "\n")
    summary.seconds = time.perf_counter() - t0
    return summary


def main(ws: store.Workspace, cfg: PredictConfig, *, progress: bool = True) -> PredictSummary:
    """The predict step as ``afwpipe predict`` and ``python -m stages.predict`` run it: :func:`run_predict`,
    then its summary line printed."""
    summary = run_predict(ws, cfg, progress=progress)
    print(summary.line())
    print(f"predictions in {ws.predictions_dir}")
    return summary


__all__ = ["PredictConfig", "PredictSummary", "evaluation_videos", "face_present", "find_models",
           "head_outputs", "main", "predict_model", "run_predict"]
