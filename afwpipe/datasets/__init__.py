"""Dataset readers behind a registry (:mod:`afwpipe.datasets.base`): ``affwild2`` reads the Aff-Wild2 / ABAW
annotation trees of every edition; ``video_csv``, ``frame_csv`` and ``image_csv`` read generic label tables
(docs/datasets.md).
Importing this package registers every reader."""

from . import affwild2_reader, frame_csv, image_csv, video_csv  # noqa: F401  (register every reader)
from .affwild2 import (
    AnnotationEntry,
    find_videos,
    read_annotation,
    scan_annotations,
    split_side,
)
from .base import READERS, DatasetReader, Item, Scan, TaskSpec, create_reader, register_reader

__all__ = ["READERS", "AnnotationEntry", "DatasetReader", "Item", "Scan", "TaskSpec", "create_reader", "find_videos",
           "read_annotation", "register_reader", "scan_annotations", "split_side"]
