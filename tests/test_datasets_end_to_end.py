"""Held-out-style runs of the generic readers (issue 25, "Done when"): a video_csv dataset (one class per video)
and a frame_csv dataset (one regression target per frame), made here from the sample clips, through index ->
detect -> extract -> train -> predict -> postprocess -> evaluate, scored with uar / war and ccc / pearson."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from click.testing import CliRunner

from afwpipe import store
from afwpipe.cli import main
from afwpipe.detect import DetectConfig, run_detect
from afwpipe.evaluate import run_evaluate
from afwpipe.extract import ExtractConfig, run_extract
from afwpipe.index import build_index
from afwpipe.manifest import dataset_spec
from afwpipe.postprocess import PostConfig, run_postprocess
from afwpipe.predict import PredictConfig, run_predict
from afwpipe.readers import read_prediction
from afwpipe.train import TrainConfig, train

from conftest import REPO

CLIPS = {"single_face": "val", "face_noface": "val", "noface_face": "train", "no_face": "train"}
EMOTION = {"single_face": "calm", "face_noface": "happy", "noface_face": "calm", "no_face": "happy"}
SMALL = dict(head="tcn", head_kwargs=dict(channels=16, mlp_dim=16, dilations=[1, 2], dropout=0.0),
             features=["mini_xception", "logmel"], k=32, epochs=4, batch_size=8, device="cpu", seed=0)


def _dataset(tmp_path, sample_videos, name: str, body: str):
    root = tmp_path / name
    (root / "videos").mkdir(parents=True)
    for v in CLIPS:
        (root / "videos" / sample_videos[v].name).symlink_to(sample_videos[v])
    manifest = {"datasets": {name: {"root": str(root), "videos": ["videos"], **yaml.safe_load(body)}}}
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(manifest))
    return root, lambda: dataset_spec(name, tmp_path / f"{name}.yaml")


@pytest.fixture(scope="module")
def cached(sample_videos, fer_hdf5, tmp_path_factory):
    """Faces, audio and features of the four clips, detected and extracted once (index -> detect -> extract of a
    video_csv dataset); the frame_csv test starts from a copy of these stores."""
    tmp = tmp_path_factory.mktemp("generic")
    root, spec = _dataset(tmp, sample_videos, "clips", VIDEO_CSV)
    (root / "labels.csv").write_text("video,split,emotion\n" + "".join(f"{v},{s},{EMOTION[v]}\n" for v, s in CLIPS.items()))
    ws = store.Workspace(tmp / "work" / "clips")
    build_index(spec(), ws, progress=False)
    assert not run_detect(ws, DetectConfig(batch_size=16, device="cpu"), progress=False).failures
    for enc, weights in (("mini_xception", str(fer_hdf5)), ("logmel", None)):
        assert not run_extract(ws, ExtractConfig(enc, weights=weights, device="cpu"), progress=False).failures
    return tmp, ws


VIDEO_CSV = """
reader: video_csv
labels: labels.csv
folds: {k: 2, seed: 0}
tasks:
  emotion: {level: video, type: class, classes: [calm, happy]}
