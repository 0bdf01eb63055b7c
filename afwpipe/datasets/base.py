"""What a dataset reader is: its tasks, the names it indexes, and the registry that builds one by name.

A reader (``afwpipe.datasets.READERS``, chosen by the manifest entry's ``reader:``, default ``affwild2``)
turns a manifest entry into

* its tasks (:class:`TaskSpec`: a frame task labels every decoded frame, a video task the whole video);
* a :class:`Scan`: the names to index (:class:`Item`: video, face side, label files per task, split per
  task, the dataset's own fold), the videos found, names without a video, warnings and the reader's own
  fields of ``index.json``;
* per item and task the labels (:meth:`DatasetReader.read_labels`): ``[T, ...]`` aligned to the decoded
  frames for a frame task, ``[1, ...]`` for a video task.

:mod:`afwpipe.index` does the rest for every reader: probing the videos, seeded folds, ``exclude``,
``labels.zarr`` and ``index.json``. Registering a reader (``@register_reader("name")`` on a class whose
constructor takes no argument) adds a format; the module must be imported by ``afwpipe/datasets/__init__.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..errors import AnnotationError, DatasetError
from ..registry import Registry

if TYPE_CHECKING:
    from ..manifest import DatasetSpec
    from ..records import IndexFile

#: where a task's labels live: every decoded frame, or the whole video (one label per video)
LEVELS = ("frame", "video")
#: what a task predicts: one class of ``classes``; any subset of ``classes`` (0/1 each); real ``targets``
TYPES = ("class", "multilabel", "regression")


@dataclass(frozen=True)
class TaskSpec:
    """One task a dataset declares (manifest ``tasks: {name: {level, type, classes | targets, range}}``).

    Attributes:
        name: the task's name, the key of its labels in ``labels.zarr`` and of its scores in ``eval/metrics.json``.
        level: ``frame`` (labels ``[T]`` / ``[T, K]`` aligned to the decoded frames) or ``video`` (``[1]`` /
            ``[1, K]``: one label for the whole video).
        type: ``class`` (int16 class index, ``-1`` invalid), ``multilabel`` (int8 0/1 per class, ``-1``
            invalid) or ``regression`` (float32 per target, NaN invalid unless ``invalid`` says otherwise).
        names: the classes (``class``, ``multilabel``) or the targets (``regression``), in column order.
        range: ``(low, high)`` a regression value must lie in (both included), or None for any finite value.
        invalid: the marker of a missing label (Aff-Wild2's VA uses -5, AU and EXPR -1; generic tasks -1 / NaN).
        dtype: numpy dtype name of the stored labels.
    """

    name: str
    level: str
    type: str
    names: tuple[str, ...]
    range: tuple[float, float] | None = None
    invalid: float = -1
    dtype: str = "int16"

    @property
    def width(self) -> int:
        """Values per label: 1 for ``class``, ``len(names)`` otherwise."""
        return 1 if self.type == "class" else len(self.names)

    def empty(self, n: int) -> np.ndarray:
        """``n`` invalid labels: ``[n]`` for ``class``, ``[n, len(names)]`` otherwise."""
        shape = (n,) if self.type == "class" else (n, len(self.names))
        return np.full(shape, self.invalid, dtype=self.dtype)

    def valid(self, labels: np.ndarray) -> np.ndarray:
        """bool mask over every axis but the label axis: all values of a row valid (not the invalid marker, not NaN)."""
        ok = ~np.isnan(labels) if np.isnan(self.invalid) else labels != self.invalid
        return ok if self.type == "class" else ok.all(axis=-1)

    def to_json(self) -> dict:
        """The declaration as the manifest writes it (``index.json`` ``tasks``)."""
        d = {"level": self.level, "type": self.type,
             ("targets" if self.type == "regression" else "classes"): list(self.names)}
        if self.range is not None:
            d["range"] = list(self.range)
        return d


def parse_task(name: str, d, where: str) -> TaskSpec:
    """One manifest task declaration -> :class:`TaskSpec`.

    Raises:
        DatasetError: not a mapping, an unknown ``level`` / ``type``, no or duplicate ``classes`` (class,
            multilabel) / ``targets`` (regression), fewer than two classes for ``class``, or a ``range`` that
            is not two numbers low < high; the message names ``where`` (``manifest datasets.X.tasks.Y``).
    """
    if not isinstance(d, Mapping):
        raise DatasetError(f"{where}: expected {{level, type, classes | targets}}, got {d!r}")
    unknown = sorted(set(d) - {"level", "type", "classes", "targets", "range"})
    if unknown:
        raise DatasetError(f"{where}: unknown key(s) {', '.join(unknown)}; expected level, type, classes | targets, range")
    level, kind = d.get("level"), d.get("type")
    if level not in LEVELS:
        raise DatasetError(f"{where}.level: {level!r} is not one of {', '.join(LEVELS)}")
    if kind not in TYPES:
        raise DatasetError(f"{where}.type: {kind!r} is not one of {', '.join(TYPES)}")
    key = "targets" if kind == "regression" else "classes"
    names = d.get(key)
    if not isinstance(names, (list, tuple)) or not names:
        raise DatasetError(f"{where}: a {kind} task needs a non-empty list {key}: [...]")
    names = tuple(str(n) for n in names)
    if len(set(names)) != len(names):
        raise DatasetError(f"{where}.{key}: duplicate names in {list(names)}")
    if kind == "class" and len(names) < 2:
        raise DatasetError(f"{where}.classes: a class task needs at least two classes, got {list(names)}")
    rng = d.get("range")
    if rng is not None:
        if kind != "regression":
            raise DatasetError(f"{where}.range: only a regression task has a range")
        try:
            lo, hi = (float(v) for v in rng)
        except (TypeError, ValueError):
            raise DatasetError(f"{where}.range: expected [low, high], got {rng!r}") from None
        if not lo < hi:
            raise DatasetError(f"{where}.range: low {lo:g} is not below high {hi:g}")
        rng = (lo, hi)
    if kind == "regression":
        return TaskSpec(name, level, kind, names, rng, float("nan"), "float32")
    return TaskSpec(name, level, kind, names, None, -1, "int16" if kind == "class" else "int8")


def parse_tasks(d, where: str) -> dict[str, TaskSpec]:
    """The manifest's ``tasks:`` mapping -> task name -> :class:`TaskSpec` (see :func:`parse_task`).

    Raises:
        DatasetError: missing or empty, not a mapping, a task name that is not a plain identifier
            (it names a zarr array and a metrics key), or a bad declaration.
    """
    if not isinstance(d, Mapping) or not d:
        raise DatasetError(f"{where}: this reader needs tasks: {{name: {{level, type, classes | targets}}}}")
    out = {}
    for name, spec in d.items():
        name = str(name)
        if not name.isidentifier():
            raise DatasetError(f"{where}: task name {name!r} must be letters, digits and _ (it names stores and scores)")
        out[name] = parse_task(name, spec, f"{where}.{name}")
    return out


def columns(task: TaskSpec) -> tuple[str, ...]:
    """The CSV columns of ``task``: its name for a ``class`` task, one per class (0/1) for ``multilabel``,
    one per target for ``regression``."""
    return (task.name,) if task.type == "class" else task.names


def parse_row(task: TaskSpec, row: Mapping[str, str], where: str) -> np.ndarray:
    """The label of ``task`` in one CSV row (column -> cell) -> the task's label row (``[]`` class, ``[K]`` otherwise).

    ``class``: a class name of ``task.names`` in column ``task.name``; ``multilabel``: ``0`` / ``1`` in each
    class's column; ``regression``: a number in each target's column, within ``task.range``. A row with any
    blank cell of the task is invalid (the invalid marker).

    Raises:
        AnnotationError: an unknown class, a multilabel value other than 0/1, a non-numeric or non-finite
            value, or a value outside the declared range; the message starts with ``where`` (``file: line N``).
    """
    cells = [(row.get(c) or "").strip() for c in columns(task)]
    if any(c == "" for c in cells):
        return task.empty(1)[0]
    if task.type == "class":
        if cells[0] not in task.names:
            raise AnnotationError(f"{where}: {task.name} {cells[0]!r} is not a class of {', '.join(task.names)}")
        return np.asarray(task.names.index(cells[0]), dtype=task.dtype)
    if task.type == "multilabel":
        bad = [(c, v) for c, v in zip(task.names, cells) if v not in ("0", "1")]
        if bad:
            raise AnnotationError(f"{where}: {bad[0][0]} {bad[0][1]!r} is not 0 or 1 (multilabel task {task.name})")
        return np.asarray([int(v) for v in cells], dtype=task.dtype)
    return np.asarray([parse_number(task, t, v, where) for t, v in zip(task.names, cells)], dtype=task.dtype)


def parse_cells(tasks: Mapping[str, TaskSpec], row: Mapping[str, str], where: str) -> dict[str, np.ndarray | str]:
    """Every task's label in one CSV row (:func:`parse_row`); a bad cell is kept as its error message, so the
    row's other tasks stay labelled and :func:`row_label` raises the error when that task's labels are read."""
    values = {}
    for name, task in tasks.items():
        try:
            values[name] = parse_row(task, row, where)
        except AnnotationError as err:
            values[name] = str(err)
    return values


def row_label(item: Item, task: TaskSpec) -> np.ndarray:
    """The one-row label ``[1]`` / ``[1, K]`` (``task.dtype``) of ``item`` that :func:`parse_cells` parsed.

    Raises:
        AnnotationError: its cell was bad (unknown class, out of range ...), naming file and line.
    """
    value = item.values[task.name]
    if isinstance(value, str):
        raise AnnotationError(value)
    return np.asarray(value, dtype=task.dtype)[None]


def parse_number(task: TaskSpec, target: str, cell: str, where: str) -> float:
    """One regression value (a CSV cell) -> float; a blank cell is NaN (invalid).

    Raises:
        AnnotationError: not a finite number, or outside ``task.range``; the message starts with ``where``.
    """
    cell = cell.strip()
    if cell == "":
        return float("nan")
    try:
        v = float(cell)
    except ValueError:
        raise AnnotationError(f"{where}: {target} {cell!r} is not a number") from None
    if not np.isfinite(v):
        raise AnnotationError(f"{where}: {target} {cell!r} is not finite")
    if task.range is not None and not task.range[0] <= v <= task.range[1]:
        raise AnnotationError(f"{where}: {target} {v:g} is outside the declared range "
                              f"[{task.range[0]:g}, {task.range[1]:g}] of task {task.name}")
    return v


@dataclass
class Item:
    """One name to index (a person in a video; one per video for readers without sides).

    Attributes:
        video: the video's file stem.
        side: the face the name labels (``left`` / ``right`` / ``largest``; None before sides are resolved).
        files: task -> the file holding this name's labels of the task (the index's ``files``).
        splits: task -> ``train`` / ``val`` / ``test`` / None (:func:`afwpipe.folds.split_of`).
        side_from: why ``side``.
        fold: the dataset's own fold (0-based), or None to deal the video into the seeded folds.
        values: task -> labels the reader parsed while scanning (one-CSV formats), or an AnnotationError
            message for a bad row (reported by :meth:`DatasetReader.read_labels`).
    """

    video: str
    side: str | None
    files: dict
    splits: dict
    side_from: str = "name"
    fold: int | None = None
    values: dict = field(default_factory=dict)


@dataclass
class Scan:
    """What a reader found (:meth:`DatasetReader.scan`).

    Attributes:
        items: name -> :class:`Item`, every name to index.
        videos: video stem -> video file.
        header: the reader's own fields of ``index.json``, written after ``exclude`` in this order.
        orphans: names whose video is missing ``{name, files, error}``.
        warnings: ``{video, path, warning}`` rows of ``index.json``.
        fold_videos: the videos dealt into the seeded folds (:func:`afwpipe.index.assign_folds`).
        folds: the ``folds`` field of ``index.json`` (``{k, seed}``, or the dataset's own folds).
        failures: ``{video, path, error}`` rows of ``index.json``'s ``failures`` found while scanning (a table row
            that is skipped; the error names the file and line).
    """

    items: dict[str, Item]
    videos: dict[str, Path]
    header: dict
    orphans: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    fold_videos: list[str] = field(default_factory=list)
    folds: dict = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)


class DatasetReader(Protocol):
    """A dataset format (module docstring). ``name`` is its registry name."""

    name: str

    def tasks(self, spec: DatasetSpec) -> dict[str, TaskSpec]:
        """The dataset's tasks, in the order tables and files list them."""

    def scan(self, spec: DatasetSpec) -> Scan:
        """Find the names, videos, splits and label files (labels are read later, per item and task).

        Raises:
            DatasetError: the layout cannot be read at all (a missing root or label file, a bad header).
        """

    def read_labels(self, item: Item, task: TaskSpec, n_frames: int, source: str) -> tuple[np.ndarray, int]:
        """The labels of ``item`` for ``task`` and how many the file gave: ``[n_frames, ...]`` for a frame task
        (padded with the invalid marker / truncated to the decoded length), ``[1, ...]`` for a video task.

        Raises:
            AnnotationError: a bad label (unknown class, a value outside the range, a frame past the video's
                end), naming the file and line; the index records it and indexes the name unlabelled.
        """


