"""Predict stage on a synthetic workspace with trained heads: which videos each head predicts (its own
validation videos, every name that is val or test in any track, e.g. EXPR-test names VA trains on and
both sides of a two-person test video, a scene head's scene), that stored outputs are the training
stage's overlapping-window predictions (its validation score comes back), face masks, and errors; then the
whole chain predict -> postprocess -> evaluate -> submit on it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from synth import as_index, complete_index
from afwpipe import submission
from afwpipe.config import dataset_and_workspace
from afwpipe import store
from afwpipe.folds import summary_split
from afwpipe.readers import load_labels
from afwpipe.errors import PredictError
from afwpipe.predict import PredictConfig, evaluation_videos, find_models, run_predict
from afwpipe.readers import read_prediction, read_predictions_index
from afwpipe.inference import load_model
from afwpipe.train import TrainConfig, score, train
from test_clips import make_workspace

TCN = dict(channels=16, mlp_dim=32, dilations=(1, 2), dropout=0.1)
RUNS = [("au", "official", None), ("au", 0, None), ("au", 1, None), ("mtl", "official", None),
        ("au", "official", "man")]


def _test_record(name: str, n: int, **extra) -> dict:
    return {"name": name, "video": name, "split": "test", "splits": dict.fromkeys(("au", "expr", "va"), "test"),
            "fold": -1, "n_frames": n, "labelled": {"au": 0, "expr": 0, "va": 0}, **extra}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    # v0..v5 train, v6 val, v7 test (no labels), v5 is EXPR-test (AU/VA-train, no EXPR labels); p_left and
    # p_right: the two sides of test video p (own features, no labels); folds: even 0, odd 1;
    # scene "man": v0, v1, v2, v6, v7
    from test_clips import DIMS, write_features

    ws = make_workspace(tmp_path_factory.mktemp("predict"), n_videos=8, n_frames=[70, 64, 80, 64, 64, 64, 90, 75],
                        n_val=2, scenes={"man": ["v0", "v1", "v2", "v6", "v7"]})
    index = json.loads(ws.index.read_text())
    index["videos"][7] = _test_record("v7", 75)
    index["videos"][5]["splits"]["expr"] = "test"
    index["videos"][5]["labelled"]["expr"] = 0
    store.write_time_array(store.open_store(ws.labels)["v5"], "expr", np.full(64, -1, np.int8))
    rng = np.random.default_rng(5)
    for side in ("left", "right"):
        index["videos"].append(_test_record(f"p_{side}", 60, video="p", side=side))
        for enc, dim in DIMS.items():
            write_features(ws, enc, f"p_{side}", rng.normal(size=(60, dim)) + 3.0, np.ones(60, bool))
    ws.index.write_text(json.dumps(complete_index(index)))
    for task, fold, scene in RUNS:
        train(ws, TrainConfig(task=task, head="tcn", features=["vis", "aud"], fold=fold, scene=scene, k=32,
                              epochs=2, patience=0, lr=3e-3, batch_size=8, head_kwargs=TCN, device="cpu"),
              progress=False)
    return ws


@pytest.fixture(scope="module")
def predicted(ws):
    return run_predict(ws, PredictConfig(head="tcn", folds=["official", 0, 1], device="cpu"), progress=False)


def test_each_head_predicts_its_validation_videos_and_every_val_and_test_name_of_any_track(ws, predicted):
    models = {m["name"]: m for m in read_predictions_index(ws)}
    assert sorted(models) == ["au-tcn-0", "au-tcn-1", "au-tcn-official", "au-tcn-official-man",
                              "mtl-tcn-official"]
    assert models["au-tcn-official"]["val_videos"] == ["v6"]
    # v5 is AU-train but EXPR-test: every head predicts it, and each side of test video p
    assert models["au-tcn-official"]["videos"] == ["v5", "v6", "v7", "p_left", "p_right"]
    assert models["au-tcn-0"]["val_videos"] == ["v0", "v2", "v4", "v6"]  # fold 0: even labelled videos
    assert models["au-tcn-0"]["videos"] == ["v0", "v2", "v4", "v5", "v6", "v7", "p_left", "p_right"]
    assert models["au-tcn-1"]["videos"] == ["v1", "v3", "v5", "v6", "v7", "p_left", "p_right"]
    assert models["mtl-tcn-official"]["val_videos"] == ["v6"]
    assert models["au-tcn-official-man"]["videos"] == ["v6", "v7"]
    assert models["au-tcn-official-man"]["scene"] == "man"
    assert models["mtl-tcn-official"]["tasks"] == ["au", "expr", "va"]
    mtl = read_prediction(ws, "mtl-tcn-official", "v7")
    assert mtl["au"].shape == (75, 12) and mtl["expr"].shape == (75, 8) and mtl["va"].shape == (75, 2)
    assert mtl["au"].dtype == np.float32 and np.allclose(mtl["expr"].sum(1), 1, atol=1e-5)
    assert set(read_prediction(ws, "au-tcn-0", "v0")) == {"au", "present"}
    assert predicted.line().startswith("predict: 5 heads on 10 videos")


def test_scene_heads_evaluate_only_their_scene():
    index = {"scenes": {"s": ["x", "y"]},
             "videos": [{"name": n, "video": n, "split": sp, "splits": dict.fromkeys(("au", "expr", "va"), sp)}
                        for n, sp in (("x", "val"), ("y", "train"), ("z", "val"), ("w", "test"))]}
    assert evaluation_videos(as_index(index), ["y"]) == ["x", "y", "z", "w"]
    assert evaluation_videos(as_index(index), ["y"], scene="s") == ["x", "y"]


def test_every_name_val_or_test_in_any_track_is_evaluated():
    """e: EXPR-test and VA-train (its ``split`` summary is train); q_left / q_right: sides of a two-person test
    video; a: AU-val only; r: train everywhere; n: no track (neither annotated nor tested)."""
    def rec(name, video=None, **splits):
        return {"name": name, "video": video or name, "split": summary_split(splits),
                "splits": {t: splits.get(t) for t in ("au", "expr", "va")}}

    index = {"videos": [rec("r", au="train", expr="train", va="train"), rec("e", expr="test", va="train"),
                        rec("q_left", "q", au="test", expr="test", va="test"),
                        rec("q_right", "q", au="test", expr="test", va="test"), rec("a", au="val", va="train"),
                        rec("n")]}
    assert evaluation_videos(as_index(index), []) == ["e", "q_left", "q_right", "a"]
    assert evaluation_videos(as_index({**index, "scenes": {"s": ["q"]}}), ["r"], scene="s") == ["q_left", "q_right"]


def _hand_predictions(ws, head, ckpt, name: str) -> dict[str, np.ndarray]:
    """The stored predictions worked out by hand: raw features read from the Zarr stores, standardised with the
    checkpoint's mean/std (absent all-zero frames stay 0), cut into K-frame clips every ``eval_stride`` frames
    (the last one zero-padded with mask False), each clip run alone through the head, sigmoid / softmax /
    identity applied, and each frame the plain mean of the clips covering it."""
    import torch
    import zarr

    cfg = ckpt.config
    k, stride = int(cfg["k"]), int(cfg["eval_stride"])
    feats = {}
    for enc in cfg["features"]:
        g = zarr.open_group(str(ws.features(enc)), mode="r")[name]
        emb, present = g["emb"][...].astype(np.float32), g["present"][...].astype(bool)
        mean, std = ckpt.stats[enc]["mean"].numpy(), ckpt.stats[enc]["std"].numpy()
        z = (emb - mean) / std
        z[~present & ~emb.any(1)] = 0.0
        feats[enc] = z
    n = len(next(iter(feats.values())))
    starts = list(range(0, n - k + stride, stride))  # the last clip reaches the end of the video
    assert starts[-1] + k >= n > starts[-1]
    sums = {t: None for t in ckpt.tasks}
    count = np.zeros(n)
    act = {"au": torch.sigmoid, "expr": lambda o: torch.softmax(o, -1), "va": lambda o: o}
    with torch.no_grad():
        for s in starts:
            m = min(k, n - s)
            x = {e: torch.zeros(1, k, f.shape[1]) for e, f in feats.items()}
            for e, f in feats.items():
                x[e][0, :m] = torch.from_numpy(f[s:s + m])
            mask = torch.zeros(1, k, dtype=torch.bool)
            mask[0, :m] = True
            out = head.eval()(x, mask)
            for t, o in out.items():
                p = act[t](o.float())[0, :m].numpy().astype(np.float64)
                if sums[t] is None:
                    sums[t] = np.zeros((n,) + p.shape[1:])
                sums[t][s:s + m] += p
            count[s:s + m] += 1
    return {t: sums[t] / count.reshape((-1,) + (1,) * (sums[t].ndim - 1)) for t in sums}


def test_stored_outputs_are_overlapping_windows_and_give_back_the_validation_score(ws, predicted):
    head, ckpt = load_model(ws.models / "mtl-tcn-official" / "model.pt")
    assert (ckpt.config["k"], ckpt.config["eval_stride"]) == (32, 16)
    stored = read_prediction(ws, "mtl-tcn-official", "v6")
    want = _hand_predictions(ws, head, ckpt, "v6")  # v6: 90 frames, clips at 0, 16, 32, 48, 64 (padded)
    for task in ("au", "expr", "va"):
        np.testing.assert_allclose(stored[task], want[task], atol=1e-5, err_msg=task)
    labels = load_labels(ws, ["v6"])
    again = score({"v6": {t: stored[t].astype(np.float64) for t in ("au", "expr", "va")}}, labels, ("au", "expr", "va"))
    assert again["score"] == pytest.approx(ckpt.best_score, abs=1e-5)


def test_face_mask_comes_from_faces_store_else_from_visual_features(ws, predicted, tmp_path):
    present = read_prediction(ws, "au-tcn-official", "v6")["present"]
    assert not present[5:10].any() and present[:5].all() and present[10:].all()  # vis features' mask
    ws2 = store.Workspace(tmp_path / "ws")
    shutil.copytree(ws.root, ws2.root, ignore=shutil.ignore_patterns("predictions"))
    g = store.begin_video(ws2.faces, "v7")
    mask = np.zeros(75, bool)
    mask[40:] = True
    store.write_time_array(g, "present", mask)
    store.mark_complete(g)
    run_predict(ws2, PredictConfig(head="tcn", tasks=["au"], folds=["official"], device="cpu"), progress=False)
    np.testing.assert_array_equal(read_prediction(ws2, "au-tcn-official", "v7")["present"], mask)
    assert [m["name"] for m in read_predictions_index(ws2)] == ["au-tcn-official", "au-tcn-official-man"]


def test_no_matching_head_and_missing_predictions_are_clear_errors(ws, predicted, tmp_path):
    with pytest.raises(PredictError, match=r"no trained head of type 'tmf'.*heads there: au-tcn-0, au-tcn-1"):
        run_predict(ws, PredictConfig(head="tmf"), progress=False)
    with pytest.raises(PredictError, match="no complete predictions of video 'v1'"):
        read_prediction(ws, "au-tcn-official", "v1")
    with pytest.raises(PredictError, match="run `afwpipe predict`"):
        read_predictions_index(store.Workspace(tmp_path))
    assert [m.name for m in find_models(ws, tasks=["mtl"])] == ["mtl-tcn-official"]


def test_head_trained_on_other_encoder_weights_is_refused(ws, predicted, tmp_path):
    from test_clips import write_features

    ws2 = store.Workspace(tmp_path / "ws")
    shutil.copytree(ws.root, ws2.root, ignore=shutil.ignore_patterns("predictions"))
    for name in store.complete_names(ws2.features("aud")):
        emb = store.read_array(ws2.features("aud"), name, "emb")
        write_features(ws2, "aud", name, emb.astype(np.float32), np.ones(len(emb), bool), weights="sha256:new")
    with pytest.raises(PredictError, match=r"au-tcn-0: feature store .*aud.zarr has weights 'sha256:new'"):
        run_predict(ws2, PredictConfig(head="tcn", tasks=["au"], folds=[0], device="cpu"), progress=False)


def test_chain_to_metrics_and_submission_on_trained_heads(ws, predicted, tmp_path, capsys):
    """Stages predict -> postprocess -> evaluate -> submit from params: the 'before' score of each fold is
    the training stage's validation score; the scene head feeds AU official; files have every frame."""
    from stages import evaluate as s_eval
    from stages import postprocess as s_post
    from stages import predict as s_pred

    shutil.copytree(ws.root, tmp_path / "sample", ignore=shutil.ignore_patterns("predictions"))
    params = {"dataset": {"name": "sample", "root": None}, "workdir": str(tmp_path),
              "train": {"head": "tcn", "tasks": ["au", "mtl"], "folds": ["official", 0, 1], "scenes": ["man"]},
              "predict": {"batch_size": 16, "device": "cpu"},
              "postprocess": {"sources": {"expr": "mtl", "va": "mtl"}, "au_thresholds": "tuned"},
              "evaluate": {"plot_system": "official"}, "submit": {"system": "official"}}
    s_pred.run(params)
    post = s_post.run(params)
    assert {s.name for s in post.systems} == {"au-official", "au-0", "au-1", "au-ensemble", "expr-official",
                                              "expr-ensemble", "va-official", "va-ensemble"}
    result = s_eval.run(params)
    m = json.loads((tmp_path / "sample" / "eval" / "metrics.json").read_text())
    assert m == result.metrics
    for fold in (0, 1):
        best = json.loads((ws.models / f"au-tcn-{fold}" / "metrics.json").read_text())["best"]
        assert m["au"][str(fold)]["before"]["f1"] == pytest.approx(best["au"]["f1"], abs=1e-6)
    best = json.loads((ws.models / "mtl-tcn-official" / "metrics.json").read_text())["best"]
    assert m["va"]["official"]["before"]["ccc"] == pytest.approx(best["va"]["ccc"], abs=1e-5)
    assert m["expr"]["official"]["before"]["f1"] == pytest.approx(best["expr"]["f1"], abs=1e-6)
    systems = json.loads((tmp_path / "sample" / "post" / "systems.json").read_text())["systems"]
    assert systems["au-official"]["models"]["v6"] == "au-tcn-official-man"
    # every test name of every track went through postprocess: v5 (EXPR-test only), p_left, p_right
    assert {"v5", "p_left", "p_right", "v7"} <= set(systems["expr-official"]["videos"])
    au, expr, va = submission.main(dataset_and_workspace(params)[1], submission.SubmitConfig.from_params(params["submit"]))
    rows = {s.track: s.path.read_text().splitlines() for s in (au, expr, va)}
    assert rows["au"][0].startswith("image_location,AU1,AU2") and len(rows["au"]) == 1 + 60 + 60 + 75
    assert rows["au"][1].startswith("p_left/00001.jpg,") and rows["au"][-1].startswith("v7/00075.jpg,")
    assert [r.split(",")[0] for r in rows["expr"][1:]] == [f"{v}/{i:05d}.jpg" for v, n in
                                                            (("p_left", 60), ("p_right", 60), ("v5", 64), ("v7", 75))
                                                            for i in range(1, n + 1)]
    assert len(rows["va"]) == 1 + 60 + 60 + 75  # v5 is VA-train
    # each side's rows carry its own post-processed predictions
    for side, start in (("p_left", 1), ("p_right", 61)):
        after = np.load(tmp_path / "sample" / "post" / "va-official.npz")[f"{side}/after"]
        got = np.array([[float(x) for x in r.split(",")[1:]] for r in rows["va"][start:start + 60]])
        np.testing.assert_allclose(got, after, atol=1e-6)
    out = capsys.readouterr().out
    assert "evaluate: before -> after: au ensemble F1" in out
    assert "submit: AU: 195 rows, one per decoded frame of 3 test names (no example file)" in out
    assert "submit: WARNING: EXPR track: predictions come from mtl heads" in out
    assert "submit: WARNING: VA track: predictions come from mtl heads" in out
