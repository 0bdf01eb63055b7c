"""Aff-Wild2 annotation reader for every ABAW edition (ABAW3 2022 .. ABAW8 2025).

Layout (docs/affwild2.md, "Annotation folders"):
``<annotations>/[edition folder/]{AU_*,EXPR_*,VA_*}/{Train_Set|Training_Set|Validation_Set}/<name>.txt``.
Challenge folders are matched by prefix (``AU_Detection_Challenge``, ``EXPR_Classification_Challenge``,
``EXPR_Recognition_Challenge``, ``VA_Estimation_Challenge`` ...), at any depth up to three below the root.

File format: line 1 is a header naming the columns; line i+1 labels decoded frame i (0-based).
- AU: 12 columns ``AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26``, values 0/1, ``-1`` = invalid.
- EXPR: 1 value per line, class index 0..7 (header lists the 8 class names), ``-1`` = invalid.
- VA: 2 columns ``valence,arousal`` in [-1, 1], ``-5`` = invalid.

Annotation names ``X_left`` / ``X_right`` label the left / right person of video ``X``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AnnotationError, DatasetError
from ..labels import AU_NAMES, TASKS

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
SPLIT_FOLDERS = {"train_set": "train", "training_set": "train", "validation_set": "val"}
_DTYPES = {"au": np.int8, "expr": np.int8, "va": np.float32}


@dataclass
class AnnotationEntry:
    """One annotated person-in-video.

    Attributes:
        name: annotation file stem, e.g. ``"10-60-1280x720_right"``; the key of every store.
        video: video stem the annotation refers to (``name`` without ``_left``/``_right``).
        side: ``"left"``, ``"right"`` or None.
        split: ``"train"`` or ``"val"`` (official split, from the folder name).
        files: task (``au``/``expr``/``va``) -> annotation file path.
    """

    name: str
    video: str
    side: str | None
    split: str
    files: dict[str, Path] = field(default_factory=dict)


def split_side(name: str) -> tuple[str, str | None]:
    """``"X_left"`` -> ``("X", "left")``, ``"X_right"`` -> ``("X", "right")``, ``"X"`` -> ``("X", None)``."""
    for side in ("left", "right"):
        if name.endswith("_" + side):
            return name[: -len(side) - 1], side
    return name, None


def _task_of_folder(folder: str) -> str | None:
    up = folder.upper()
    for task, (prefix, _, _) in TASKS.items():
        if up.startswith(prefix + "_"):
            return task
    return None


def find_challenge_dirs(root: Path, max_depth: int = 3) -> dict[str, list[Path]]:
    """Return task -> challenge folders (``AU_*``, ``EXPR_*``, ``VA_*``) found under ``root``.

    Raises:
        DatasetError: ``root`` does not exist.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: annotation folder does not exist")
    found: dict[str, list[Path]] = {}
    base_depth = len(root.parts)
    for dirpath, dirnames, _ in os.walk(root):
        depth = len(Path(dirpath).parts) - base_depth
        for d in sorted(dirnames):
            task = _task_of_folder(d)
            if task:
                found.setdefault(task, []).append(Path(dirpath) / d)
        dirnames[:] = [d for d in dirnames if not _task_of_folder(d)] if depth < max_depth - 1 else []
    return found


def _parse_header(path: Path, line: str, task: str) -> None:
    _, names, _ = TASKS[task]
    cols = [c.strip() for c in line.strip().split(",") if c.strip()]
    if not cols:
        raise AnnotationError(f"{path}: empty file or empty header line")
    try:
        [float(c) for c in cols]
    except ValueError:
        pass
    else:
        raise AnnotationError(f"{path}: missing header line (line 1 is numeric: {line.strip()!r}); "
                              f"expected {','.join(names)}")
    expected = len(names)
    if [c.lower() for c in cols] != [n.lower() for n in names]:
        if len(cols) != expected:
            raise AnnotationError(f"{path}: header has {len(cols)} columns, expected {expected} "
                                  f"({','.join(names)})")
        log.warning("%s: header %r differs from the expected %r; reading by position", path, cols, names)


def read_annotation(path: str | Path, task: str) -> np.ndarray:
    """Read one annotation file.

    Args:
        path: the ``.txt`` file.
        task: ``"au"``, ``"expr"`` or ``"va"``.

    Returns:
        ``au``: int8 ``[T, 12]`` (0/1, -1 invalid); ``expr``: int8 ``[T]`` (0..7, -1 invalid);
        ``va``: float32 ``[T, 2]`` (valence, arousal in [-1, 1], -5 invalid). T = lines after the header.

    Raises:
        AnnotationError: missing header, wrong column count, non-numeric or out-of-range value;
            the message names the file and the line (1-based, header = line 1).
    """
    path = Path(path)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    _, names, invalid = TASKS[task]
    ncols = 1 if task == "expr" else len(names)
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not a text file ({e})") from e
    if not lines:
        raise AnnotationError(f"{path}: empty file (expected a header line)")
    _parse_header(path, lines[0], task)
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        s = line.strip()
        if not s:
            if all(not rest.strip() for rest in lines[i - 1:]):
                break  # trailing blank lines
            raise AnnotationError(f"{path}: line {i} is empty")
        parts = [p.strip() for p in s.split(",")]
        if len(parts) != ncols:
            raise AnnotationError(f"{path}: line {i} has {len(parts)} values, expected {ncols}")
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            raise AnnotationError(f"{path}: line {i} has a non-numeric value: {s!r}") from None
    arr = np.asarray(rows, dtype=np.float64).reshape(len(rows), ncols)
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr))[0, 0]) + 2
        raise AnnotationError(f"{path}: line {bad} has a NaN/Inf value")
    _check_range(path, arr, task, invalid)
    arr = arr[:, 0] if task == "expr" else arr
    return arr.astype(_DTYPES[task])


