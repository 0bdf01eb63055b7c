"""Dataset readers. ``affwild2`` reads the Aff-Wild2 / ABAW annotation trees of every edition."""

from .affwild2 import (
    AnnotationEntry,
    find_videos,
    read_annotation,
    scan_annotations,
    split_side,
)

__all__ = ["AnnotationEntry", "find_videos", "read_annotation", "scan_annotations", "split_side"]
