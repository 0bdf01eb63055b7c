"""``predict`` for a dataset's declared tasks (:mod:`afwpipe.datasets`): :func:`afwpipe.predict.run_predict` hands
an index with declared tasks here.

Heads: the folders ``models/<task>-<head>-<fold>[-<scene>]`` whose task is a declared task or ``mtl`` (all of them),
of the head type ``predict.head`` and folds ``predict.folds``; ``predict.tasks`` (params ``train.tasks``) keeps
the declared tasks it names, and when it names none (e.g. the sample's ``[au, expr, va, mtl]``) every declared
task is predicted. Videos: each head's evaluation videos, as for Aff-Wild2 (its validation videos and every
``val`` / ``test`` name; :func:`afwpipe.predict.evaluation_videos`).

Outputs (:mod:`afwpipe.task_inference`): a frame task ``[T, C]`` per-frame probabilities / values (overlapping
clips averaged per frame), a video task ``[1, C]``: the mean of the video's clip logits, then softmax (class),
sigmoid (multilabel) or the values (regression). Written as ``predictions/<model>.zarr/<video>/<task>`` float32
beside ``present`` ``[T]``; ``predictions/index.json`` as for Aff-Wild2. Test-time augmentation is not applied
to declared tasks (``predict.tta`` is refused).
"""

from __future__ import annotations

import json
import logging
import shutil
import time

from . import __version__, atomic, layout, store
from .clips import ClipDataset
from .clips.gate import SpeechGate
from .datasets.base import ALL_TASKS, index_tasks
from .device import resolve_device
from .errors import PredictError
from .layout import ModelRef, parse_fold
from .inference import checkpoint_stats, load_model
from .predict import PRED_DTYPE, PredictConfig, PredictSummary, evaluation_videos, face_present
from .readers import ZarrFeatures, load_labels
from .records import IndexFile
from .task_inference import predict_declared
from .views import FULL

log = logging.getLogger(__name__)


def declared_models(ws: store.Workspace, index: IndexFile, cfg: PredictConfig) -> list[ModelRef]:
    """The model folders of declared tasks that ``cfg`` selects (module docstring), sorted by name."""
    asked = set(map(str, cfg.tasks or []))
    named = set(index_tasks(index)) & asked
    wanted = named | ({ALL_TASKS} & asked) if named else set(index_tasks(index)) | {ALL_TASKS}
    folds = None if cfg.folds is None else {parse_fold(f) for f in cfg.folds}
    out = []
    for d in layout.model_folders(ws):
        ref = layout.parse_model_name(d.name, d, tasks=wanted)
        if ref is None or not ref.checkpoint.is_file():
            continue
        if (cfg.head is None or ref.head == cfg.head) and (folds is None or ref.fold in folds):
            out.append(ref)
    return out


def run_predict_declared(ws: store.Workspace, cfg: PredictConfig, index: IndexFile, progress: bool = True) -> PredictSummary:
    """Predict every selected head of a declared task on its evaluation videos; write ``predictions/``.

    Raises:
        PredictError: no head of a declared task matches (names what exists), or ``predict.tta`` is set.
    """
    t0 = time.perf_counter()
    if cfg.tta:
        raise PredictError("predict.tta: test-time augmentation is not applied to declared tasks; set predict.tta: false")
    refs = declared_models(ws, index, cfg)
    if not refs:
        have = ", ".join(d.name for d in layout.model_folders(ws))
        raise PredictError(f"{ws.models}: no trained head of the tasks {', '.join(index_tasks(index))} (head "
                           f"{cfg.head!r}, folds {cfg.folds}); heads there: {have or '(none)'}")
    declared = index_tasks(index)
    device = resolve_device(cfg.device)
    if ws.predictions_dir.exists():
        shutil.rmtree(ws.predictions_dir)
    ws.predictions_dir.mkdir(parents=True)
    summary = PredictSummary()
    for ref in refs:
        model, ckpt = load_model(ref.checkpoint, device)
        tasks = {t: declared[t] for t in ckpt.tasks}
        conf = ckpt.config
        features = ZarrFeatures(ws, conf["features"], view=conf.get("view", FULL))
        val = list(ckpt.val_videos)
        names = [n for n in evaluation_videos(index, val, ref.scene)
                 if all(store.is_complete(features.paths[e], n) for e in features.encoders)]
        summary.skipped += [n for n in evaluation_videos(index, val, ref.scene) if n not in names]
        if names:
            ds = ClipDataset(features, load_labels(ws, names, tuple(tasks)), names, int(conf["k"]),
                             int(conf["eval_stride"]), training=False, stats=checkpoint_stats(ckpt),
                             cache_bytes=cfg.cache_bytes, gate=SpeechGate.from_config(ws, conf.get("speech_gate")),
                             tasks=tasks)
            outputs = predict_declared(model, ds, tasks, device, cfg.batch_size)
            for name, n in zip(ds.names, ds.n_frames):
                g = store.begin_video(ws.predictions(ref.name), name, {"model": ref.name, "own_val": name in val})
                for task, arr in outputs[name].items():
                    store.write_time_array(g, task, arr.astype(PRED_DTYPE))
                store.write_time_array(g, "present", face_present(ws, name, n, features))
                store.mark_complete(g)
                summary.frames += n
        summary.models.append({"name": ref.name, "task": ref.task, "head": ref.head, "fold": ref.fold,
                               "scene": ref.scene, "tasks": list(tasks), "levels": {t: s.level for t, s in tasks.items()},
                               "val_videos": [v for v in val if v in names], "videos": names,
                               "view": conf.get("view", FULL), "tta": None})
    atomic.write_text(ws.predictions_index, json.dumps({"afwpipe_version": __version__, "models": summary.models},
                                                       indent=1) + "\n")
    summary.seconds = time.perf_counter() - t0
    return summary
