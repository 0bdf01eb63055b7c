"""Wrong faces out: frames marked invalid for training and evaluation, while the face store keeps its crops.

Netease Fuxi's ABAW entries remove wrongly detected face crops before training. afwpipe expresses that as two
rules of a dataset in ``data_manifest.yaml``::

    exclude:
      frames:                  # (video, frame range): 0-based decoded frame indices, first and last included
        - {video: noface_face, frames: [160, 168]}
      score_below: 0.9         # a frame with a face whose detector score is below this floor (null: off)

``video`` is an index name (``X_left``) or a video file stem (``X``: every name of that video). The index step
(:mod:`afwpipe.index`) checks each range against the index -- an unknown video or a range past the video's
end is a :class:`~afwpipe.errors.DatasetError` naming the manifest entry -- and records per name
``excluded_frames`` (the ranges) and, in ``index.json["exclude"]``, the ranges and the floor. The index runs
before face detection, so the floor's frames are found where labels are read: :func:`afwpipe.readers.load_labels` (the reader
of training, post-processing, evaluation and fine-tuning) sets every label of an excluded frame to its invalid
marker (AU ``-1``, EXPR ``-1``, VA ``-5``), reading ``faces.zarr/<name>/score`` and ``present`` when the floor
is set. Frames without a face are not touched by the floor (they keep their labels and take the nearest face's
features, as before). ``labels.zarr`` and ``faces.zarr`` stay as written: removing an exclusion needs only a
rerun of the index, never of detection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from . import store
from .errors import DatasetError, TrainError
from .labels import TASKS
from .records import IndexFile


@dataclass(frozen=True)
class FrameRange:
    """Frames ``first..last`` (0-based decoded frame indices, both included) of ``video`` (an index name or a
    video file stem)."""

    video: str
    first: int
    last: int


def parse_exclude(value, where: str) -> tuple[tuple[FrameRange, ...], float | None]:
    """The ``exclude:`` entry of a manifest dataset -> (frame ranges, detector-score floor or None).

    Args:
        value: ``{"frames": [{"video": str, "frames": [first, last]}, ...], "score_below": float | None}`` or None.
        where: the entry's place for messages (``data_manifest.yaml: datasets.sample.exclude``).

    Raises:
        DatasetError: an unknown key, a range that is not two whole numbers ``0 <= first <= last``, an entry
            without ``video``, or a floor outside [0, 1].
    """
    if value is None:
        return (), None
    if not isinstance(value, Mapping):
        raise DatasetError(f"{where}: expected a mapping with frames and score_below, got {value!r}")
    bad = sorted(set(value) - {"frames", "score_below"})
    if bad:
        raise DatasetError(f"{where}: unknown key(s) {', '.join(map(str, bad))}; known: frames, score_below")
    ranges = []
    for i, item in enumerate(value.get("frames") or []):
        here = f"{where}.frames[{i}]"
        if not isinstance(item, Mapping) or not item.get("video") or set(item) != {"video", "frames"}:
            raise DatasetError(f"{here}: expected {{video: NAME, frames: [first, last]}}, got {item!r}")
        span = item["frames"]
        if (not isinstance(span, Sequence) or isinstance(span, str) or len(span) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in span)):
            raise DatasetError(f"{here} ({item['video']}): frames must be [first, last], two whole frame numbers, "
                               f"got {span!r}")
        first, last = span
        if not 0 <= first <= last:
            raise DatasetError(f"{here} ({item['video']}): frames [{first}, {last}] must satisfy 0 <= first <= last "
                               "(0-based decoded frame indices, both included)")
        ranges.append(FrameRange(str(item["video"]), int(first), int(last)))
    floor = value.get("score_below")
    if floor is not None:
        try:
            floor = float(floor)
        except (TypeError, ValueError):
            raise DatasetError(f"{where}.score_below: {floor!r} is not a number") from None
        if not 0.0 <= floor <= 1.0:
            raise DatasetError(f"{where}.score_below: {floor} is not a detector score in [0, 1]")
    return tuple(ranges), floor


def resolve_ranges(ranges: Sequence[FrameRange], records: Sequence[tuple[str, str, int]],
                   where: str) -> dict[str, list[list[int]]]:
    """Index name -> its excluded ranges ``[[first, last], ...]`` (in manifest order).

    Args:
        ranges: :func:`parse_exclude`'s ranges.
        records: ``(name, video, n_frames)`` of each name the index will hold.
        where: the manifest entry for messages.

    Raises:
        DatasetError: a range names no index name and no video file stem (the message lists a few known
            names), or ends at or past the video's last frame (``n_frames``).
    """
    by_name = {r[0]: [r] for r in records}
    by_video: dict[str, list[tuple[str, str, int]]] = {}
    for r in records:
        by_video.setdefault(r[1], []).append(r)
    out: dict[str, list[list[int]]] = {}
    for i, fr in enumerate(ranges):
        recs = by_name.get(fr.video) or by_video.get(fr.video)
        if not recs:
            known = sorted(by_name)
            raise DatasetError(f"{where}.frames[{i}]: unknown video {fr.video!r}: no name or video file of the index "
                               f"({', '.join(known[:8])}{', …' if len(known) > 8 else ''})")
        for name, _, n in recs:
            if fr.last >= n:
                raise DatasetError(f"{where}.frames[{i}]: {fr.video} frames [{fr.first}, {fr.last}] run past the "
                                   f"video's end: {name} has {n} frames (0..{n - 1})")
            out.setdefault(name, []).append([fr.first, fr.last])
    return out


def excluded_mask(n_frames: int, ranges: Sequence[Sequence[int]] = (), floor: float | None = None,
                  score: np.ndarray | None = None, present: np.ndarray | None = None) -> np.ndarray:
    """``[T]`` bool, True where a frame is excluded: inside one of ``ranges`` (``[first, last]``, both included)
    or, with ``floor``, a frame with a face (``present``) whose detector ``score`` is below ``floor``.

    Raises:
        ValueError: ``floor`` is set without ``score`` / ``present`` of ``n_frames`` frames.
    """
    mask = np.zeros(int(n_frames), bool)
    for first, last in ranges:
        mask[int(first):int(last) + 1] = True
    if floor is not None:
        if score is None or present is None or len(score) != n_frames or len(present) != n_frames:
            raise ValueError(f"the score floor needs score and present of {n_frames} frames")
        mask |= np.asarray(present, bool) & (np.asarray(score, np.float64) < floor)
    return mask


def invalidate(labels: Mapping[str, np.ndarray], mask: np.ndarray, markers: Mapping[str, float] | None = None
               ) -> dict[str, np.ndarray]:
    """Copies of one video's labels (task -> array) with every label of the frames of ``mask`` set to the task's
    invalid marker (:data:`afwpipe.labels.TASKS`: AU ``-1`` on all twelve, EXPR ``-1``, VA ``-5``; or
    ``markers[task]``, a declared task's, :class:`afwpipe.datasets.base.TaskSpec`)."""
    out = {}
    for task, arr in labels.items():
        arr = np.array(arr, copy=True)
        n = min(len(arr), len(mask))
        arr[:n][mask[:n]] = TASKS[task][2] if markers is None else markers[task]
        out[task] = arr
    return out


def frame_mask(ws: store.Workspace, index: IndexFile | None, name: str, n_frames: int) -> np.ndarray | None:
    """The excluded frames of index name ``name`` (:func:`excluded_mask` from ``index.json``'s record and floor,
    and ``faces.zarr`` scores when the floor is set), or None when nothing of the index excludes any frame.

    Raises:
        TrainError: the floor is set but ``faces.zarr`` has no complete group for ``name`` (run detect), or its
            ``score`` / ``present`` length differs from the labels'.
    """
    rec = None if index is None else index.by_name.get(name)
    ranges = [] if rec is None else rec.excluded_frames
    floor = None if index is None else index.score_below
    if not ranges and floor is None:
        return None
    score = present = None
    if floor is not None:
        if not store.is_complete(ws.faces, name):
            raise TrainError(f"{ws.faces}: no complete faces of {name}; the manifest's exclude.score_below "
                             f"({floor}) needs its detector scores (run `afwpipe detect` / `dvc repro detect`)")
        score = store.read_array(ws.faces, name, "score")
        present = store.read_array(ws.faces, name, "present")
        if len(score) != n_frames or len(present) != n_frames:
            raise TrainError(f"{ws.faces}/{name}: {len(score)} detector scores for {n_frames} labelled frames; "
                             "rerun detect")
    return excluded_mask(n_frames, ranges, floor, score, present)


__all__ = ["FrameRange", "excluded_mask", "frame_mask", "invalidate", "parse_exclude", "resolve_ranges"]
