"""The ``video_csv`` reader: videos plus one CSV with one row per video (DFEW, MAFW, FERV39k, Hume-Vidmimic2 ...).

Manifest entry (docs/datasets.md)::

    reader: video_csv
    root: data/clips
    videos: [videos]          # folders under root holding <video>.mp4 / .avi / .mov / .mkv
    labels: labels.csv        # under root
    tasks:
      emotion: {level: video, type: class, classes: [happy, sad, neutral]}
    folds: {k: 5, seed: 0}    # seeded folds, used when the CSV has no fold column

The CSV has a ``video`` column (the file stem), a ``split`` column (train / val / test) or a ``fold`` column
(the dataset's own folds, e.g. DFEW's five) or both, and the task columns
(:func:`afwpipe.datasets.base.columns`: the task's name for a class task, one per class for multilabel, one
per target for regression). A blank cell is a missing label. Every task is a video task (one label per
video). A video without a row is indexed unlabelled, split ``test``.
"""

from __future__ import annotations

import numpy as np

from ..errors import DatasetError
from .base import Item, Scan, TaskSpec, parse_cells, parse_tasks, register_reader, rel, row_label
from .tables import dataset_videos, generic_scan, orphan, place_videos, read_table, task_columns


def generic_tasks(spec, level: str) -> dict[str, TaskSpec]:
    """The manifest's ``tasks`` of ``spec``, all of ``level`` (the one level a generic reader labels).

    Raises:
        DatasetError: see :func:`afwpipe.datasets.base.parse_tasks`; a task of another level.
    """
    where = f"manifest datasets.{spec.name}.tasks"
    tasks = parse_tasks(spec.options.get("tasks"), where)
    other = [n for n, t in tasks.items() if t.level != level]
    if other:
        raise DatasetError(f"{where}: {', '.join(other)}: the {spec.reader} reader labels {level} tasks only")
    return tasks


@register_reader("video_csv")
class VideoCsvReader:
    """One CSV row per video (module docstring)."""

    name = "video_csv"

    def tasks(self, spec) -> dict[str, TaskSpec]:
        """The manifest's ``tasks`` (video level)."""
        return generic_tasks(spec, "video")

    def scan(self, spec) -> Scan:
        """Read the table; parse every label now (a bad cell is kept as its error for :meth:`read_labels`).

        Raises:
            DatasetError: no ``labels`` file, a missing column, a bad ``split`` / ``fold`` or a repeated video.
        """
        tasks = self.tasks(spec)
        path = spec.root / str(spec.options.get("labels") or "labels.csv")
        rows = read_table(path, ("video",) + task_columns(tasks))
        placed, own_folds = place_videos(path, rows)
        videos, video_dirs = dataset_videos(spec)
        items, orphans = {}, []
        for (line, cells), (video, p) in zip(rows, placed.items()):
            if video not in videos:
                orphans.append(orphan(video, path, line, video))
                continue
            values = parse_cells(tasks, cells, f"{rel(path)}: line {line}")
            items[video] = Item(video, "largest", dict.fromkeys(tasks, path), dict.fromkeys(tasks, p.split),
                                "one face per video", p.fold, values)
        for v in sorted(set(videos) - set(items)):
            items[v] = Item(v, "largest", {}, dict.fromkeys(tasks, "test"), "one face per video")
        return generic_scan(self.name, spec, tasks, items, (videos, video_dirs), path, orphans, own_folds)

    def read_labels(self, item: Item, task: TaskSpec, n_frames: int, source: str) -> tuple[np.ndarray, int]:
        """The video's label ``[1]`` / ``[1, K]`` parsed by :meth:`scan`.

        Raises:
            AnnotationError: the row's cell was bad (unknown class, out of range ...), naming file and line.
        """
        return row_label(item, task), 1
