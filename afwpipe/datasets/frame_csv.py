"""The ``frame_csv`` reader: one CSV of per-frame labels per video (AFEW-VA, BAH's frame labels ...).

Manifest entry (docs/datasets.md)::

    reader: frame_csv
    root: data/afew_va
    videos: [videos]
    labels: labels            # folder under root holding <video>.csv
    splits: splits.csv        # optional: video + split and/or fold columns (as video_csv's)
    tasks:
      valence: {level: frame, type: regression, targets: [valence], range: [-10, 10]}

``labels/<video>.csv`` has a ``frame`` column (1-based decoded frame) and the task columns
(:func:`afwpipe.datasets.base.columns`); frames not listed are invalid. Without a ``splits`` table, a video
with a label file is ``train`` (dealt into the seeded folds) and one without is ``test``.
"""

from __future__ import annotations

import numpy as np

from ..errors import AnnotationError, DatasetError
from .base import Item, Scan, TaskSpec, parse_row, register_reader, rel
from .tables import dataset_videos, generic_scan, orphan, place_videos, read_table, task_columns
from .video_csv import generic_tasks


@register_reader("frame_csv")
class FrameCsvReader:
    """One label CSV per video (module docstring)."""

    name = "frame_csv"

    def tasks(self, spec) -> dict[str, TaskSpec]:
        """The manifest's ``tasks`` (frame level)."""
        return generic_tasks(spec, "frame")

    def scan(self, spec) -> Scan:
        """Find ``labels/<video>.csv`` per video and the optional ``splits`` table (files are read later).

        Raises:
            DatasetError: the ``labels`` folder is missing; a bad ``splits`` table (see ``place_videos``).
        """
        tasks = self.tasks(spec)
        folder = spec.root / str(spec.options.get("labels") or "labels")
        if not folder.is_dir():
            raise DatasetError(f"{folder}: no label folder (labels/<video>.csv) of dataset {spec.name!r}")
        files = {f.stem: f for f in sorted(folder.glob("*.csv"))}
        videos, video_dirs = dataset_videos(spec)
        placed, own_folds = {}, {}
        if spec.options.get("splits"):
            table = spec.root / str(spec.options["splits"])
            placed, own_folds = place_videos(table, read_table(table, ("video",)))
        orphans = [orphan(v, f, None, v) for v, f in files.items() if v not in videos]
        items = {}
        for v in sorted(videos):
            p = placed.get(v)
            split = p.split if p else ("train" if v in files else "test")
            own = dict.fromkeys(tasks, files[v]) if v in files else {}
            items[v] = Item(v, "largest", own, dict.fromkeys(tasks, split), "one face per video",
                            p.fold if p else None)
        return generic_scan(self.name, spec, tasks, items, (videos, video_dirs), folder, orphans, own_folds)

    def read_labels(self, item: Item, task: TaskSpec, n_frames: int, source: str) -> tuple[np.ndarray, int]:
        """``[n_frames, ...]`` labels of ``task`` from the video's CSV; unlisted frames keep the invalid marker.

        Raises:
            AnnotationError: a missing column, a frame that is not a positive integer, listed twice, or past
                the video's end (``n_frames`` decoded frames), or a bad value; the message names file and line.
        """
        path = item.files[task.name]
        rows = read_table(path, ("frame",) + task_columns({task.name: task}), error=AnnotationError)
        lab, seen = task.empty(n_frames), {}
        for line, cells in rows:
            cell = (cells.get("frame") or "").strip()
            if not cell.isdigit() or int(cell) < 1:
                raise AnnotationError(f"{rel(path)}: line {line}: frame {cell!r} is not a 1-based frame number")
            f = int(cell)
            if f > n_frames:
                raise AnnotationError(f"{rel(path)}: line {line}: frame {f} is past the video's end "
                                      f"({n_frames} decoded frames)")
            if f in seen:
                raise AnnotationError(f"{rel(path)}: line {line}: frame {f} is listed already on line {seen[f]}")
            seen[f] = line
            lab[f - 1] = parse_row(task, cells, f"{rel(path)}: line {line}")
        return lab, len(rows)