def rel(p: Path) -> str:
    """``p`` relative to the working directory as ``index.json`` writes paths (absolute on another drive)."""
    try:
        return os.path.relpath(p)
    except ValueError:
        return str(p)


def index_tasks(index: IndexFile | None) -> dict[str, TaskSpec]:
    """The tasks of an ``index.json``: its ``tasks`` declarations (the generic readers write them), else Aff-Wild2's
    built-in AU / EXPR / VA (:data:`afwpipe.datasets.affwild2_reader.AFFWILD2_TASKS`; also without an index: None).

    Raises:
        DatasetError: a malformed ``tasks`` entry (see :func:`parse_tasks`).
    """
    if is_generic(index):
        return parse_tasks(index.reader_fields["tasks"], f"index.json of {index.dataset}: tasks")
    from .affwild2_reader import AFFWILD2_TASKS  # the affwild2 reader imports this module

    return dict(AFFWILD2_TASKS)


#: the ``train.task`` that trains every declared task in one head (as ``mtl`` trains AU, EXPR and VA together)
ALL_TASKS = "mtl"


def is_generic(index: IndexFile | None) -> bool:
    """Whether an ``index.json`` declares its own tasks (a generic reader: video_csv, frame_csv, image_csv) rather
    than Aff-Wild2's AU / EXPR / VA, whose steps (thresholds, smoothing, ABAW submission) are their own (False
    without an index: None)."""
    return index is not None and "tasks" in index.reader_fields


#: reader name -> reader class (``create_reader(name)`` builds one)
READERS = Registry("dataset reader", DatasetError)


def register_reader(name: str):
    """Class decorator: register a :class:`DatasetReader` under ``name`` (the manifest's ``reader:``)."""
    return READERS.register(name)


def create_reader(name: str) -> DatasetReader:
    """The reader registered as ``name``.

    Raises:
        DatasetError: unknown reader (the message lists the registered ones).
    """
    return READERS.create(name)
