"""``afwpipe analyze`` gives what the pipeline gives (issue 20, point 4): on a video the pipeline predicted and
post-processed, analyze (from the video: detect, extract, heads, chain) must equal ``post/`` -- under tuned
smoothing, under test-time augmentation and with a head trained with a speech gate, each on its own.

Each case is its own small training workspace on the session's sample stores (symlinks; a store the case
needs beyond them -- mini_xception with a flip view, vad -- is extracted into the case's own folder). The
reference is the pipeline's own output, ``post/<track>-<system>.npz``, written by train -> predict ->
postprocess; analyze never reads it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from afwpipe import store
from afwpipe.analyze import AnalyzeConfig, read_table, resolve_model, run_analyze
from afwpipe.extract import ExtractConfig, run_extract
from afwpipe.labels import AU_NAMES, EXPR_NAMES
from afwpipe.postprocess import PostConfig, run_postprocess
from afwpipe.predict import PredictConfig, run_predict
from afwpipe.readers import read_post
from afwpipe.train import TrainConfig, train

SOURCES = {"au": "mtl", "expr": "mtl", "va": "mtl"}
TINY = {"d_model": 32, "n_layers": 1}


def _workspace(sample_workspace, root, stores=("mini_xception", "logmel")):
    """A workspace at ``root`` sharing the session's index, labels, faces, audio and feature ``stores``."""
    ws = store.Workspace(root / "sample")
    ws.features_dir.mkdir(parents=True)
    for p in ("index.json", "labels.zarr", "faces.zarr", "audio.zarr"):
        os.symlink(sample_workspace.root / p, ws.root / p)
    for enc in stores:
        os.symlink(sample_workspace.features(enc), ws.features(enc))
    return ws


def _pipeline(ws, folds, post: PostConfig, tta=False, **train_kw):
    for fold in folds:
        train(ws, TrainConfig(task="mtl", head="tmf", fold=fold, epochs=1, patience=0, device="cpu",
                              head_kwargs=TINY, **train_kw), progress=False)
    run_predict(ws, PredictConfig(head="tmf", tasks=["mtl"], folds=list(folds), device="cpu", tta=tta),
                progress=False)
    run_postprocess(ws, post, progress=False)
    return json.loads(ws.post_systems.read_text())["systems"]


def _videos(systems, system, sample_videos):
    """The sample videos (by file stem) that ``system`` post-processed, the validation ones first."""
    s = systems[f"va-{system}"]
    names = [v for v in s["eval_videos"] + s["videos"] if v in sample_videos]
    assert names, f"no sample video in {system}'s outputs"
    return list(dict.fromkeys(names))[:2]  # two videos keep the test short


def _assert_equal_post(ws, system, names, sample_videos, out):
    plan = resolve_model(system, ws)
    summary = run_analyze([sample_videos[n] for n in names], plan, AnalyzeConfig(device="cpu", timeline=False),
                          out, progress=False)
    assert not summary.failures, [f.error for f in summary.failures]
    for name in names:
        table = read_table(out / f"{name}.csv")
        au, expr, va = (read_post(ws, f"{t}-{system}", name) for t in ("au", "expr", "va"))
        np.testing.assert_allclose(table[[f"{a}_prob" for a in AU_NAMES]], au["prob"], atol=1e-3, err_msg=name)
        assert (table[list(AU_NAMES)].to_numpy() == au["after"]).mean() > 0.99, name
        np.testing.assert_allclose(table[[f"{c}_prob" for c in EXPR_NAMES]], expr["prob"], atol=1e-3, err_msg=name)
        assert (table["expr_index"].to_numpy() == expr["after"]).mean() > 0.99, name
        np.testing.assert_allclose(table[["valence", "arousal"]], va["after"], atol=1e-3, err_msg=name)


@pytest.mark.sample
def test_analyze_equals_post_under_tuned_smoothing(sample_workspace, sample_videos, tmp_path):
    """σ tuned per fold system on out-of-fold frames from a grid without the defaults (AU 5, EXPR / VA 25),
    so a chain that falls back to the default σ cannot match; the ensemble runs every fold's own σ."""
    ws = _workspace(sample_workspace, tmp_path)
    post = PostConfig(sources=SOURCES, smooth={t: {"method": "gaussian", "sigma": "tuned"} for t in SOURCES},
                      smooth_grid=[0, 2, 8])
    systems = _pipeline(ws, ("official", 0, 1), post)
    assert {systems[f"va-{f}"]["smoothing"]["from"] for f in ("0", "1")} == {"out-of-fold frames"}
    _assert_equal_post(ws, "ensemble", _videos(systems, "ensemble", sample_videos), sample_videos, tmp_path / "out")


@pytest.mark.sample
def test_analyze_equals_post_under_tta(sample_workspace, sample_videos, tmp_path):
    """mini_xception stored with a flip view, ``predict.tta``: the head's outputs are the mean over full and
    flip in post/ and must be in analyze too (analyze extracts the views the checkpoint records)."""
    ws = _workspace(sample_workspace, tmp_path, stores=("logmel",))
    assert not run_extract(ws, ExtractConfig("mini_xception", views=["full", "flip"], device="cpu"),
                           progress=False).failures
    systems = _pipeline(ws, ("official",), PostConfig(sources=SOURCES), tta=True)
    assert systems["va-official"]["tta"] == ["full", "flip"]
    _assert_equal_post(ws, "official", _videos(systems, "official", sample_videos), sample_videos, tmp_path / "out")


@pytest.mark.sample
def test_analyze_equals_post_with_a_speech_gate(sample_workspace, sample_videos, tmp_path):
    """A head trained with ``train.speech_gate`` on logmel: analyze must build the vad store it gates with."""
    ws = _workspace(sample_workspace, tmp_path)
    assert not run_extract(ws, ExtractConfig("vad", device="cpu"), progress=False).failures
    systems = _pipeline(ws, ("official",), PostConfig(sources=SOURCES),
                        speech_gate={"encoders": ["logmel"], "threshold": 0.5})
    out = tmp_path / "out"
    _assert_equal_post(ws, "official", _videos(systems, "official", sample_videos), sample_videos, out)
    assert store.complete_names(out / ".work" / "features" / "vad.zarr")
