"""Typed records of the files steps hand to each other: ``index.json`` (:class:`IndexFile` of
:class:`IndexRecord`) and a trained head's ``model.pt`` (:class:`Checkpoint`).

Each record class has ``VERSION``, ``to_json()`` (a plain dict of JSON types, with tensors for a checkpoint,
that holds ``"version"``) and ``from_json(d, where)``, which checks every field and raises
:class:`~afwpipe.errors.RecordError` naming ``where`` (the file), the record and the field. Readers read
attributes (``rec.n_frames``), never string keys.

Versions and old files:

* a file without ``"version"`` (written before this module) is read as version 1 when its fields fit, so
  the stores of an existing ``work/`` keep loading; a version this afwpipe does not know is an error saying
  to rerun the step that wrote the file (``afwpipe index``, ``afwpipe train``).
* the records of ``index.json`` carry no version of their own: the file's ``version`` is theirs
  (:attr:`IndexRecord.VERSION` = :attr:`IndexFile.VERSION`).

Unknown keys (a newer writer's, or a reader's own): the top-level keys of ``index.json`` other than the
fields of :class:`IndexFile` are the dataset reader's fields (``reader_fields``, e.g. ``cropped_aligned``,
``video_dirs``, ``editions``, ``test_lists`` of affwild2; ``reader``, ``tasks``, ``labels``, ``video_dirs`` of
video_csv / frame_csv) and unknown keys of a record or checkpoint are kept in its ``extra``; both are written
back unchanged, in order, after the known fields (a record's) or where the index writes them (the reader's).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from . import __version__, atomic
from .errors import RecordError

if TYPE_CHECKING:
    import torch

#: JSON / checkpoint value kinds a field may hold (``int`` excludes bool; a ``float`` field takes an int)
_KINDS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "dict": (dict,), "list": (list,),
          "list|dict": (list, dict)}


def _check(value, kind: str, where: str) -> None:
    """Raise when ``value`` is not of ``kind`` (``"int"``, ``"str?"``: the ``?`` allows None)."""
    if value is None and kind.endswith("?"):
        return
    if kind.rstrip("?") == "tensor":
        import torch  # only a checkpoint holds tensors: reading index.json needs no torch

        types = (torch.Tensor,)
    else:
        types = _KINDS[kind.rstrip("?")]
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        raise RecordError(f"{where}: expected {kind.rstrip('?')}{' or null' if kind.endswith('?') else ''}, "
                          f"got {type(value).__name__} {value!r:.60}")


def _version(d: dict, cls, where: str, rerun: str) -> None:
    v = d.get("version", 1)  # no version: a file written before versions, read as version 1
    if v != cls.VERSION:
        raise RecordError(f"{where}: {cls.__name__} version {v!r} is not supported (this afwpipe reads version "
                          f"{cls.VERSION}); {rerun}")


def _parse(cls, d, where: str, skip: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """The known fields of ``cls`` in ``d`` (checked against ``cls.KINDS``; a field with a default may be missing)
    and the unknown keys (minus ``version`` and ``skip``).

    Raises:
        RecordError: ``d`` is not a mapping, a field without a default is missing, or a field has a wrong type.
    """
    if not isinstance(d, dict):
        raise RecordError(f"{where}: expected a mapping of fields, got {type(d).__name__}")
    known, have = {}, set()
    for f in fields(cls):
        if f.name == "extra" or f.name in skip:
            continue
        if f.name not in d:
            if f.default is MISSING and f.default_factory is MISSING:
                raise RecordError(f"{where}: missing field {f.name!r}")
            continue
        _check(d[f.name], cls.KINDS[f.name], f"{where}: field {f.name!r}")
        known[f.name] = d[f.name]
        have.add(f.name)
    extra = {k: v for k, v in d.items() if k not in have and k != "version" and k not in skip}
    return known, extra


@dataclass(frozen=True, kw_only=True)
class IndexRecord:
    """One name of ``index.json`` (``videos[i]``): a person in a video (one per video for readers without
    sides, and for ``afwpipe analyze``'s ad-hoc index).

    Attributes:
        name: the name (annotation file stem; ``X_left`` / ``X_right`` for the two people of video ``X``).
        video: the video's file stem.
        path: the video file, relative to the working directory (absolute on another drive; analyze: as given).
        side: the face the name labels: ``left`` / ``right`` / ``largest``, None when unresolved (analyze).
        side_from: why ``side`` (``name``, ``no sibling``, ...; :mod:`afwpipe.datasets.affwild2_reader`).
        splits: task -> ``train`` / ``val`` / ``test`` / None, the official split per task
            (:func:`afwpipe.folds.split_of`); None in an index written before per-task splits.
        split: ``split_of(rec, "mtl")``, the summary over the tasks (None: no task uses the name).
        fold: the seeded (or the dataset's own) fold, 0-based; -1 for a name in no fold.
        n_frames, fps, width, height, rotation, duration, vfr, has_audio, audio_rate, audio_channels,
            declared_frames, declared_duration, warning, start_time, audio_start, audio_offset: what
            :func:`afwpipe.video.probe_video` found (:class:`afwpipe.video.VideoInfo`: frames, frames/s, pixels,
            degrees, s, Hz, s on the container clock).
        annotation_frames: task -> rows the label file gave (before padding / cutting to ``n_frames``).
        labelled: task -> valid labelled frames (a video task: 0 or 1).
        files: task -> label file, relative to the working directory.
        excluded_frames: ``[[first, last], ...]`` 0-based inclusive frame ranges of the manifest's ``exclude``.
        stamp: analyze's ad-hoc index only: ``{path, size, mtime_ns, inode, ctime_ns}`` of the probed file
            (:func:`afwpipe.analyze.index_videos`); None (and not written) otherwise.
        extra: keys this version does not know, kept and written back after the fields.
    """

    VERSION: ClassVar[int] = 1
    KINDS: ClassVar[dict] = {
        "name": "str", "video": "str", "path": "str", "side": "str?", "side_from": "str", "splits": "dict?",
        "split": "str?", "fold": "int", "n_frames": "int", "fps": "float", "width": "int", "height": "int",
        "rotation": "int", "duration": "float", "vfr": "bool", "has_audio": "bool", "audio_rate": "int",
        "audio_channels": "int", "declared_frames": "int", "declared_duration": "float", "warning": "str?",
        "start_time": "float", "audio_start": "float?", "audio_offset": "float?", "annotation_frames": "dict",
        "labelled": "dict", "files": "dict", "excluded_frames": "list", "stamp": "dict?"}

    name: str
    video: str
    path: str
    side: str | None
    side_from: str = "name"
    splits: dict | None = None
    split: str | None = None
    fold: int = -1
    n_frames: int
    fps: float
    width: int
    height: int
    rotation: int
    duration: float
    vfr: bool
    has_audio: bool
    audio_rate: int
    audio_channels: int
    declared_frames: int = 0
    declared_duration: float = 0.0
    warning: str | None = None
    start_time: float = 0.0
    audio_start: float | None = None
    audio_offset: float | None = None
    annotation_frames: dict = field(default_factory=dict)
    labelled: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    excluded_frames: list = field(default_factory=list)
    stamp: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The record as ``index.json`` writes it: the fields in order (``stamp`` only when set), then ``extra``.
        No ``version``: the file's is the record's."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("stamp", "extra")}
        if self.stamp is not None:
            d["stamp"] = self.stamp
        return {**d, **self.extra}

    @classmethod
    def from_json(cls, d, where: str) -> IndexRecord:
        """Parse one record; ``where`` names the file (the record's ``name`` is added to messages).

        Raises:
            RecordError: not a mapping, a missing field (``splits``, ``side_from``, the label fields and the
                probe fields :class:`afwpipe.video.VideoInfo` defaults may be missing), a wrong type, or a
                ``version`` other than :attr:`VERSION`.
        """
        name = d.get("name") if isinstance(d, dict) else None
        at = f"{where}: record {name!r}" if isinstance(name, str) else where
        if isinstance(d, dict) and "version" in d:
            _version(d, cls, at, "rerun `afwpipe index`")
        known, extra = _parse(cls, d, at)
        return cls(**known, extra=extra)


@dataclass(frozen=True, kw_only=True)
class IndexFile:
    """The whole ``index.json`` (written by :func:`afwpipe.index.build_index`; ``afwpipe analyze`` writes an
    ad-hoc one with ``dataset: analyze`` and no labels).

    Attributes:
        dataset: the manifest's dataset name (``analyze`` for the ad-hoc index).
        records: the indexed names, sorted by name (JSON key ``videos``).
        root: the dataset root relative to the working directory (None: analyze).
        folds: ``{k, seed}`` of the seeded folds, or the dataset's own folds.
        scenes: scene -> member names / videos (the manifest's ``scenes``).
        exclude_frames: the manifest's ``exclude.frames`` as ``[video, first, last]`` rows (JSON
            ``exclude.frames``; :mod:`afwpipe.exclusions`).
        score_below: the detector-score floor of ``exclude`` (JSON ``exclude.score_below``), or None.
        reader_fields: the dataset reader's own top-level fields, in order (module docstring).
        failures: ``{video, path, error}`` rows (a video that did not probe, a bad label file).
        orphan_annotations: ``{name, files, error}`` rows, labels without a video.
        warnings: ``{video, path, warning}`` rows.
    """

    VERSION: ClassVar[int] = 1
    KINDS: ClassVar[dict] = {"dataset": "str", "records": "list", "root": "str?", "folds": "dict", "scenes": "dict",
                             "exclude_frames": "list", "score_below": "float?", "failures": "list",
                             "orphan_annotations": "list", "warnings": "list", "reader_fields": "dict"}

    dataset: str
    records: list[IndexRecord]
    root: str | None = None
    folds: dict = field(default_factory=dict)
    scenes: dict = field(default_factory=dict)
    exclude_frames: list = field(default_factory=list)
    score_below: float | None = None
    reader_fields: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    orphan_annotations: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    def to_json(self) -> dict:
        """``index.json`` as written: ``version``, ``dataset``, ``root``, ``folds``, ``scenes``, ``exclude``, the
        reader's fields, ``videos``, ``failures``, ``orphan_annotations``, ``warnings``."""
        return {"version": self.VERSION, "dataset": self.dataset, "root": self.root, "folds": self.folds,
                "scenes": self.scenes, "exclude": {"frames": self.exclude_frames, "score_below": self.score_below},
                **self.reader_fields, "videos": [r.to_json() for r in self.records], "failures": self.failures,
                "orphan_annotations": self.orphan_annotations, "warnings": self.warnings}

    @classmethod
    def from_json(cls, d, where: str) -> IndexFile:
        """Parse ``index.json`` (``where``: its path, named in every message).

        Raises:
            RecordError: a missing ``dataset`` or ``videos``, a wrong type, a bad record
                (:meth:`IndexRecord.from_json`), or an unsupported ``version`` (rerun ``afwpipe index``).
        """
        if not isinstance(d, dict):
            raise RecordError(f"{where}: expected a mapping of fields, got {type(d).__name__}")
        _version(d, cls, where, "rerun `afwpipe index`")
        if "videos" not in d:
            raise RecordError(f"{where}: missing field 'videos'")
        _check(d["videos"], "list", f"{where}: field 'videos'")
        exclude = d.get("exclude") or {}
        _check(exclude, "dict", f"{where}: field 'exclude'")
        body = {k: v for k, v in d.items() if k not in ("videos", "exclude")}
        body.update(exclude_frames=list(exclude.get("frames") or []), score_below=exclude.get("score_below"))
        known, reader_fields = _parse(cls, body, where, skip=("records",))
        records = [IndexRecord.from_json(r, f"{where}: videos[{i}]") for i, r in enumerate(d["videos"])]
        return cls(**known, records=records, reader_fields=reader_fields)

    @cached_property
    def by_name(self) -> dict[str, IndexRecord]:
        """name -> record."""
        return {r.name: r for r in self.records}

    def names(self) -> list[str]:
        """The indexed names, in the file's order."""
        return [r.name for r in self.records]

    def save(self, path: str | Path) -> Path:
        """Write ``to_json()`` to ``path`` atomically (indent 1, trailing newline, as ``index.json`` always was)."""
        atomic.write_text(path, json.dumps(self.to_json(), indent=1) + "\n")
        return Path(path)


def load_index(path: str | Path) -> IndexFile:
    """Read ``index.json`` at ``path``.

    Raises:
        FileNotFoundError: no file (the message says to run ``afwpipe index``).
        RecordError: not JSON, or see :meth:`IndexFile.from_json`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no index; run `afwpipe index` (or `dvc repro index`) first")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: not JSON ({e}); rerun `afwpipe index`") from None
    return IndexFile.from_json(d, str(path))


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A trained head, ``models/<task>-<head>-<fold>[-<scene>]/model.pt`` (``torch.save`` of :meth:`to_json`;
    loads with ``torch.load(weights_only=True)``).

    Attributes:
        state_dict: parameter name -> tensor, the kept epoch's weights.
        config: the exact :class:`afwpipe.train.TrainConfig` as a dict (``dataclasses.asdict``), with its
            ``speech_gate``, which prediction applies again (:mod:`afwpipe.clips.gate`).
        in_dims: encoder -> feature width D.
        tasks: the trained tasks: a list (au / expr / va) or task -> output spec (a dataset's declared tasks).
        encoders: ``{name, ...store identity}`` of each encoder used, in concatenation order.
        stats: encoder -> ``{mean, std}`` float tensors ``[D]`` of the standardisation, or None.
        au_pos_weight: float tensor ``[12]`` of the AU loss, or None.
        expr_class_weight: float tensor ``[8]`` of the EXPR loss, or None.
        best_epoch: the kept epoch, 1-based.
        best_score: validation score of the kept weights (None without a validation).
        train_videos: names whose frames fit the weights.
        val_videos: the fold's validation names.
        selected_on: names whose frames chose the epoch (``[]`` for a fixed epoch count; :mod:`afwpipe.train`).
        epoch_selection: how the epoch was chosen, or None.
        afwpipe_version: the afwpipe that trained it.
        extra: keys this version does not know, kept and written back.
    """

    VERSION: ClassVar[int] = 1
    KINDS: ClassVar[dict] = {
        "state_dict": "dict", "config": "dict", "in_dims": "dict", "tasks": "list|dict", "encoders": "list",
        "stats": "dict?", "au_pos_weight": "tensor?", "expr_class_weight": "tensor?", "best_epoch": "int",
        "best_score": "float?", "train_videos": "list", "val_videos": "list", "selected_on": "list",
        "epoch_selection": "str?", "afwpipe_version": "str"}

    state_dict: dict
    config: dict
    in_dims: dict
    tasks: list | dict
    encoders: list
    stats: dict | None = None
    au_pos_weight: torch.Tensor | None = None
    expr_class_weight: torch.Tensor | None = None
    best_epoch: int
    best_score: float | None = None
    train_videos: list
    val_videos: list
    selected_on: list = field(default_factory=list)
    epoch_selection: str | None = None
    afwpipe_version: str = __version__
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The dict ``torch.save`` writes: ``version``, the fields in order, then ``extra`` (tensors stay tensors)."""
        return {"version": self.VERSION, **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"},
                **self.extra}

    @classmethod
    def from_json(cls, d, where: str) -> Checkpoint:
        """Parse a loaded checkpoint dict; ``where`` names the file.

        Raises:
            RecordError: a missing field, a wrong type, or an unsupported ``version`` (retrain the head).
        """
        if not isinstance(d, dict):
            raise RecordError(f"{where}: expected a mapping of fields, got {type(d).__name__}")
        _version(d, cls, where, "retrain the head (`afwpipe train` / `dvc repro train`)")
        known, extra = _parse(cls, d, where)
        return cls(**known, extra=extra)

    def save(self, path: str | Path) -> Path:
        """``torch.save(self.to_json())`` to ``path`` atomically."""
        import torch

        with atomic.open_atomic(path, "wb") as f:
            torch.save(self.to_json(), f)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
        """``torch.load(path, map_location=device, weights_only=True)`` parsed (:meth:`from_json`)."""
        import torch

        return cls.from_json(torch.load(Path(path), map_location=device, weights_only=True), str(path))


__all__ = ["Checkpoint", "IndexFile", "IndexRecord", "load_index"]