"""


@pytest.mark.sample
def test_video_csv_dataset_runs_every_step_to_uar_and_war(cached, fer_hdf5):
    tmp, ws = cached
    # index, detect and extract ran in the fixture; a rerun finds every video complete
    assert run_detect(ws, DetectConfig(batch_size=16, device="cpu"), progress=False).failures == []
    result = train(ws, TrainConfig(task="emotion", fold="official", head_kwargs={**SMALL["head_kwargs"],
                                   "video_pool": "attention"}, **{k: v for k, v in SMALL.items() if k != "head_kwargs"}),
                   progress=False)
    assert result.n_train == 2 and result.n_val == 2 and result.best is not None
    ckpt_tasks = json.loads((ws.models / "emotion-tcn-official" / "metrics.json").read_text())["tasks"]
    assert ckpt_tasks == ["emotion"]
    pred = run_predict(ws, PredictConfig(head="tcn", tasks=["au", "expr", "va", "mtl"], device="cpu"), progress=False)
    assert [m["name"] for m in pred.models] == ["emotion-tcn-official"]
    run_postprocess(ws, PostConfig(), progress=False)
    summary = run_evaluate(ws)
    metrics = json.loads((ws.eval_dir / "metrics.json").read_text())
    r = metrics["emotion"]["official"]
    assert r["level"] == "video" and r["videos"] == 2 and r["rows"] == 2
    assert sorted(r["scored_on"]) == ["face_noface", "single_face"] and r["optimistic"] is False
    # one output per video: read back independently and scored with sklearn
    truth, decided = [], []
    for v in r["scored_on"]:
        prob = read_prediction(ws, "emotion-tcn-official", v)["emotion"]
        assert prob.shape == (1, 2) and np.allclose(prob.sum(), 1, atol=1e-5)
        truth.append(["calm", "happy"].index(EMOTION[v]))
        decided.append(int(prob[0].argmax()))
    assert r["after"]["uar"] == pytest.approx(balanced_accuracy_score(truth, decided))
    assert r["after"]["war"] == pytest.approx(accuracy_score(truth, decided))
    assert "emotion official uar" in summary.line()

    # `afwpipe train` without --task trains every task the dataset declares
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["workdir"] = str(tmp / "work")
    params["dataset"].update(name="clips", root=None)
    params["train"].update({k: v for k, v in SMALL.items()}, features=SMALL["features"])
    (tmp / "p.yaml").write_text(yaml.safe_dump(params))
    res = CliRunner().invoke(main, ["--params", str(tmp / "p.yaml"), "--manifest", str(tmp / "clips.yaml"),
                                    "train", "--fold", "0"])
    assert res.exit_code == 0, res.output
    assert "train emotion-tcn-0:" in res.output and (ws.models / "emotion-tcn-0" / "model.pt").is_file()
    # `--task auto` (params train.tasks: [auto], the DVC stage train@auto-<fold>): every declared task, grouped
    res = CliRunner().invoke(main, ["--params", str(tmp / "p.yaml"), "--manifest", str(tmp / "clips.yaml"),
                                    "train", "--task", "auto", "--fold", "1"])
    assert res.exit_code == 0, res.output
    assert (ws.models / "auto-tcn-1" / "emotion-tcn-1" / "model.pt").is_file()
    pred = run_predict(ws, PredictConfig(head="tcn", tasks=["auto"], folds=[1], device="cpu"), progress=False)
    assert [m["name"] for m in pred.models] == ["emotion-tcn-1"]


FRAME_CSV = """
reader: frame_csv
labels: labels
splits: splits.csv
folds: {k: 2, seed: 0}
tasks:
  valence: {level: frame, type: regression, targets: [valence], range: [-1, 1]}
"""


@pytest.mark.sample
def test_frame_csv_dataset_runs_every_step_to_ccc_and_pearson(cached, sample_videos, tmp_path):
    src_tmp, src = cached
    root, spec = _dataset(tmp_path, sample_videos, "clips", FRAME_CSV)
    n_frames = {r.name: r.n_frames for r in src.read_index().records}
    (root / "labels").mkdir()
    for v, n in n_frames.items():  # a slow swing of valence, every second frame labelled
        t = np.arange(1, n + 1, 2)
        (root / "labels" / f"{v}.csv").write_text("frame,valence\n" + "".join(
            f"{f},{np.sin(f / 20 + len(v)):.4f}\n" for f in t))
    (root / "splits.csv").write_text("video,split\n" + "".join(f"{v},{s}\n" for v, s in CLIPS.items()))
    ws = store.Workspace(tmp_path / "work" / "clips")
    index = build_index(spec(), ws, progress=False)
    assert {r.name: r.labelled["valence"] for r in index.records} == {v: (n + 1) // 2 for v, n in n_frames.items()}
    for part in ("faces.zarr", "audio.zarr", "features"):  # detect and extract of the fixture, reused
        if (src.root / part).exists():
            shutil.copytree(src.root / part, ws.root / part)
    assert run_detect(ws, DetectConfig(batch_size=16, device="cpu"), progress=False).failures == []
    result = train(ws, TrainConfig(task="valence", fold="official", **SMALL), progress=False)
    assert result.best is not None and "ccc" in result.best["valence"]
    run_predict(ws, PredictConfig(device="cpu"), progress=False)
    run_postprocess(ws, PostConfig(), progress=False)
    run_evaluate(ws)
    r = json.loads((ws.eval_dir / "metrics.json").read_text())["valence"]["official"]
    assert r["level"] == "frame" and sorted(r["scored_on"]) == ["face_noface", "single_face"]
    p, y = [], []
    for v in r["scored_on"]:
        prob = read_prediction(ws, "valence-tcn-official", v)["valence"]
        assert prob.shape == (n_frames[v], 1)
        lab = store.open_store(ws.labels, "r")[v]["valence"][...]
        ok = ~np.isnan(lab[:, 0])
        p.append(prob[ok, 0]), y.append(lab[ok, 0])
    p, y = np.concatenate(p), np.concatenate(y)
    assert r["rows"] == len(y) == sum((n_frames[v] + 1) // 2 for v in r["scored_on"])
    assert r["after"]["pearson"] == pytest.approx(pearsonr(p, y).statistic, abs=1e-5)
    lin = 2 * np.cov(p, y, bias=True)[0, 1] / (p.var() + y.var() + (p.mean() - y.mean()) ** 2)
    assert r["after"]["ccc"] == pytest.approx(lin, abs=1e-5)
