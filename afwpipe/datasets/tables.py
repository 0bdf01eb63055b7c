"""CSV label tables of the generic readers (``video_csv``, ``frame_csv``): reading a table, and the
``video`` / ``split`` / ``fold`` columns that place each video (docs/datasets.md).

A table is UTF-8 CSV with a header line (Python's :mod:`csv`); line numbers in messages are 1-based with the
header as line 1, as a text editor shows them.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError
from ..folds import SPLITS
from .affwild2 import VIDEO_EXTENSIONS, find_video_dirs, find_videos
from .base import Item, Scan, TaskSpec, columns, rel

log = logging.getLogger(__name__)


def read_table(path: Path, required: tuple[str, ...], error: type = DatasetError) -> list[tuple[int, dict]]:
    """The rows of CSV ``path`` as ``(line, {column: cell})``; blank lines are skipped.

    Raises:
        ``error`` (DatasetError by default; AnnotationError for one video's file): the file is missing or not
            UTF-8 text, has no header, lacks a ``required`` column, or a line has more cells than the header.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read the label table ({e})") from e
    reader = csv.reader(text.splitlines())
    header = [c.strip() for c in next(reader, [])]
    if not header:
        raise error(f"{path}: empty file (expected a header line naming the columns)")
    missing = [c for c in required if c not in header]
    if missing:
        raise error(f"{path}: no column {', '.join(missing)} in the header ({', '.join(header)})")
    rows = []
    for line, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            raise error(f"{path}: line {line} has {len(cells)} cells, the header {len(header)}")
        rows.append((line, dict(zip(header, cells))))
    return rows


def task_columns(tasks: dict[str, TaskSpec]) -> tuple[str, ...]:
    """Every label column of ``tasks`` (:func:`afwpipe.datasets.base.columns`), in declaration order.

    Raises:
        DatasetError: two tasks share a column.
    """
    out: list[str] = []
    for t in tasks.values():
        for c in columns(t):
            if c in out:
                raise DatasetError(f"tasks: column {c!r} belongs to two tasks")
            out.append(c)
    return tuple(out)


@dataclass
class Placement:
    """Where a table puts one video: official split, the dataset's own fold (0-based) or None, its line."""

    split: str
    fold: int | None
    line: int


def place_videos(path: Path, rows: list[tuple[int, dict]]) -> tuple[dict[str, Placement], dict]:
    """Read the ``video`` / ``split`` / ``fold`` columns of a table's rows.

    ``split`` is ``train`` / ``val`` / ``test``; without a ``split`` column every row is ``train``. ``fold`` (any
    labels, e.g. DFEW's 1..5) numbers the dataset's own folds 0..k-1 in sorted order (numeric when every label is
    an integer); without it, the seeded folds of the manifest's ``folds: {k, seed}`` are used. A ``video`` cell
    may carry a video extension (dropped).

    Returns:
        (video stem -> :class:`Placement`, the ``folds`` field of index.json when the table has a ``fold`` column,
        else ``{}``).

    Raises:
        DatasetError: neither a ``split`` nor a ``fold`` column, a blank video, a split not in train/val/test,
            a blank fold, or a video listed twice; the message names the file and line.
    """
    if rows and not ({"split", "fold"} & set(rows[0][1])):
        raise DatasetError(f"{path}: needs a split column (train / val / test) or a fold column (the dataset's folds)")
    fold_labels = sorted({(cells.get("fold") or "").strip() for _, cells in rows} - {""}, key=_fold_key)
    out: dict[str, Placement] = {}
    for line, cells in rows:
        video = (cells.get("video") or "").strip()
        if Path(video).suffix.lower() in VIDEO_EXTENSIONS:
            video = Path(video).stem
        if not video:
            raise DatasetError(f"{path}: line {line}: blank video")
        split = (cells.get("split") or "train").strip()
        if split not in SPLITS:
            raise DatasetError(f"{path}: line {line}: split {split!r} is not one of {', '.join(SPLITS)}")
        fold = None
        if "fold" in cells:
            label = (cells.get("fold") or "").strip()
            if not label:
                raise DatasetError(f"{path}: line {line}: blank fold")
            fold = fold_labels.index(label)
        if video in out:
            raise DatasetError(f"{path}: line {line}: video {video} is listed already on line {out[video].line}")
        out[video] = Placement(split, fold, line)
    folds = {"k": len(fold_labels), "seed": None, "column": "fold", "labels": fold_labels} if fold_labels else {}
    return out, folds


def _fold_key(label: str):
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def dataset_videos(spec) -> tuple[dict[str, Path], list[Path]]:
    """The dataset's videos (stem -> file) and the folders read: the manifest's ``videos`` folders, else every
    folder below the root holding videos (:func:`afwpipe.datasets.affwild2.find_video_dirs`)."""
    skip = tuple(str(v) for v in (spec.options.get("labels"), spec.options.get("splits")) if v)
    video_dirs = find_video_dirs(spec.root, spec.video_dirs, skip=skip + ("labels",))
    return find_videos(video_dirs), video_dirs


def orphan(name: str, path: Path, line: int | None, video: str) -> dict:
    """An ``orphan_annotations`` row: labels of a video that is not found."""
    where = f"{rel(path)}" + (f" line {line}" if line else "")
    log.warning("%s: labels of %s but no video %s.*", where, name, video)
    return {"name": name, "files": [rel(path)], "error": f"no video named {video} ({where})"}



def generic_scan(reader: str, spec, tasks: dict[str, TaskSpec], items: dict[str, Item], found: tuple[dict, list],
                 labels: Path, orphans: list[dict], own_folds: dict) -> Scan:
    """The :class:`~afwpipe.datasets.base.Scan` of a generic reader: index.json gets ``reader``, ``tasks`` (the
    declarations), ``labels`` (the table or folder) and ``video_dirs``; the videos with label files are dealt
    into the seeded folds unless the table gives the dataset's own (``own_folds``)."""
    videos, video_dirs = found
    header = {"reader": reader, "tasks": {n: t.to_json() for n, t in tasks.items()},
              "labels": rel(labels), "video_dirs": [rel(d) for d in video_dirs if d.is_dir()]}
    labelled = sorted(v for v, it in items.items() if it.files)
    return Scan(items, videos, header, orphans, [], fold_videos=[] if own_folds else labelled,
                folds=own_folds or {"k": spec.folds_k, "seed": spec.folds_seed})
