"""Build a dataset's index: probe every video, align annotations to decoded frames, assign folds.

Writes ``index.json`` (one record per annotation name / unlabelled video, plus failures and orphan
annotations) and ``labels.zarr`` (see ``afwpipe.store``). One bad video or annotation file is
reported by name and never stops the others.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import atomic, store
from .datasets.affwild2 import (ROOT_EDITION, align_length, choose_edition, find_editions, find_test_lists, find_video_dirs,
                                find_videos, read_annotation, read_test_list, resolve_sides, scan_annotations,
                                split_side)
from .errors import AfwpipeError, DatasetError
from .exclusions import parse_exclude, resolve_ranges
from .labels import TASKS, valid_mask
from .manifest import DatasetSpec
from .video import VideoInfo, probe_video

log = logging.getLogger(__name__)

UNLABELLED = "test"  # split of test-list names, and of unannotated videos when there is no test list


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


@dataclass
class _Name:
    """One name to index: its video, side, annotation files (task -> path), per-track splits and why the side."""

    video: str
    side: str | None
    files: dict
    splits: dict
    side_from: str = "name"


def _resolve_sides(items: dict[str, _Name], spec: DatasetSpec) -> list[dict]:
    """Set each name's ``side`` / ``side_from`` (``resolve_sides`` with the manifest's ``sides``); return the
    warnings for index.json: ambiguous bare names and manifest names that are not indexed."""
    warnings = []
    for name, (side, why) in resolve_sides(items, spec.sides).items():
        items[name].side, items[name].side_from = side, why
        if why.startswith("siblings"):
            log.warning("%s: %s", name, why)
            warnings.append({"video": name, "path": _rel(next(iter(items[name].files.values()), spec.annotations)),
                             "warning": f"takes the largest face: {why}"})
    for name in sorted(set(spec.sides) - set(items)):
        msg = f"sides: {name} is named in the manifest but is no name of the index (annotation, test-list name or video); ignored"
        log.warning("%s", msg)
        warnings.append({"video": name, "path": f"manifest datasets.{spec.name}.sides", "warning": msg})
    return warnings


def _unknown_scene_members(items: dict[str, _Name], spec: DatasetSpec) -> list[dict]:
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


def _annotations(spec: DatasetSpec) -> tuple[dict, dict, dict[str, Path]]:
    """Scan the chosen edition: (entries, editions summary for index.json, track -> test-list file)."""
    if not spec.annotations.is_dir():
        log.warning("%s: no annotation folder; every video is indexed unlabelled", spec.annotations)
        return {}, {"found": [], "used": None}, dict(spec.test_lists)
    editions = find_editions(spec.annotations)
    used = choose_edition(editions, spec.edition)
    if len(editions) > 1 or spec.edition is not None:
        log.info("annotation editions under %s: %s; using %r%s", _rel(spec.annotations),
                    ", ".join(repr(n) for n in editions), used,
                    " (dataset.edition)" if spec.edition is not None else " (newest)")
    entries = scan_annotations(editions[used], max_depth=1) if used is not None else {}
    folders = ([editions[used]] if used is not None else []) + [spec.annotations]
    lists = {**find_test_lists(folders), **spec.test_lists}
    return entries, {"found": list(editions), "used": used}, lists


def build_index(spec: DatasetSpec, ws: store.Workspace, progress: bool = True) -> dict:
    """Index dataset ``spec`` into workspace ``ws`` and return the index dict (also written to disk).

    Records: one per annotation name (``X_left``/``X_right`` for the two people of video ``X``), one
    per name of a track's test list, and one per other video. ``splits[track]`` is the folder split
    (``train``/``val``) where the track annotates the name, ``"test"`` where the track's test list
    names it, else None; with no test list at all, a video no track annotates is ``"test"`` for every
    track. ``split`` = ``store.split_of(rec, "mtl")``. ``side`` (``left`` / ``right`` / ``largest``) is the
    face the name labels and ``side_from`` why (``afwpipe.datasets.affwild2.resolve_sides``; ``spec.sides``
    overrides it). ``excluded_frames`` lists the name's ranges of the manifest's ``exclude.frames`` and
    ``index["exclude"]`` the ranges and the detector-score floor (:mod:`afwpipe.exclusions`; labels.zarr keeps
    the annotation's labels, the readers mark the frames invalid).

    Raises:
        DatasetError: the dataset root is missing, no video folder is found, the annotation editions
            are ambiguous (see ``choose_edition``), a test list cannot be read, or an ``exclude`` entry is
            malformed, names an unknown video or runs past its video's end.
    """
    if not spec.root.is_dir():
        raise DatasetError(f"{spec.root}: dataset root of {spec.name!r} does not exist")
    exclude_where = f"data_manifest.yaml: datasets.{spec.name}.exclude"
    ranges, score_floor = parse_exclude(spec.exclude, exclude_where)
    entries, editions, list_files = _annotations(spec)
    skip = tuple(p.name for p in (spec.annotations, spec.cropped_aligned) if p is not None)
    video_dirs = find_video_dirs(spec.root, spec.video_dirs, skip=skip + ("annotations", "cropped_aligned"))
    videos = find_videos(video_dirs)
    test_names = {t: read_test_list(f) for t, f in sorted(list_files.items())}

    orphans = []
    for name, e in list(entries.items()):
        if e.video not in videos:
            files = ", ".join(_rel(f) for f in e.files.values())
            log.warning("annotation %s (%s) has no video %s.* in %s", name, files, e.video,
                        ", ".join(_rel(d) for d in video_dirs))
            orphans.append({"name": name, "files": [_rel(f) for f in e.files.values()],
                            "error": f"no video named {e.video}"})
            del entries[name]

    items = {n: _Name(e.video, e.side, e.files, {t: (e.split if t in e.files else None) for t in TASKS})
             for n, e in entries.items()}
    warnings, lost = [], {}
    for track, names in test_names.items():
        for name in names:
            video, side = split_side(name)
            if video not in videos:
                if name not in lost:
                    log.warning("test name %s (%s) has no video %s.*", name, _rel(list_files[track]), video)
                    lost[name] = {"name": name, "files": [], "error": f"no video named {video} (test list)"}
                    orphans.append(lost[name])
                lost[name]["files"].append(_rel(list_files[track]))
                continue
            it = items.setdefault(name, _Name(video, side, {}, dict.fromkeys(TASKS)))
            if it.splits[track] not in (None, "test"):
                msg = (f"in the {track.upper()} test list {_rel(list_files[track])} but annotated for "
                       f"{track.upper()} ({it.splits[track]}); kept as {it.splits[track]}")
                log.warning("%s: %s", name, msg)
                warnings.append({"video": name, "path": _rel(list_files[track]), "warning": msg})
                continue
            it.splits[track] = UNLABELLED
    covered = {it.video for it in items.values()}
    other = dict.fromkeys(TASKS, None if test_names else UNLABELLED)
    for v in sorted(set(videos) - covered):
        items[v] = _Name(v, None, {}, dict(other))
    warnings += _resolve_sides(items, spec)
    warnings += _unknown_scene_members(items, spec)

    labelled_videos = sorted({e.video for e in entries.values()})
    folds = assign_folds(labelled_videos, spec.folds_k, spec.folds_seed)

    infos: dict[str, VideoInfo] = {}
    failures = []
    for v in tqdm(sorted({it.video for it in items.values()}), desc="probe", unit="video", disable=not progress):
        try:
            infos[v] = probe_video(videos[v])
        except AfwpipeError as err:
            log.error("%s", err)
            failures.append({"video": v, "path": _rel(videos[v]), "error": str(err)})
            continue
        if infos[v].warning:
            warnings.append({"video": v, "path": _rel(videos[v]), "warning": infos[v].warning})

    # an unknown video or a range past a video's end is an error before anything is written
    excluded = resolve_ranges(ranges, [{"name": n, "video": it.video, "n_frames": infos[it.video].n_frames}
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
        rec = {"name": name, "video": video, "path": _rel(Path(info.path)), "side": it.side,
               "side_from": it.side_from, "splits": it.splits}
        rec["split"] = store.split_of(rec, "mtl")
        rec.update({
            "fold": folds.get(video, -1), **{k: v for k, v in info.to_dict().items() if k != "path"},
            "annotation_frames": ann_frames, "labelled": labelled,
            "files": {t: _rel(f) for t, f in files.items()},
            "excluded_frames": excluded.get(name, []),
        })
        g.attrs.update({"n_frames": info.n_frames, "split": rec["split"], "fold": rec["fold"], "files": rec["files"]})
        records.append(rec)

    index = {
        "dataset": spec.name,
        "root": _rel(spec.root),
        "folds": {"k": spec.folds_k, "seed": spec.folds_seed},
        "scenes": spec.scenes,
        # wrong faces out (afwpipe.exclusions): the manifest's ranges and detector-score floor
        "exclude": {"frames": [[r.video, r.first, r.last] for r in ranges], "score_below": score_floor},
        "cropped_aligned": _rel(spec.cropped_aligned) if spec.cropped_aligned else None,
        "video_dirs": [_rel(d) for d in video_dirs if d.is_dir()],
        "editions": editions,
        "test_lists": {t: _rel(f) for t, f in sorted(list_files.items())},
        "videos": records,
        "failures": failures,
        "orphan_annotations": orphans,
        "warnings": warnings,
    }
    atomic.write_text(ws.index, json.dumps(index, indent=1) + "\n")
    return index


def _track_cell(rec: dict, task: str) -> str:
    split = rec["splits"][task]
    if split in ("train", "val"):
        return f"{split}:{rec['labelled'][task]}"
    return split or "-"


def format_table(index: dict) -> str:
    """A fixed-width table: video, frames, fps, audio, split (``split_of(rec, "mtl")``), fold, and per
    track the split with its labelled frames (``train:72``, ``val:72``), ``test`` or ``-``. The footer
    names the editions found and used, the test lists, the video folders, failures, names without a
    video, warnings (e.g. truncated files) and the largest audio offsets (``format_offsets``)."""
    head = (f"{'video':<28} {'frames':>6} {'fps':>7} {'audio':>5} {'split':<5} {'fold':>4}  "
            f"{'AU':<9} {'EXPR':<9} {'VA':<9}")
    lines = [head.rstrip(), "-" * len(head)]
    for r in index["videos"]:
        fps = f"{r['fps']:.3f}" + ("*" if r["vfr"] else " ")
        cells = " ".join(f"{_track_cell(r, t):<9}" for t in TASKS)
        lines.append(f"{r['name'][:28]:<28} {r['n_frames']:>6} {fps:>7} {'yes' if r['has_audio'] else 'no':>5} "
                     f"{r['split'] or '-':<5} {r['fold']:>4}  {cells}".rstrip())
    warnings = index.get("warnings", [])
    lines.append(f"{len(index['videos'])} videos indexed"
                 + (" (* variable frame rate)" if any(r["vfr"] for r in index["videos"]) else "")
                 + (f", {len(index['failures'])} failures" if index["failures"] else "")
                 + (f", {len(index['orphan_annotations'])} names without video" if index["orphan_annotations"] else "")
                 + (f", {len(warnings)} warnings" if warnings else ""))
    eds = index.get("editions") or {}
    if eds.get("found"):
        show = {n: "(annotations root)" if n == ROOT_EDITION else n for n in eds["found"]}
        lines.append(f"annotation editions: {', '.join(show.values())}; used {show[eds['used']]}")
    lists = index.get("test_lists") or {}
    lines += [f"{t.upper()} test list: {p}" for t, p in lists.items()] or [
        "test lists: none (unannotated videos are test for every track)"]
    lines.append("video folders: " + ", ".join(index.get("video_dirs", [])))
    lines.append(format_offsets(index["videos"]))
    for f in index["failures"]:
        lines.append(f"FAILED {f['path']}: {f['error']}")
    for o in index["orphan_annotations"]:
        lines.append(f"NO VIDEO for {o['name']}: {', '.join(o['files'])}")
    ex = index.get("exclude") or {}
    if ex.get("frames") or ex.get("score_below") is not None:
        n = sum(last - first + 1 for r in index["videos"] for first, last in r.get("excluded_frames", []))
        lines.append(f"excluded (invalid for training and evaluation): {n} frames in {len(ex.get('frames') or [])} "
                     f"manifest range(s)" + (f"; face frames with detector score < {ex['score_below']}"
                                             if ex.get("score_below") is not None else ""))
    for w in warnings:
        lines.append(f"WARNING {w['path']}: {w['warning']}")
    return "\n".join(lines)


SHOW_OFFSETS = 3  #: videos named in the footer's line of largest audio offsets


def format_offsets(records: list[dict], n: int = SHOW_OFFSETS) -> str:
    """One line naming the ``n`` videos with the largest ``|audio_offset|`` (audio start - first frame, s;
    > 0: the audio starts later; ``read_audio`` pads / cuts it so the stored audio starts with the first
    frame). Each video once (both sides of a two-person video share it)."""
    offsets = {r["video"]: r["audio_offset"] for r in records if r.get("audio_offset") is not None}
    if not offsets:
        return "audio offsets: no video with audio"
    top = sorted(offsets.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:n]
    return ("audio offsets (audio start - first frame), largest: "
            + ", ".join(f"{v} {o:+.3f} s" for v, o in top) + f" ({len(offsets)} videos with audio)")


def main(spec: DatasetSpec, ws: store.Workspace, *, progress: bool = True) -> dict:
    """The index step as ``afwpipe index`` and ``python -m stages.index`` run it: :func:`build_index`, then
    the table of indexed videos (with the editions, test lists and failures) printed."""
    index = build_index(spec, ws, progress=progress)
    print(format_table(index))
    print(f"wrote {ws.index} and {ws.labels}")
    return index
