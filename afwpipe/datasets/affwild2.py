"""Aff-Wild2 annotation reader for every ABAW edition (ABAW3 2022 .. ABAW8 2025).

Layout (docs/affwild2.md, "Annotation folders"):
``<annotations>/[edition folder/]{AU_*,EXPR_*,VA_*}/{Train_Set|Training_Set|Validation_Set}/<name>.txt``.
Challenge folders are matched by prefix (``AU_Detection_Challenge``, ``EXPR_Classification_Challenge``,
``EXPR_Recognition_Challenge``, ``VA_Estimation_Challenge`` ...), at any depth up to three below the root.

File format: line 1 is a header naming the columns; line i+1 labels decoded frame i (0-based).
- AU: 12 columns ``AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26``, values 0/1, ``-1`` = invalid.
- EXPR: 1 value per line, class index 0..7 (header lists the 8 class names), ``-1`` = invalid.
- VA: 2 columns ``valence,arousal`` in [-1, 1], ``-5`` = invalid.

Annotation names ``X_left`` / ``X_right`` label the left / right person of video ``X``; a bare ``X`` beside
one of them labels the other person (``resolve_sides``).

Editions (``find_editions``, ``choose_edition``): teams keep several ABAW annotation trees side by
side (``annotations/Third ABAW Annotations``, ``annotations/6th_ABAW_Annotations`` ...). An edition is
a folder that directly holds AU_*/EXPR_*/VA_* challenge folders; exactly one is read.

Test lists (``find_test_lists``): the organisers release, per track, the names of its test set in
``names_of_videos_in_each_test_set/<Track>_Challenge_test_set_release.txt`` (one name per line).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AnnotationError, DatasetError
from ..labels import AU_NAMES, SIDE_CHOICES, TASKS

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


def resolve_sides(names, overrides: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """The face each name labels, and why: name -> ``(side, reason)``, ``side`` one of ``SIDE_CHOICES``.

    Aff-Wild2 pairs a bare name with one side for some two-person videos (``10-60-1280x720`` with
    ``10-60-1280x720_right``, ``video59`` with ``video59_right``, ``video2`` with ``video2_left``): the bare
    name is the other person (docs/affwild2.md, "Videos and names"). Rules, in order:

    - ``overrides[name]`` (the manifest's ``sides:``): that side, reason ``"manifest"``;
    - ``X_left`` / ``X_right``: that side, reason ``"name"``;
    - ``X`` when exactly one of ``X_left`` / ``X_right`` is among ``names``: the other side, reason
      ``"sibling X_left"`` (or ``_right``);
    - ``X`` with both ``X_left`` and ``X_right`` among ``names``: ``"largest"``, reason
      ``"siblings X_left and X_right: ambiguous, set sides in the manifest"`` (a third person);
    - otherwise ``"largest"`` (the largest face, then tracked; ``afwpipe.faces.select``), reason
      ``"no sibling"``.

    Args:
        names: every name of the dataset (annotated or named by a test list).
        overrides: name -> ``left`` / ``right`` / ``largest``; names not in ``names`` are ignored here.

    Raises:
        DatasetError: an override that is not one of ``SIDE_CHOICES``.
    """
    names = set(names)
    overrides = dict(overrides or {})
    for name, side in overrides.items():
        if side not in SIDE_CHOICES:
            raise DatasetError(f"sides: {name}: {side!r} is not one of {', '.join(SIDE_CHOICES)}")
    out = {}
    for name in sorted(names):
        video, side = split_side(name)
        if name in overrides:
            out[name] = (overrides[name], "manifest")
        elif side is not None:
            out[name] = (side, "name")
        else:
            sib = [s for s in ("left", "right") if f"{video}_{s}" in names]
            if len(sib) == 1:
                out[name] = ("right" if sib[0] == "left" else "left", f"sibling {video}_{sib[0]}")
            elif sib:
                out[name] = ("largest", f"siblings {video}_left and {video}_right: ambiguous, set sides in the "
                                        "manifest")
            else:
                out[name] = ("largest", "no sibling")
    return out


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


def scan_annotations(root: str | Path, max_depth: int = 3) -> dict[str, AnnotationEntry]:
    """Index every annotation file under ``root`` by annotation name.

    ``max_depth``: how deep challenge folders are looked for (1: only children of ``root``, as for
    one edition folder of ``find_editions``).

    Returns:
        name -> AnnotationEntry, sorted by name. Files are not read here (see ``read_annotation``).

    Raises:
        DatasetError: ``root`` does not exist, or the same name is in both the train and val split.
    """
    entries: dict[str, AnnotationEntry] = {}
    for task, dirs in find_challenge_dirs(Path(root), max_depth).items():
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


def find_video_dirs(root: Path, configured: list[Path] | tuple[Path, ...], max_depth: int = 3,
                    skip: tuple[str, ...] = ("annotations", "cropped_aligned")) -> list[Path]:
    """The folders to read videos from.

    The ``configured`` folders that exist (missing ones are skipped by ``find_videos`` with a
    warning). When none exists, every folder at most ``max_depth`` levels below ``root`` (``root``
    itself included) that directly holds a video file (``VIDEO_EXTENSIONS``) is used, skipping folders
    named in ``skip`` (case-insensitive) and hidden ones; the choice is logged. Real copies keep their
    videos in ``batch1/``, ``videos/batch1/`` or flat under the root.

    Raises:
        DatasetError: no configured folder exists and no video file is found below ``root``.
    """
    configured = [Path(d) for d in configured]
    if any(d.is_dir() for d in configured):
        return configured
    found = []
    skip_l = {s.lower() for s in skip}
    base = len(Path(root).parts)
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).parts) - base
        dirnames[:] = sorted(d for d in dirnames if d.lower() not in skip_l and not d.startswith("."))
        if depth >= max_depth:
            dirnames[:] = []
        if any(Path(f).suffix.lower() in VIDEO_EXTENSIONS for f in filenames):
            found.append(Path(dirpath))
    if not found:
        raise DatasetError(f"no video folder exists ({', '.join(str(d) for d in configured)}) and no video file "
                           f"({'/'.join(VIDEO_EXTENSIONS)}) is within {max_depth} levels below {root} "
                           f"(skipping {', '.join(skip)})")
    log.warning("no configured video folder exists (%s); using the folders below %s that hold videos: %s",
                ", ".join(str(d) for d in configured), root, ", ".join(str(d) for d in found))
    return sorted(found)


# Edition number of an annotation folder name. Rules, tried in order on the folder's name, then its
# parents' (case-insensitive): an English ordinal word ("Third" -> 3), a numeric ordinal ("5th",
# "6th_ABAW" -> 5, 6), "ABAW" followed by a number ("ABAW8", "abaw_8" -> 8). Otherwise unknown.
_ORDINAL_WORDS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
                  "eighth": 8, "ninth": 9, "tenth": 10}
_EDITION_PATTERNS = (
    re.compile(r"(?<![a-z])(" + "|".join(_ORDINAL_WORDS) + r")(?![a-z])"),
    re.compile(r"(?<!\d)(\d+)(?:st|nd|rd|th)(?![a-z])"),
    re.compile(r"abaw[\s_-]*(\d+)(?!\d)"),
)
ROOT_EDITION = "."  # name of the edition held directly by the annotations root


def edition_number(name: str) -> int | None:
    """ABAW edition number of an annotation folder (path) name, by the rules above, or None."""
    for part in reversed(Path(name).parts):
        low = part.lower()
        for pat in _EDITION_PATTERNS:
            m = pat.search(low)
            if m:
                g = m.group(1)
                return _ORDINAL_WORDS.get(g) or int(g)
    return None


def find_editions(root: str | Path, max_depth: int = 3) -> dict[str, Path]:
    """Edition name -> folder, for every folder at most ``max_depth`` levels below ``root`` that directly
    holds AU_*/EXPR_*/VA_* challenge folders. The name is the folder's path relative to ``root`` (``"."``,
    ``ROOT_EDITION``, when ``root`` itself holds them). Sorted by name.

    Raises:
        DatasetError: ``root`` does not exist.
    """
    root = Path(root)
    eds = {}
    for dirs in find_challenge_dirs(root, max_depth).values():
        for d in dirs:
            rel = d.parent.relative_to(root).as_posix()
            eds[rel] = d.parent
    return dict(sorted(eds.items()))


def choose_edition(editions: dict[str, Path], wanted: str | int | None = None) -> str | None:
    """The edition to read (a key of ``editions``), or None when there is none.

    ``wanted`` (params.yaml ``dataset.edition``): an edition's folder name or relative path (exact), or
    its number (``6``, ``"6"``; see ``edition_number``). Without it: the only edition, else the one
    with the highest edition number. Filesystem order never decides.

    Raises:
        DatasetError: ``wanted`` matches no edition or several; or, without ``wanted``, several
            editions where one has no number or the highest number is shared (set ``dataset.edition``).
    """
    found = ", ".join(f"{n!r} ({edition_number(n) or '?'})" for n in editions) or "none"
    if wanted is not None:
        w = str(wanted)
        hits = [n for n in editions if w in (n, Path(n).name)]
        if not hits and w.isdigit():
            hits = [n for n in editions if edition_number(n) == int(w)]
        if len(hits) != 1:
            raise DatasetError(f"dataset.edition {wanted!r} matches {'no' if not hits else 'several'} annotation "
                               f"edition(s) ({', '.join(hits) or '-'}); found: {found}")
        return hits[0]
    if len(editions) <= 1:
        return next(iter(editions), None)
    nums = {n: edition_number(n) for n in editions}
    unknown = [n for n, k in nums.items() if k is None]
    top = max((k for k in nums.values() if k is not None), default=None)
    newest = [n for n, k in nums.items() if k == top]
    if unknown or len(newest) > 1:
        why = (f"no edition number in {', '.join(repr(n) for n in unknown)}" if unknown
               else f"edition {top} is held by {', '.join(repr(n) for n in newest)}")
        raise DatasetError(f"several annotation editions ({found}) and {why}: set dataset.edition in "
                           f"params.yaml to a folder name or edition number")
    return newest[0]


TEST_LIST_FOLDER = "names_of_videos_in_each_test_set"
_TRACK_KEYWORDS = {"au": ("action_unit", "au"), "expr": ("expression", "expr"), "va": ("valence_arousal", "va")}


def track_of_test_list(filename: str) -> str | None:
    """Track of an organisers' test-list file name, by keyword (case-insensitive): ``Action_Unit`` or a
    word ``AU`` -> au; ``Expression`` or ``EXPR`` -> expr; ``Valence_Arousal`` or ``VA`` -> va; words are
    separated by ``_``, ``-``, ``.`` or spaces. None when no or several tracks match."""
    low = Path(filename).stem.lower().replace("-", "_").replace(" ", "_")
    words = set(re.split(r"[_.]", low))
    hits = [t for t, (phrase, word) in _TRACK_KEYWORDS.items() if phrase in low or word in words]
    return hits[0] if len(hits) == 1 else None


def find_test_lists(folders: list[Path]) -> dict[str, Path]:
    """Track -> test-list file, from the first of ``folders`` whose ``names_of_videos_in_each_test_set/``
    subfolder (or which itself is one) holds ``.txt`` lists (typically the chosen edition, then the
    annotations root). Files whose track is unknown (``track_of_test_list``) are skipped with a warning.

    Raises:
        DatasetError: two files of that folder name the same track.
    """
    for folder in folders:
        lists_dir = folder if folder.name == TEST_LIST_FOLDER else folder / TEST_LIST_FOLDER
        if not lists_dir.is_dir():
            continue
        out: dict[str, Path] = {}
        for f in sorted(lists_dir.glob("*.txt")):
            track = track_of_test_list(f.name)
            if track is None:
                log.warning("%s: no single track (Action_Unit/AU, Expression/EXPR, Valence_Arousal/VA) in the "
                            "name; not read as a test list", f)
            elif track in out:
                raise DatasetError(f"{f}: a second {track.upper()} test list beside {out[track]}")
            else:
                out[track] = f
        if out:
            return out
    return {}


def read_test_list(path: str | Path) -> list[str]:
    """Names of an organisers' test list: one per line, blank lines skipped, a video extension
    (``VIDEO_EXTENSIONS``) dropped; duplicates kept once, in file order.

    Raises:
        DatasetError: the file is missing or not text.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read the test list ({e})") from e
    names = []
    for line in lines:
        n = line.strip()
        if Path(n).suffix.lower() in VIDEO_EXTENSIONS:
            n = Path(n).stem
        if n and n not in names:
            names.append(n)
    return names


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


__all__ = ["AU_NAMES", "AnnotationEntry", "ROOT_EDITION", "SIDE_CHOICES", "TEST_LIST_FOLDER", "align_length", "choose_edition",
           "edition_number", "find_challenge_dirs", "find_editions", "find_test_lists", "find_video_dirs",
           "find_videos", "read_annotation", "read_test_list", "resolve_sides", "scan_annotations", "split_side",
           "track_of_test_list"]