def _check_range(path: Path, arr: np.ndarray, task: str, invalid: float) -> None:
    valid = arr != invalid
    if task == "au":
        ok = np.isin(arr, (0, 1)) | ~valid
    elif task == "expr":
        ok = (np.isin(arr, np.arange(8))) | ~valid
    else:
        ok = ((arr >= -1) & (arr <= 1)) | ~valid
    if not ok.all():
        r, c = np.argwhere(~ok)[0]
        raise AnnotationError(f"{path}: line {r + 2} value {arr[r, c]:g} is outside the {task.upper()} range")


def scan_annotations(root: str | Path) -> dict[str, AnnotationEntry]:
    """Index every annotation file under ``root`` by annotation name.

    Returns:
        name -> AnnotationEntry, sorted by name. Files are not read here (see ``read_annotation``).

    Raises:
        DatasetError: ``root`` does not exist, or the same name is in both the train and val split.
    """
    entries: dict[str, AnnotationEntry] = {}
    for task, dirs in find_challenge_dirs(Path(root)).items():
        for cdir in dirs:
            for sdir in sorted(p for p in cdir.iterdir() if p.is_dir()):
                split = SPLIT_FOLDERS.get(sdir.name.lower())
                if split is None:
                    log.warning("%s: not a Train_Set/Training_Set/Validation_Set folder; skipped", sdir)
                    continue
                for f in sorted(sdir.glob("*.txt")):
                    video, side = split_side(f.stem)
                    e = entries.setdefault(f.stem, AnnotationEntry(f.stem, video, side, split))
                    if e.split != split:
                        raise DatasetError(f"{f}: {f.stem} is in the {split} split here but in the "
                                           f"{e.split} split in {next(iter(e.files.values()))}")
                    if task in e.files:
                        log.warning("%s: duplicate %s annotation for %s (keeping %s)", f, task, f.stem, e.files[task])
                        continue
                    e.files[task] = f
    return dict(sorted(entries.items()))


def find_videos(video_dirs: list[Path] | tuple[Path, ...]) -> dict[str, Path]:
    """Return video stem -> path for every video file in ``video_dirs`` (not recursive).

    Folders that do not exist are skipped with a warning (Aff-Wild2 copies often lack ``new_vids``);
    if none exists, DatasetError is raised naming them.
    """
    videos: dict[str, Path] = {}
    existing = [Path(d) for d in video_dirs if Path(d).is_dir()]
    if not existing:
        raise DatasetError("no video folder exists: " + ", ".join(str(d) for d in video_dirs))
    for d in video_dirs:
        d = Path(d)
        if not d.is_dir():
            log.warning("%s: video folder does not exist; skipped", d)
            continue
        for p in sorted(d.iterdir()):
            if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file():
                if p.stem in videos:
                    log.warning("%s: duplicate video name %s (keeping %s)", p, p.stem, videos[p.stem])
                    continue
                videos[p.stem] = p
    return videos


def align_length(labels: np.ndarray, n_frames: int, task: str, source: str = "") -> np.ndarray:
    """Pad (with the task's invalid marker) or truncate ``labels`` along axis 0 to ``n_frames``.

    A warning naming ``source`` is logged when the lengths differ (Aff-Wild2 annotation and decoded
    lengths often differ by a few frames; docs/affwild2.md, "Frame alignment").
    """
    t = labels.shape[0]
    if t == n_frames:
        return labels
    _, _, invalid = TASKS[task]
    if t > n_frames:
        log.warning("%s: %d annotated frames but the video decodes to %d; truncated", source, t, n_frames)
        return labels[:n_frames]
    log.warning("%s: %d annotated frames but the video decodes to %d; padded with %g", source, t, n_frames, invalid)
    pad = np.full((n_frames - t,) + labels.shape[1:], invalid, dtype=labels.dtype)
    return np.concatenate([labels, pad])


def valid_mask(labels: np.ndarray, task: str) -> np.ndarray:
    """Boolean ``[T]`` mask of frames with a valid label (AU: all 12 values valid; VA: both valid)."""
    _, _, invalid = TASKS[task]
    ok = labels != invalid
    return ok if ok.ndim == 1 else ok.all(axis=1)


__all__ = ["AU_NAMES", "AnnotationEntry", "align_length", "find_challenge_dirs", "find_videos",
           "read_annotation", "scan_annotations", "split_side", "valid_mask"]
