"""Build a dataset's index: probe every video, align annotations to decoded frames, assign folds.

Writes ``index.json`` (one record per annotation name / unlabelled video, plus failures and orphan
annotations) and ``labels.zarr`` (see ``afwpipe.store``). One bad video or annotation file is
reported by name and never stops the others.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import store
from .folds import summary_split
from .datasets import create_reader
from .datasets.affwild2 import ROOT_EDITION
from .datasets.base import Item, TaskSpec, index_tasks, rel
from .errors import AfwpipeError, DatasetError
from .exclusions import parse_exclude, resolve_ranges
from .manifest import DatasetSpec
from .records import IndexFile, IndexRecord
from .video import VideoInfo, probe_video

log = logging.getLogger(__name__)

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


def _unknown_scene_members(items: dict[str, Item], spec: DatasetSpec) -> list[dict]:
    """Warnings for index.json: names a manifest scene lists that are no name or video of the index (a scene
    head never sees them; a typo would silently shrink the scene)."""
    known = set(items) | {it.video for it in items.values()}
    warnings = []
    for scene, members in sorted(spec.scenes.items()):
        for name in sorted(set(members) - known):
            msg = f"scenes: {name} of scene {scene} is no name of the index (annotation, test-list name or video); ignored"
            log.warning("%s", msg)
            warnings.append({"video": name, "path": f"manifest datasets.{spec.name}.scenes.{scene}", "warning": msg})
    return warnings


def build_index(spec: DatasetSpec, ws: store.Workspace, progress: bool = True) -> IndexFile:
    """Index dataset ``spec`` into workspace ``ws`` with its reader (``spec.reader``, :mod:`afwpipe.datasets`) and
    return the index (:class:`afwpipe.records.IndexFile`, also written to disk).

    The reader names the items (for ``affwild2``: one per annotation name, ``X_left``/``X_right`` for the two
    people of video ``X``, one per test-list name and one per other video; :mod:`afwpipe.datasets.affwild2_reader`),
    their per-task ``splits`` and label files; this step probes every video, reads each item's labels of each
    task (a frame task ``[T, ...]`` aligned to the decoded frames, a video task ``[1, ...]``), deals the
    reader's ``fold_videos`` into seeded folds (unless the reader gives the dataset's own fold) and writes
    ``labels.zarr`` and ``index.json``. ``split`` = ``split_of(rec, "mtl")``. ``side`` (``left`` /
    ``right`` / ``largest``) is the face the name labels and ``side_from`` why. ``excluded_frames`` lists the
    name's ranges of the manifest's ``exclude.frames`` and the index's ``exclude`` the ranges and the
    detector-score floor (:mod:`afwpipe.exclusions`; labels.zarr keeps the labels, the readers mark the frames
    invalid). A bad label file (or row) is a ``failures`` entry naming the file and line; its item is indexed
    with that task unlabelled, and every other item as usual.

    Raises:
        DatasetError: the dataset root is missing, an unknown reader, what the reader raises (no video
            folder, ambiguous editions, an unreadable test list or label table), or an ``exclude`` entry is
            malformed, names an unknown video or runs past its video's end.
    """
    if not spec.root.is_dir():
        raise DatasetError(f"{spec.root}: dataset root of {spec.name!r} does not exist")
    exclude_where = f"data_manifest.yaml: datasets.{spec.name}.exclude"
    ranges, score_floor = parse_exclude(spec.exclude, exclude_where)
    reader = create_reader(spec.reader)
    tasks = reader.tasks(spec)
    scan = reader.scan(spec)
    items, videos = scan.items, scan.videos
    warnings = scan.warnings + _unknown_scene_members(items, spec)
    folds = assign_folds(scan.fold_videos, spec.folds_k, spec.folds_seed)

    infos: dict[str, VideoInfo] = {}
    failures = list(scan.failures)
    for v in tqdm(sorted({it.video for it in items.values()}), desc="probe", unit="video", disable=not progress):
        try:
            infos[v] = probe_video(videos[v])
        except AfwpipeError as err:
            log.error("%s", err)
            failures.append({"video": v, "path": rel(videos[v]), "error": str(err)})
            continue
        if infos[v].warning:
            warnings.append({"video": v, "path": rel(videos[v]), "warning": infos[v].warning})

    # an unknown video or a range past a video's end is an error before anything is written
    excluded = resolve_ranges(ranges, [(n, it.video, infos[it.video].n_frames)
                                       for n, it in sorted(items.items()) if it.video in infos], exclude_where)
    records = []
    ws.root.mkdir(parents=True, exist_ok=True)
    lab_root = store.open_store(ws.labels, "w")
    for name, it in sorted(items.items()):
        video, files = it.video, it.files
        if video not in infos:
            continue
        info = infos[video]
        g = lab_root.create_group(name)
        labelled, ann_frames = {}, {}
        for task, ts in tasks.items():
            n = info.n_frames if ts.level == "frame" else 1
            if task in files:
                lab, ann_frames[task], failure = _read_labels(reader, it, ts, info.n_frames)
                if failure:
                    failures.append({"video": name, **failure})
            else:
                lab = ts.empty(n)
            store.write_time_array(g, task, lab)
            labelled[task] = int(ts.valid(lab).sum())
        splits = dict(it.splits)
        rec = IndexRecord(
            name=name, video=video, path=rel(Path(info.path)), side=it.side, side_from=it.side_from, splits=splits,
            split=summary_split(splits), fold=it.fold if it.fold is not None else folds.get(video, -1),
            **{k: v for k, v in info.to_dict().items() if k != "path"},
            annotation_frames=ann_frames, labelled=labelled, files={t: rel(f) for t, f in files.items()},
            excluded_frames=excluded.get(name, []))
        g.update_attributes({"n_frames": info.n_frames, "split": rec.split, "fold": rec.fold, "files": rec.files})
        records.append(rec)

    index = IndexFile(
        dataset=spec.name, root=rel(spec.root), folds=scan.folds, scenes=spec.scenes,
        # wrong faces out (afwpipe.exclusions): the manifest's ranges and detector-score floor
        exclude_frames=[[r.video, r.first, r.last] for r in ranges], score_below=score_floor,
        reader_fields=scan.header, records=records, failures=failures, orphan_annotations=scan.orphans,
        warnings=warnings)
    index.save(ws.index)  # atomic: IndexFile.save writes through atomic.write_text
    return index


def _read_labels(reader, item: Item, task: TaskSpec, n_frames: int) -> tuple[np.ndarray, int, dict | None]:
    """``reader.read_labels``; a bad file or row gives the task's invalid labels and a failure row
    ``{path, error}`` (the error names the file and line) instead of stopping the index."""
    source = rel(item.files[task.name])
    try:
        lab, n = reader.read_labels(item, task, n_frames, source)
        return lab, n, None
    except AfwpipeError as err:
        log.error("%s", err)
        return task.empty(n_frames if task.level == "frame" else 1), 0, {"path": source, "error": str(err)}


def _track_cell(rec: IndexRecord, task: str) -> str:
    split = (rec.splits or {}).get(task)
    if split in ("train", "val"):
        return f"{split}:{rec.labelled[task]}"
    return split or "-"


def format_table(index: IndexFile) -> str:
    """A fixed-width table: video, frames, fps, audio, split (``split_of(rec, "mtl")``), fold, and per
    track the split with its labelled frames (``train:72``, ``val:72``), ``test`` or ``-``. The footer
    names the editions found and used, the test lists, the video folders, failures, names without a
    video, warnings (e.g. truncated files) and the largest audio offsets (``format_offsets``)."""
    tasks = list(index_tasks(index))
    head = (f"{'video':<28} {'frames':>6} {'fps':>7} {'audio':>5} {'split':<5} {'fold':>4}  "
            + " ".join(f"{t.upper():<9}" for t in tasks))
    lines = [head.rstrip(), "-" * len(head)]
    for r in index.records:
        fps = f"{r.fps:.3f}" + ("*" if r.vfr else " ")
        cells = " ".join(f"{_track_cell(r, t):<9}" for t in tasks)
        lines.append(f"{r.name[:28]:<28} {r.n_frames:>6} {fps:>7} {'yes' if r.has_audio else 'no':>5} "
                     f"{r.split or '-':<5} {r.fold:>4}  {cells}".rstrip())
    warnings = index.warnings
    lines.append(f"{len(index.records)} videos indexed"
                 + (" (* variable frame rate)" if any(r.vfr for r in index.records) else "")
                 + (f", {len(index.failures)} failures" if index.failures else "")
                 + (f", {len(index.orphan_annotations)} names without video" if index.orphan_annotations else "")
                 + (f", {len(warnings)} warnings" if warnings else ""))
    reader = index.reader_fields
    eds = reader.get("editions") or {}
    if eds.get("found"):
        show = {n: "(annotations root)" if n == ROOT_EDITION else n for n in eds["found"]}
        lines.append(f"annotation editions: {', '.join(show.values())}; used {show[eds['used']]}")
    lists = reader.get("test_lists") or {}
    lines += [f"{t.upper()} test list: {p}" for t, p in lists.items()] or [
        "test lists: none (unannotated videos are test for every track)"]
    lines.append("video folders: " + ", ".join(reader.get("video_dirs", [])))
    lines.append(format_offsets(index.records))
    for f in index.failures:
        lines.append(f"FAILED {f['path']}: {f['error']}")
    for o in index.orphan_annotations:
        lines.append(f"NO VIDEO for {o['name']}: {', '.join(o['files'])}")
    if index.exclude_frames or index.score_below is not None:
        n = sum(last - first + 1 for r in index.records for first, last in r.excluded_frames)
        lines.append(f"excluded (invalid for training and evaluation): {n} frames in {len(index.exclude_frames)} "
                     f"manifest range(s)" + (f"; face frames with detector score < {index.score_below}"
                                             if index.score_below is not None else ""))
    for w in warnings:
        lines.append(f"WARNING {w['path']}: {w['warning']}")
    return "\n".join(lines)


SHOW_OFFSETS = 3  #: videos named in the footer's line of largest audio offsets


def format_offsets(records: list[IndexRecord], n: int = SHOW_OFFSETS) -> str:
    """One line naming the ``n`` videos with the largest ``|audio_offset|`` (audio start - first frame, s;
    > 0: the audio starts later; ``read_audio`` pads / cuts it so the stored audio starts with the first
    frame). Each video once (both sides of a two-person video share it)."""
    offsets = {r.video: r.audio_offset for r in records if r.audio_offset is not None}
    if not offsets:
        return "audio offsets: no video with audio"
    top = sorted(offsets.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:n]
    return ("audio offsets (audio start - first frame), largest: "
            + ", ".join(f"{v} {o:+.3f} s" for v, o in top) + f" ({len(offsets)} videos with audio)")


def main(spec: DatasetSpec, ws: store.Workspace, *, progress: bool = True) -> IndexFile:
    """The index step as ``afwpipe index`` and ``python -m stages.index`` run it: :func:`build_index`, then
    the table of indexed videos (with the editions, test lists and failures) printed."""
    index = build_index(spec, ws, progress=progress)
    print(format_table(index))
    print(f"wrote {ws.index} and {ws.labels}")
    return index
