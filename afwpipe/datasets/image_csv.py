"""The ``image_csv`` reader: face images plus one CSV with one row per image (AffectNet, RAF-DB, BP4D frames ...).

Manifest entry (docs/datasets.md)::

    reader: image_csv
    root: /data/AffectNet
    labels: labels.csv        # under root (default labels.csv)
    aligned: true             # the images are aligned face crops: detect resizes them, no detector
    folds: {k: 5, seed: 0}    # seeded folds over the labelled train / val images
    tasks:
      expr: {level: frame, type: class, classes: [neutral, happy, sad, surprise, fear, disgust, anger, contempt]}
      va:   {level: frame, type: regression, targets: [valence, arousal], range: [-1, 1]}

The CSV has an ``image`` column (the file's path relative to the root, ``/``-separated; a
:data:`IMAGE_EXTENSIONS` file), a ``split`` column (train / val / test) and the task columns
(:func:`afwpipe.datasets.base.columns`); a blank cell is a missing label. Every image is one item with one
frame (PyAV decodes a JPEG or PNG as a one-frame stream without audio, :mod:`afwpipe.video`), so every task is
a frame task. An item's name is the image's path without its extension, ``/`` replaced by ``__``
(``train/0001.jpg`` -> ``train__0001``): it names the item's groups in every store.

A bad row never stops the index; it is reported by file and line: a blank or non-image ``image`` cell, a
``split`` not in train / val / test or an image listed already (the same name) are ``failures`` rows and the
row is skipped; an image file that is not found is an ``orphan_annotations`` row; a bad label (unknown class,
out-of-range value) is a ``failures`` row and the image is indexed with that task unlabelled. A missing table
or column stops the index.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath

import numpy as np

from ..errors import AnnotationError, DatasetError
from ..folds import SPLITS
from .base import Item, Scan, TaskSpec, parse_cells, register_reader, rel, row_label
from .tables import generic_scan, read_table, task_columns
from .video_csv import generic_tasks

log = logging.getLogger(__name__)

#: image files the reader takes (PyAV's image2 demuxer decodes each as one frame)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
#: what replaces ``/`` of an image's relative path in its item name (a store group name has no ``/``)
NAME_SEP = "__"


def image_name(image: str) -> str:
    """The item name of an ``image`` cell: the path without its extension, ``/`` -> ``__``."""
    return NAME_SEP.join(PurePosixPath(image).with_suffix("").parts)


@register_reader("image_csv")
class ImageCsvReader:
    """One CSV row per face image, each image a one-frame item (module docstring)."""

    name = "image_csv"

    def tasks(self, spec) -> dict[str, TaskSpec]:
        """The manifest's ``tasks`` (frame level: an image is one frame)."""
        return generic_tasks(spec, "frame")

    def scan(self, spec) -> Scan:
        """Read the table; parse every label now (a bad cell is kept as its error for :meth:`read_labels`).

        Raises:
            DatasetError: no ``labels`` file, no ``image`` / ``split`` / task column, or ``aligned`` not a boolean.
        """
        tasks = self.tasks(spec)
        aligned = spec.options.get("aligned", False)
        if not isinstance(aligned, bool):
            raise DatasetError(f"manifest datasets.{spec.name}.aligned: expected true or false, got {aligned!r}")
        path = spec.root / str(spec.options.get("labels") or "labels.csv")
        rows = read_table(path, ("image", "split") + task_columns(tasks))
        items, images, orphans, failures, seen = {}, {}, [], [], {}
        for line, cells in rows:
            where = f"{rel(path)}: line {line}"
            image, split = (cells.get("image") or "").strip(), (cells.get("split") or "").strip()
            name = image_name(image) if image else ""
            problem = (f"image {image!r} is not a {' / '.join(IMAGE_EXTENSIONS)} file"
                       if PurePosixPath(image).suffix.lower() not in IMAGE_EXTENSIONS else
                       f"split {split!r} is not one of {', '.join(SPLITS)}" if split not in SPLITS else
                       f"image {image} (item {name}) is listed already on line {seen[name]}" if name in seen else None)
            if problem:
                log.error("%s: %s", where, problem)
                failures.append({"video": name or image, "path": rel(path), "error": f"{where}: {problem}"})
                continue
            seen[name] = line
            file = spec.root / image
            if not file.is_file():
                log.warning("%s: no image %s", where, file)
                orphans.append({"name": name, "files": [rel(path)], "error": f"{where}: no image {rel(file)}"})
                continue
            values = parse_cells(tasks, cells, where)
            images[name] = file
            items[name] = Item(name, "largest", dict.fromkeys(tasks, path), dict.fromkeys(tasks, split),
                               "one face per image", None, values)
        scan = generic_scan(self.name, spec, tasks, items, (images, [spec.root]), path, orphans, {})
        scan.header["aligned"] = aligned
        scan.failures = failures
        return scan

    def read_labels(self, item: Item, task: TaskSpec, n_frames: int, source: str) -> tuple[np.ndarray, int]:
        """The image's label ``[1]`` / ``[1, K]`` parsed by :meth:`scan` (``n_frames`` is 1: one decoded frame).

        Raises:
            AnnotationError: the row's cell was bad (unknown class, out of range ...), naming file and line; the
                image decodes to more than one frame (an animated file).
        """
        label = row_label(item, task)
        if n_frames != 1:
            raise AnnotationError(f"{source}: image {item.video} decodes to {n_frames} frames, not one")
        return label, 1
