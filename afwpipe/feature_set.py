"""The feature set step: one small file that changes exactly when the features training reads change.

DVC reruns a stage when one of its deps changes, and a deps list cannot name "the stores of the encoders
in ``train.features``" (a params list does not expand into deps). A train stage that depended on the
whole ``features/`` folder would therefore rerun, with every stage after it, whenever any encoder is
added or re-extracted, even one it never reads (``extract@vad``, a new backbone under evaluation).

This step writes ``<ws>/feature_set.json``: for each encoder that training reads (``train.features``: with a
per-task mapping, the union of the lists of the tasks in ``train.tasks``; and ``vad`` when
``train.speech_gate`` is set) a content digest of every file of its store, per video and
overall. The train and predict stages depend on this file instead of the folder: when an unrelated
store is added the file's bytes are unchanged, so DVC skips everything downstream; when any byte of a
used store changes, so does the digest. (The "fingerprint file" pattern: a cheap stage that summarises
a large dependency, as DVC's docs suggest for deps that cannot be listed statically.)

Cost: every file of the used stores is read once per run of this stage (BLAKE2b, about 1 GB/s on one
core), and the stage only runs when ``features/`` changed.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from . import atomic, store
from .config import FromParams
from .task_settings import DEFAULT_TRAIN_FEATURES, name_list, per_task
from .errors import AfwpipeError, TrainError
from .labels import TRAIN_TASKS
from .layout import AUTO

#: the encoder whose store a speech gate reads (afwpipe.clips.gate.VAD)
GATE_ENCODER = "vad"
_BLOCK = 8 << 20  # bytes per read while hashing


@dataclass
class FeatureSetConfig(FromParams):
    """What training reads (built from params ``train``: ``features``, ``tasks`` and ``speech_gate``).

    Attributes:
        features: encoder names, as ``train.features``: one list (or comma-separated string) for every task,
            or a per-task mapping ``{au: [...], expr: [...], ...}`` (:func:`afwpipe.task_settings.per_task`);
            resolved on construction to ``{task: [encoders]}`` for ``tasks``.
        tasks: the trained tasks (``train.tasks``, the DVC matrix); ``auto`` (every task of the dataset,
            :mod:`afwpipe.train_all`) reads every entry of a per-task ``features`` mapping.
        speech_gate: ``train.speech_gate`` (None: off); when set, the ``vad`` store is read too.

    Raises:
        TrainError: a per-task mapping without an entry for one of ``tasks`` (names the task), with an unknown
            task, or an entry that is not a list of names.
    """

    params_section: ClassVar[str] = "train"
    params_error: ClassVar[type[AfwpipeError]] = TrainError

    features: list[str] | dict = field(default_factory=lambda: copy.deepcopy(DEFAULT_TRAIN_FEATURES))
    tasks: list[str] = field(default_factory=lambda: list(TRAIN_TASKS))
    speech_gate: dict | None = None

    def __post_init__(self):
        self.tasks = name_list(self.tasks, "train.tasks", TrainError)
        if AUTO in self.tasks and isinstance(self.features, Mapping):  # every task: every per-task entry
            self.tasks = list(dict.fromkeys([t for t in self.tasks if t != AUTO] + list(self.features)))
        per = per_task(self.features, self.tasks, "train.features", TRAIN_TASKS, TrainError)
        self.features = {t: name_list(v, f"train.features ({t})", TrainError) for t, v in per.items()}

    @property
    def encoders(self) -> list[str]:
        """The encoders whose stores training reads (the union over :attr:`tasks`), in order, without repeats."""
        names = [e for t in self.tasks for e in self.features[t]] + ([GATE_ENCODER] if self.speech_gate else [])
        return list(dict.fromkeys(names))


def digest_files(root: Path) -> str:
    """BLAKE2b (32-byte hex) over every file below ``root``: relative path, size and content, in sorted
    path order; the empty folder has the digest of no input."""
    h = hashlib.blake2b(digest_size=32)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix().encode()
        h.update(len(rel).to_bytes(4, "little") + rel + path.stat().st_size.to_bytes(8, "little"))
        with path.open("rb") as f:
            while block := f.read(_BLOCK):
                h.update(block)
    return h.hexdigest()


def fingerprint(ws: store.Workspace, cfg: FeatureSetConfig) -> dict:
    """The feature set of workspace ``ws``: per encoder its store, the digest of each complete video
    group (``store.complete_names``) and of the whole store.

    Returns:
        ``{"encoders": {name: {"store": str, "videos": {video: hex}, "digest": hex}}}``.

    Raises:
        TrainError: an encoder has no store (the message names ``afwpipe extract --encoder NAME``).
    """
    out = {}
    for enc in cfg.encoders:
        path = ws.features(enc)
        if not path.is_dir():
            raise TrainError(f"{path}: no feature store for encoder {enc!r} that training reads "
                             f"(run `afwpipe extract --encoder {enc}`)")
        videos = {name: digest_files(path / name) for name in store.complete_names(path)}
        out[enc] = {"store": str(path), "videos": videos, "digest": digest_files(path)}
    return {"encoders": out}


def main(ws: store.Workspace, cfg: FeatureSetConfig) -> int:
    """Write ``<ws>/feature_set.json`` (only when its content changes, so its bytes and time stay put)
    and print one line per encoder. Returns 0.

    Raises:
        TrainError: as :func:`fingerprint`.
    """
    data = fingerprint(ws, cfg)
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    path = ws.feature_set
    changed = not path.is_file() or path.read_text() != text
    if changed:
        atomic.write_text(path, text)
    for enc, entry in data["encoders"].items():
        print(f"{enc}: {len(entry['videos'])} complete videos, digest {entry['digest'][:12]}")
    print(f"{path}: {'written' if changed else 'unchanged'}")
    return 0
