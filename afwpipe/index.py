"""Build a dataset's index: probe every video, align annotations to decoded frames, assign folds.

Writes ``index.json`` (one record per annotation name / unlabelled video, plus failures and orphan
annotations) and ``labels.zarr`` (see ``afwpipe.store``). One bad video or annotation file is
reported by name and never stops the others.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import store
from .datasets.affwild2 import align_length, find_videos, read_annotation, scan_annotations, valid_mask
from .errors import AfwpipeError, DatasetError
from .labels import TASKS
from .manifest import DatasetSpec
from .video import VideoInfo, probe_video

log = logging.getLogger(__name__)

UNLABELLED = "test"  # split of videos without any annotation (indexed, not trained on)


def assign_folds(videos: list[str], k: int, seed: int) -> dict[str, int]:
    """Seeded video-level folds: shuffle the sorted video stems with ``numpy.random.default_rng(seed)``
    and deal them round-robin into ``k`` folds. Both sides of a two-person video share a fold.

    Returns:
        video stem -> fold in ``0..k-1`` (empty when ``k`` < 1).
    """
    if k < 1:
        return {}
    order = np.random.default_rng(seed).permutation(len(videos))
    names = sorted(videos)
    return {names[j]: int(i % k) for i, j in enumerate(order)}


def _empty_labels(task: str, n: int) -> np.ndarray:
    _, names, invalid = TASKS[task]
    shape = (n,) if task == "expr" else (n, len(names))
    return np.full(shape, invalid, dtype=np.int8 if task != "va" else np.float32)


def _rel(p: Path) -> str:
    try:
        return os.path.relpath(p)
    except ValueError:
        return str(p)


def build_index(spec: DatasetSpec, ws: store.Workspace, progress: bool = True) -> dict:
    """Index dataset ``spec`` into workspace ``ws`` and return the index dict (also written to disk).

    Raises:
        DatasetError: the dataset root, its annotation folder or every video folder is missing.
    """
    if not spec.root.is_dir():
        raise DatasetError(f"{spec.root}: dataset root of {spec.name!r} does not exist")
    entries = scan_annotations(spec.annotations) if spec.annotations.is_dir() else {}
    if not spec.annotations.is_dir():
        log.warning("%s: no annotation folder; every video is indexed unlabelled", spec.annotations)
    videos = find_videos(spec.video_dirs)

    orphans = []
    for name, e in list(entries.items()):
        if e.video not in videos:
            files = ", ".join(_rel(f) for f in e.files.values())
            log.warning("annotation %s (%s) has no video %s.* in %s", name, files, e.video,
                        ", ".join(_rel(d) for d in spec.video_dirs))
            orphans.append({"name": name, "files": [_rel(f) for f in e.files.values()],
                            "error": f"no video named {e.video}"})
            del entries[name]

    labelled_videos = sorted({e.video for e in entries.values()})
    folds = assign_folds(labelled_videos, spec.folds_k, spec.folds_seed)
    wanted = {e.video for e in entries.values()} | set(videos)
    unlabelled = sorted(set(videos) - {e.video for e in entries.values()})

    infos: dict[str, VideoInfo] = {}
    failures = []
    for v in tqdm(sorted(wanted), desc="probe", unit="video", disable=not progress):
        try:
            infos[v] = probe_video(videos[v])
        except AfwpipeError as err:
            log.error("%s", err)
            failures.append({"video": v, "path": _rel(videos[v]), "error": str(err)})

    records = []
    ws.root.mkdir(parents=True, exist_ok=True)
    lab_root = store.open_store(ws.labels, "w")
    items = [(n, e.video, e.side, e.split, e.files) for n, e in entries.items()]
    items += [(v, v, None, UNLABELLED, {}) for v in unlabelled]
    for name, video, side, split, files in sorted(items):
        if video not in infos:
            continue
        info = infos[video]
        g = lab_root.create_group(name)
        labelled, ann_frames = {}, {}
        for task in TASKS:
            if task in files:
                try:
                    lab = read_annotation(files[task], task)
                except AfwpipeError as err:
                    log.error("%s", err)
                    failures.append({"video": name, "path": _rel(files[task]), "error": str(err)})
                    lab = _empty_labels(task, 0)
                ann_frames[task] = int(lab.shape[0])
                lab = align_length(lab, info.n_frames, task, source=_rel(files[task]))
            else:
                lab = _empty_labels(task, info.n_frames)
            store.write_time_array(g, task, lab)
            labelled[task] = int(valid_mask(lab, task).sum())
        # per track: the official split where the track annotates the name; unlabelled videos are test
        splits = {t: (split if t in files else None) for t in TASKS} if files else {t: UNLABELLED for t in TASKS}
        rec = {
            "name": name, "video": video, "path": _rel(Path(info.path)), "side": side, "split": split,
            "splits": splits,
            "fold": folds.get(video, -1), **{k: v for k, v in info.to_dict().items() if k != "path"},
            "annotation_frames": ann_frames, "labelled": labelled,
            "files": {t: _rel(f) for t, f in files.items()},
        }
        g.attrs.update({"n_frames": info.n_frames, "split": split, "fold": rec["fold"], "files": rec["files"]})
        records.append(rec)

    index = {
        "dataset": spec.name,
        "root": _rel(spec.root),
        "folds": {"k": spec.folds_k, "seed": spec.folds_seed},
        "scenes": spec.scenes,
        "cropped_aligned": _rel(spec.cropped_aligned) if spec.cropped_aligned else None,
        "videos": records,
        "failures": failures,
        "orphan_annotations": orphans,
    }
    ws.index.write_text(json.dumps(index, indent=1) + "\n")
    return index


def format_table(index: dict) -> str:
    """A fixed-width table: video, frames, fps, audio, split, fold, labelled frames per task."""
    head = f"{'video':<28} {'frames':>6} {'fps':>7} {'audio':>5} {'split':<5} {'fold':>4}  {'AU':>5} {'EXPR':>5} {'VA':>5}"
    lines = [head, "-" * len(head)]
    for r in index["videos"]:
        lab = r["labelled"]
        fps = f"{r['fps']:.3f}" + ("*" if r["vfr"] else " ")
        lines.append(f"{r['name'][:28]:<28} {r['n_frames']:>6} {fps:>7} {'yes' if r['has_audio'] else 'no':>5} "
                     f"{r['split']:<5} {r['fold']:>4}  {lab['au']:>5} {lab['expr']:>5} {lab['va']:>5}")
    lines.append(f"{len(index['videos'])} videos indexed"
                 + (" (* variable frame rate)" if any(r["vfr"] for r in index["videos"]) else "")
                 + (f", {len(index['failures'])} failures" if index["failures"] else "")
                 + (f", {len(index['orphan_annotations'])} annotations without video" if index["orphan_annotations"] else ""))
    for f in index["failures"]:
        lines.append(f"FAILED {f['path']}: {f['error']}")
    for o in index["orphan_annotations"]:
        lines.append(f"NO VIDEO for {o['name']}: {', '.join(o['files'])}")
    return "\n".join(lines)
