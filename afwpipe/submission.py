"""ABAW5/6-style submission files, one per track (docs/postprocess.md, "Submission files").

Format (one comma-separated text file per track, no index column)::

    image_location,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26     (AU: 12 values in {0, 1})
    image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other (EXPR: one class index 0..7)
    image_location,valence,arousal                                             (VA: two floats in [-1, 1])

followed by rows ``<video>/<frame:05d>.jpg,<prediction>``: frame ``i`` (1-based, the image of
``cropped_aligned/<video>/``) is prediction row ``i-1``; ``<video>`` is the annotation name (``X_left``).

Which rows, per track (the rule used is printed per track, :meth:`TrackSummary.line`):

- with the organisers' example file of the track: exactly its rows, in its order. Every name of the file
  must be in the index (else :class:`SubmissionError` naming the file and the names) and have predictions.
  A name whose example rows run past its predictions repeats its last prediction (padding), one with more
  predictions than rows is cut (truncating), each with a logged warning naming the name and the counts.
- without one: every name whose split for the track (:func:`afwpipe.folds.split_of`) is in ``splits`` (default
  ``test`` only: the track's test list, which includes names another track trains on and each side
  ``X_left`` / ``X_right`` of a two-person video), in name order. A ``test`` name gets one row per decoded
  frame (``n_frames`` of the index; the ABAW test frames are the decoded frames, ``00001.jpg`` …). A name
  the track annotates (``val``, ``train``) gets one row per line of its annotation file, so a ``val`` file
  lines up with the annotations for a local check; that file is not a challenge submission.

Uni-task rule (ABAW5/6: the AU, EXPR and VA tracks are uni-task, only a track's own labels may train its
predictions): a track fed by heads of another task (``postprocess.sources``, e.g. ``mtl``) is written with
a warning naming the track and the task.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path

import numpy as np

from . import atomic, store
from .config import FromParams
from .errors import AfwpipeError, SubmissionError
from .labels import AU_NAMES, EXPR_NAMES, VA_NAMES
from .readers import read_post, read_systems
from .folds import SPLITS, split_of
from .records import IndexRecord
from .store import ENSEMBLE

log = logging.getLogger(__name__)

#: splits written without an example file: the test split (val on request, for a local check)
DEFAULT_SPLITS = ("test",)

HEADERS = {"au": ("image_location",) + AU_NAMES, "expr": ("image_location",) + EXPR_NAMES,
           "va": ("image_location",) + VA_NAMES}
#: file name per track (the ABAW challenge folder names)
FILE_NAMES = {"au": "AU_Detection_Challenge.txt", "expr": "EXPR_Recognition_Challenge.txt",
              "va": "VA_Estimation_Challenge.txt"}
_LOCATION = re.compile(r"^(?P<video>.+)/(?P<frame>\d+)\.(?:jpg|png|jpeg)$", re.IGNORECASE)


def image_location(video: str, frame: int) -> str:
    """``<video>/<frame+1:05d>.jpg`` for 0-based ``frame``."""
    return f"{video}/{frame + 1:05d}.jpg"


def format_row(track: str, pred) -> str:
    """The prediction columns of one row: AU ``0,1,…`` (12), EXPR ``4``, VA ``0.123456,-0.500000``."""
    if track == "au":
        return ",".join(str(int(x)) for x in np.asarray(pred).ravel())
    if track == "expr":
        return str(int(np.asarray(pred).ravel()[0]))
    return ",".join(f"{float(x):.6f}" for x in np.asarray(pred).ravel())


def read_example(path: Path, track: str | None = None) -> list[tuple[str, int, str]]:
    """Rows of an organisers' example file: ``(video, 0-based frame, image_location)`` in file order.

    The first line is a header (``image_location,…``); a header of another track is a warning when ``track``
    is given. Blank lines are skipped.

    Raises:
        SubmissionError: a missing file, no header, or a row whose first column is not ``<video>/<n>.jpg``
            (names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: example file does not exist")
    lines = path.read_text().splitlines()
    if not lines or not lines[0].lower().startswith("image_location"):
        raise SubmissionError(f"{path}: line 1 should be the header 'image_location,…', got {lines[0][:60]!r}"
                              if lines else f"{path}: empty example file")
    if track is not None:
        header = tuple(c.strip() for c in lines[0].split(","))
        if [h.lower() for h in header] != [h.lower() for h in HEADERS[track]]:
            log.warning("%s: header %s differs from the %s header %s; writing ours", path, ",".join(header),
                        track.upper(), ",".join(HEADERS[track]))
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        loc = line.split(",", 1)[0].strip()
        m = _LOCATION.match(loc)
        if m is None or int(m["frame"]) < 1:
            raise SubmissionError(f"{path}, line {i}: {loc!r} is not '<video>/<frame>.jpg' with frame ≥ 1")
        rows.append((m["video"], int(m["frame"]) - 1, loc))
    return rows


@dataclass
class TrackSummary:
    """What :func:`write_track` wrote: the file, its rows and names, the names padded / truncated
    (name -> (prediction frames, rows)), the rule that chose the rows and the warnings to show the user."""

    path: Path
    rows: int = 0
    videos: int = 0
    padded: dict = field(default_factory=dict)
    truncated: dict = field(default_factory=dict)
    track: str = ""
    rule: str = ""
    warnings: list = field(default_factory=list)

    def line(self) -> str:
        """E.g. ``AU: 12,345 rows from example file X (2 padded)`` or ``AU: 12,345 rows, one per decoded
        frame of 105 test names (no example file)``."""
        extra = ", ".join(f"{len(d)} {k}" for k, d in (("padded", self.padded), ("truncated", self.truncated)) if d)
        return (f"{self.track.upper() or self.path.name}: {self.rows:,} rows{self.rule}"
                + (f" ({extra})" if extra else ""))


def write_track(track: str, preds: Mapping[str, np.ndarray], path: Path, n_rows: Mapping[str, int] | None = None,
                example: Path | None = None, rows: list | None = None) -> TrackSummary:
    """Write one track's submission file.

    Args:
        track: ``au``, ``expr`` or ``va``.
        preds: name -> decisions (AU ``[T, 12]`` {0,1}, EXPR ``[T]``, VA ``[T, 2]``), frame i = row i.
        path: output file (parent folders are created).
        n_rows: name -> rows to write when there is no example file (default: its prediction count).
        example: the organisers' example file of this track; its rows decide what is written.
        rows: ``example`` already read by :func:`read_example` (else it is read here).

    Raises:
        SubmissionError: a name of the example file has no predictions (names up to five of them), or a
            malformed example file.
    """
    if track not in HEADERS:
        raise SubmissionError(f"unknown track {track!r}; use one of {', '.join(HEADERS)}")
    empty = sorted(v for v, p in preds.items() if len(p) == 0)
    if empty:
        raise SubmissionError(f"{track.upper()} predictions of {', '.join(empty[:5])} have no frame")
    path = Path(path)
    summary = TrackSummary(path, track=track)
    lines = [",".join(HEADERS[track])]
    if example is not None:
        summary.rule = f" from example file {example}"
        rows = read_example(example, track) if rows is None else rows
        missing = sorted({v for v, _, _ in rows} - set(preds))
        if missing:
            raise SubmissionError(f"{example}: {len(missing)} video(s) have no {track.upper()} predictions: "
                                  f"{', '.join(missing[:5])}{', …' if len(missing) > 5 else ''}")
        needed: dict[str, int] = {}
        for video, frame, _ in rows:
            needed[video] = max(needed.get(video, 0), frame + 1)
        for video, frame, loc in rows:
            p = preds[video]
            lines.append(f"{loc},{format_row(track, p[min(frame, len(p) - 1)])}")
        for video, n in needed.items():
            _note(summary, video, len(preds[video]), n, example)
        unused = sorted(set(preds) - set(needed))
        if unused:
            log.info("%s: %d predicted video(s) are not in the example file and are not written", example, len(unused))
        summary.rows, summary.videos = len(rows), len(needed)
    else:
        for video in sorted(preds):
            p = preds[video]
            n = int((n_rows or {}).get(video, len(p)))
            _note(summary, video, len(p), n, None)
            lines += [f"{image_location(video, i)},{format_row(track, p[min(i, len(p) - 1)])}" for i in range(n)]
            summary.rows += n
            summary.videos += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, "\n".join(lines) + "\n")
    return summary


