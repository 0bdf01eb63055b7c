"""Crash-safe, cache-safe file writes: every file afwpipe writes outside Zarr goes through this module.

A file is written under a temporary name in the target's own folder (``.<name>.<random>.partial``), flushed
to disk (``os.fsync``) and renamed over the target with :func:`os.replace` (atomic on POSIX when both names
are on one filesystem, which the shared folder guarantees). So:

- a command killed midway (exception, ``SIGKILL``, power loss after the rename) never leaves a half-written
  target: readers see the previous file or the new one, never a mix; on an exception the temporary file is
  removed (a ``SIGKILL`` can leave a ``.partial`` file, which no afwpipe glob matches);
- a target that is a hard link (or reflink or symlink) into the DVC cache (``.dvc/config``:
  ``cache.type = reflink,hardlink,copy``) is *replaced* by a new directory entry; the cache object keeps its
  bytes and still hashes to its name, even when the command runs as root (file modes do not stop root).

Zarr's local store (``zarr.storage.LocalStore``, what :func:`afwpipe.store.open_store` opens) already writes
each chunk and metadata file this way (``zarr/storage/_local.py``: ``_atomic_write``, a
``.<uuid>.partial`` file then ``Path.replace``); ``tests/test_atomic.py`` checks it.

The temporary name ends in ``.partial``, not the target's suffix: writers that infer the format from the
file name must be given it (``savefig(..., format="png")``, ``av.open(..., format="mp4")``); writers that
append a suffix (``np.savez``) must be given the open file of :func:`open_atomic`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PARTIAL = ".partial"


def temp_name(path: Path) -> Path:
    """A fresh temporary path beside ``path``: ``<folder>/.<name>.<32 hex>.partial``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}{PARTIAL}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: str | Path, *, mkdir: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that needs a file name; when the block ends
    without an exception, the file written there is synced and renamed over ``path`` (:func:`os.replace`).
    When the block raises, the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the target file. Its folder is created when ``mkdir`` (default).

    Raises:
        FileNotFoundError: the block ended without writing the temporary file (names the target).
        OSError: the rename or sync failed (the temporary file is removed; ``path`` is unchanged).
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{path}: the writer produced no file at its temporary name {tmp.name}")
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def open_atomic(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO[Any]]:
    """:func:`open` a temporary file beside ``path`` (``mode`` ``"w"`` or ``"wb"``; ``kwargs`` go to
    :func:`open`, e.g. ``newline=""`` for :mod:`csv`); renamed over ``path`` when the block ends without an
    exception, removed otherwise (see :func:`replacing`).

    Raises:
        ValueError: ``mode`` is not a plain write mode (appending or updating in place would need the old
            bytes copied first; no afwpipe writer does that).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"{path}: open_atomic writes a whole new file; mode must be 'w' or 'wb', not {mode!r}")
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with replacing(path) as tmp, open(tmp, mode, **kwargs) as f:  # the file closes before the rename
        yield f


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`replacing`); return ``path``."""
    with open_atomic(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`replacing`); return ``path``."""
    with open_atomic(path, "w") as f:
        f.write(text)
    return Path(path)


def write_json(path: str | Path, obj: Any, *, indent: int | None = 1, sort_keys: bool = False) -> Path:
    """Write ``obj`` as JSON (``json.dumps(obj, indent=indent, sort_keys=sort_keys)`` plus a final newline)
    to ``path`` atomically; return ``path``.

    Raises:
        TypeError / ValueError: ``obj`` is not JSON-serialisable (nothing is written then).
    """
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


def copy_file(src: str | Path, dst: str | Path) -> Path:
    """Copy the bytes of ``src`` to ``dst`` atomically (a new file, never ``dst`` rewritten in place, as
    :func:`shutil.copyfile` would); return ``dst``.

    Raises:
        FileNotFoundError: ``src`` does not exist.
    """
    with open(src, "rb") as s, open_atomic(dst, "wb") as d:
        shutil.copyfileobj(s, d)
    return Path(dst)
