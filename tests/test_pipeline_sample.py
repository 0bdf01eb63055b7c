"""The sample through the CLI, as a user runs it: index -> detect -> extract (offline encoders)."""

import numpy as np
import pytest
import yaml
import zarr
from click.testing import CliRunner

from afwpipe.cli import main

from conftest import REPO

FRAMES = {"single_face": 72, "no_face": 95}


@pytest.mark.sample
def test_sample_index_detect_extract_offline(sample_videos, tmp_path, monkeypatch):
    monkeypatch.setenv("AFWPIPE_OFFLINE", "1")
    manifest = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
    manifest["datasets"]["sample"].update(root=str(REPO / "data" / "sample"),
                                          videos=[str(sample_videos["single_face"].parent)])
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(manifest))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["workdir"] = str(tmp_path / "work")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    base = ["--params", str(tmp_path / "p.yaml"), "--manifest", str(tmp_path / "m.yaml")]
    only = [a for v in FRAMES for a in ("--video", v)]
    run = CliRunner().invoke
    for cmd in (["index"], ["detect", *only], ["extract", *only]):
        res = run(main, base + cmd)
        assert res.exit_code == 0, (cmd, res.output)
    assert "extract mini_xception: 2 videos processed" in res.output and "extract logmel: 2 videos" in res.output
    ws = tmp_path / "work" / "sample"
    for enc, dim in (("mini_xception", 135), ("logmel", 80)):
        g = zarr.open_group(str(ws / "features" / f"{enc}.zarr"), mode="r")
        for name, t in FRAMES.items():
            assert g[f"{name}/emb"].shape == (t, dim)
    faces = zarr.open_group(str(ws / "faces.zarr"), mode="r")
    assert faces["single_face/present"][...].all() and not faces["no_face/present"][...].any()
    # the audio features follow the audio track: single_face has 2.42 s of audio for 2.4 s of video
    assert zarr.open_group(str(ws / "features" / "logmel.zarr"), mode="r")["single_face/present"][...].all()
    res = run(main, base + ["export", "--encoder", "logmel"])
    assert res.exit_code == 0 and "wrote 2 videos" in res.output
    assert np.isfinite(faces["single_face/landmarks"][...]).all()