@dataclass
class SubmitConfig(FromParams):
    """What ``afwpipe submit`` writes (``params.yaml`` section ``submit``; every default here equals params.yaml).

    Attributes:
        system: ``ensemble`` or a fold (``official``, ``0``, …) whose post-processed decisions are written.
        splits: without an example file, the names whose split for the track is one of these.
        examples: track -> the organisers' example file (its rows are written), or None.
    """

    params_section: ClassVar[str] = "submit"
    params_error: ClassVar[type[AfwpipeError]] = SubmissionError

    system: str = ENSEMBLE
    splits: list = field(default_factory=lambda: list(DEFAULT_SPLITS))
    examples: dict = field(default_factory=lambda: {"au": None, "expr": None, "va": None})

    def __post_init__(self):
        self.system = str(self.system)  # YAML reads fold 0 as an int
        self.splits = list(self.splits or DEFAULT_SPLITS)
        self.examples = {"au": None, "expr": None, "va": None, **(self.examples or {})}


def write_submission(ws: store.Workspace, system: str = ENSEMBLE, splits=DEFAULT_SPLITS,
                     examples: Mapping[str, Path | None] | None = None, out_dir: Path | None = None
                     ) -> list[TrackSummary]:
    """One file per track from the post-processed decisions (``after``) of ``<track>-<system>``; which rows
    per track: the module docstring.

    Args:
        ws: workspace with ``post/`` (``afwpipe postprocess``) and ``index.json``.
        system: ``ensemble`` or a fold (``official``, ``0``, …).
        splits: names whose split for the track is one of these are written (when no example file decides).
        examples: track -> the organisers' example file (or None).
        out_dir: folder of the files (default :attr:`Workspace.submission_dir`).

    Returns:
        one :class:`TrackSummary` per written track, with the rule used and the uni-task warnings (also logged).

    Raises:
        SubmissionError: the system is unknown for every track; a name of an example file that is not in the
            index; a name to write without post-processed predictions; or :func:`write_track`'s errors.
    """
    bad = sorted(set(splits) - set(SPLITS))
    if bad or not splits:
        raise SubmissionError(f"submit splits {list(splits)}: use one or more of {', '.join(SPLITS)}")
    meta = read_systems(ws)
    systems = meta["systems"]
    sources = (meta.get("config") or {}).get("sources") or {}
    index = ws.read_index().by_name
    out_dir = Path(out_dir) if out_dir is not None else ws.submission_dir
    examples = examples or {}
    done = []
    for track in HEADERS:
        name = f"{track}-{system}"
        if name not in systems:
            continue
        example = examples.get(track)
        rows, n_rows, rule = None, None, ""
        if example is not None:
            rows = read_example(example, track)
            names = list(dict.fromkeys(v for v, _, _ in rows))
            unknown = [v for v in names if v not in index]
            if unknown:
                raise SubmissionError(f"{example}: {len(unknown)} name(s) are not in the index {ws.index}: "
                                      f"{', '.join(unknown[:5])}{', …' if len(unknown) > 5 else ''}")
        else:
            names = sorted(v for v, r in index.items() if split_of(r, track) in set(splits))
            n_rows = {v: _rows_without_example(index[v], track) for v in names}
            rule = _rule(track, names, index, splits)
        have = set(systems[name]["videos"])
        unpredicted = [v for v in names if v not in have]
        if unpredicted:
            raise SubmissionError(
                f"{ws.post_systems}: system {name} has no predictions of {len(unpredicted)} name(s) to write "
                f"({', '.join(unpredicted[:5])}{', …' if len(unpredicted) > 5 else ''}); `afwpipe predict` "
                f"skips names without complete features (see its warnings), then rerun `afwpipe postprocess`")
        preds = {v: read_post(ws, name, v)["after"] for v in names}
        summary = write_track(track, preds, out_dir / FILE_NAMES[track], n_rows, example, rows)
        summary.rule = summary.rule or rule
        source = sources.get(track, track)
        if source != track:
            summary.warnings.append(
                f"{track.upper()} track: predictions come from {source} heads (postprocess.sources.{track} = "
                f"{source}), trained on labels other than {track.upper()}; ABAW's {track.upper()} track is "
                f"uni-task (only {track.upper()} labels may train its predictions)")
            log.warning("%s", summary.warnings[-1])
        done.append(summary)
    if not done:
        have = sorted({m["fold"] for m in systems.values()})
        raise SubmissionError(f"no post-processed system {system!r}; systems of {ws.post_systems}: {', '.join(have)}")
    return done


