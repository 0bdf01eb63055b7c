"""The ``affwild2`` reader: Aff-Wild2 / ABAW annotation trees (every edition, test lists, two-person sides).

Its tasks are built in (:data:`AFFWILD2_TASKS`: AU, EXPR, VA per frame, :mod:`afwpipe.labels`); the files are
read by :mod:`afwpipe.datasets.affwild2` (layout: docs/affwild2.md). What it indexes: one name per annotation
name (``X_left`` / ``X_right`` for the two people of video ``X``), one per name of a track's test list, and one
per other video. ``splits[track]`` is the folder split (``train``/``val``) where the track annotates the name,
``"test"`` where the track's test list names it, else None; with no test list at all, a video no track
annotates is ``"test"`` for every track. ``side`` / ``side_from`` come from
:func:`afwpipe.datasets.affwild2.resolve_sides` (the manifest's ``sides`` overrides it).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..labels import AU_NAMES, EXPR_NAMES, TASKS, VA_NAMES
from .affwild2 import (align_length, choose_edition, find_editions, find_test_lists, find_video_dirs, find_videos,
                       read_annotation, read_test_list, resolve_sides, scan_annotations, split_side)
from .base import Item, Scan, TaskSpec, register_reader, rel

log = logging.getLogger(__name__)

#: split of test-list names, and of unannotated videos when there is no test list
UNLABELLED = "test"

#: Aff-Wild2's three tracks as task declarations (ABAW3..8; invalid markers of the annotation files)
AFFWILD2_TASKS = {
    "au": TaskSpec("au", "frame", "multilabel", AU_NAMES, None, -1, "int8"),
    "expr": TaskSpec("expr", "frame", "class", EXPR_NAMES, None, -1, "int8"),
    "va": TaskSpec("va", "frame", "regression", VA_NAMES, (-1.0, 1.0), -5.0, "float32"),
}
assert tuple(AFFWILD2_TASKS) == tuple(TASKS)


def _annotations(spec) -> tuple[dict, dict, dict[str, Path]]:
    """Scan the chosen edition: (entries, editions summary for index.json, track -> test-list file)."""
    if not spec.annotations.is_dir():
        log.warning("%s: no annotation folder; every video is indexed unlabelled", spec.annotations)
        return {}, {"found": [], "used": None}, dict(spec.test_lists)
    editions = find_editions(spec.annotations)
    used = choose_edition(editions, spec.edition)
    if len(editions) > 1 or spec.edition is not None:
        log.info("annotation editions under %s: %s; using %r%s", rel(spec.annotations),
                 ", ".join(repr(n) for n in editions), used,
                 " (dataset.edition)" if spec.edition is not None else " (newest)")
    entries = scan_annotations(editions[used], max_depth=1) if used is not None else {}
    folders = ([editions[used]] if used is not None else []) + [spec.annotations]
    lists = {**find_test_lists(folders), **spec.test_lists}
    return entries, {"found": list(editions), "used": used}, lists


def _resolve_sides(items: dict[str, Item], spec) -> list[dict]:
    """Set each name's ``side`` / ``side_from`` (``resolve_sides`` with the manifest's ``sides``); return the
    warnings for index.json: ambiguous bare names and manifest names that are not indexed."""
    warnings = []
    for name, (side, why) in resolve_sides(items, spec.sides).items():
        items[name].side, items[name].side_from = side, why
        if why.startswith("siblings"):
            log.warning("%s: %s", name, why)
            warnings.append({"video": name, "path": rel(next(iter(items[name].files.values()), spec.annotations)),
                             "warning": f"takes the largest face: {why}"})
    for name in sorted(set(spec.sides) - set(items)):
        msg = f"sides: {name} is named in the manifest but is no name of the index (annotation, test-list name or video); ignored"
        log.warning("%s", msg)
        warnings.append({"video": name, "path": f"manifest datasets.{spec.name}.sides", "warning": msg})
    return warnings


@register_reader("affwild2")
class AffWild2Reader:
    """Aff-Wild2 annotation trees (module docstring)."""

    name = "affwild2"

    def tasks(self, spec) -> dict[str, TaskSpec]:
        """:data:`AFFWILD2_TASKS` (a ``tasks:`` entry in the manifest is refused by :func:`afwpipe.manifest.dataset_spec`)."""
        return dict(AFFWILD2_TASKS)

    def scan(self, spec) -> Scan:
        """Editions, test lists, video folders, names and sides (module docstring).

        Raises:
            DatasetError: no video folder is found, the editions are ambiguous (``choose_edition``), a test list
                cannot be read.
        """
        entries, editions, list_files = _annotations(spec)
        skip = tuple(p.name for p in (spec.annotations, spec.cropped_aligned) if p is not None)
        video_dirs = find_video_dirs(spec.root, spec.video_dirs, skip=skip + ("annotations", "cropped_aligned"))
        videos = find_videos(video_dirs)
        test_names = {t: read_test_list(f) for t, f in sorted(list_files.items())}

        orphans = []
        for name, e in list(entries.items()):
            if e.video not in videos:
                files = ", ".join(rel(f) for f in e.files.values())
                log.warning("annotation %s (%s) has no video %s.* in %s", name, files, e.video,
                            ", ".join(rel(d) for d in video_dirs))
                orphans.append({"name": name, "files": [rel(f) for f in e.files.values()],
                                "error": f"no video named {e.video}"})
                del entries[name]

        items = {n: Item(e.video, e.side, e.files, {t: (e.split if t in e.files else None) for t in TASKS})
                 for n, e in entries.items()}
        warnings, lost = [], {}
        for track, names in test_names.items():
            for name in names:
                video, side = split_side(name)
                if video not in videos:
                    if name not in lost:
                        log.warning("test name %s (%s) has no video %s.*", name, rel(list_files[track]), video)
                        lost[name] = {"name": name, "files": [], "error": f"no video named {video} (test list)"}
                        orphans.append(lost[name])
                    lost[name]["files"].append(rel(list_files[track]))
                    continue
                it = items.setdefault(name, Item(video, side, {}, dict.fromkeys(TASKS)))
                if it.splits[track] not in (None, "test"):
                    msg = (f"in the {track.upper()} test list {rel(list_files[track])} but annotated for "
                           f"{track.upper()} ({it.splits[track]}); kept as {it.splits[track]}")
                    log.warning("%s: %s", name, msg)
                    warnings.append({"video": name, "path": rel(list_files[track]), "warning": msg})
                    continue
                it.splits[track] = UNLABELLED
        covered = {it.video for it in items.values()}
        other = dict.fromkeys(TASKS, None if test_names else UNLABELLED)
        for v in sorted(set(videos) - covered):
            items[v] = Item(v, None, {}, dict(other))
        warnings += _resolve_sides(items, spec)
        header = {
            "cropped_aligned": rel(spec.cropped_aligned) if spec.cropped_aligned else None,
            "video_dirs": [rel(d) for d in video_dirs if d.is_dir()],
            "editions": editions,
            "test_lists": {t: rel(f) for t, f in sorted(list_files.items())},
        }
        return Scan(items, videos, header, orphans, warnings,
                    fold_videos=sorted({e.video for e in entries.values()}),
                    folds={"k": spec.folds_k, "seed": spec.folds_seed})

    def read_labels(self, item: Item, task: TaskSpec, n_frames: int, source: str) -> tuple[np.ndarray, int]:
        """``read_annotation`` of the task's file, padded / truncated to the decoded length (``align_length``).

        Raises:
            AnnotationError: see :func:`afwpipe.datasets.affwild2.read_annotation`.
        """
        lab = read_annotation(item.files[task.name], task.name)
        return align_length(lab, n_frames, task.name, source=source), int(lab.shape[0])