def _rows_without_example(rec: IndexRecord, track: str) -> int:
    """Rows of a name without an example file: its annotation's line count when ``track`` annotates it,
    else (a test name) its decoded frame count."""
    if split_of(rec, track) in ("train", "val"):
        return int(rec.annotation_frames.get(track) or rec.n_frames)
    return rec.n_frames


def _rule(track: str, names, index: Mapping[str, IndexRecord], splits) -> str:
    """``, one per decoded frame of 105 test names (no example file)`` (and the val / train names)."""
    parts = []
    for split in (s for s in SPLITS if s in splits):
        n = sum(split_of(index[v], track) == split for v in names)
        per = "decoded frame" if split == "test" else "annotation line"
        parts.append(f"one per {per} of {n} {split} name{'s' if n != 1 else ''}")
    return ", " + ", ".join(parts) + " (no example file)"


def _note(summary: TrackSummary, video: str, have: int, rows: int, example: Path | None) -> None:
    where = f" of {example}" if example is not None else ""
    if rows > have:
        summary.padded[video] = (have, rows)
        log.warning("submission %s: %s has %d predicted frames but %d rows%s; padding with its last prediction",
                    summary.path.name, video, have, rows, where)
    elif rows < have:
        summary.truncated[video] = (have, rows)
        log.warning("submission %s: %s has %d predicted frames but %d rows%s; truncating",
                    summary.path.name, video, have, rows, where)


def main(ws: store.Workspace, cfg: SubmitConfig, *, out_dir: Path | None = None) -> list[TrackSummary]:
    """``afwpipe submit``: :func:`write_submission`, then per track the rule that chose its rows, the file
    and any uni-task warning printed."""
    examples = {t: Path(f) for t, f in cfg.examples.items() if f}
    summaries = write_submission(ws, cfg.system, tuple(cfg.splits), examples, out_dir)
    for s in summaries:
        print(f"submit: {s.line()} -> {s.path}")
        for w in s.warnings:
            print(f"submit: WARNING: {w}")
    return summaries


__all__ = ["DEFAULT_SPLITS", "FILE_NAMES", "HEADERS", "SubmitConfig", "TrackSummary", "main", "format_row", "image_location", "read_example", "write_submission",
           "write_track"]
