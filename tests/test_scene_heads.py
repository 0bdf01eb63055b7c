"""Scene heads as a pipeline stage: the params list ``train.scenes`` checked against the manifest, the DVC
matrix that trains them, the routing of a scene's validation and test videos to its heads, and each scene's
score beside the general heads' (with its own honesty flags) in evaluate's metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import f1_score

from synth import complete_index
from afwpipe import store
from afwpipe.errors import ConfigError
from afwpipe.evaluate import EvalConfig, run_evaluate
from afwpipe.manifest import DatasetSpec, dataset_spec
from afwpipe.postprocess import PostConfig, run_postprocess
from afwpipe.predict import find_models
from afwpipe.readers import read_post, read_systems
from afwpipe.scenes import check_scene_params

from conftest import MANIFEST, REPO

T = 30
# a: val, fold 0; b: val, fold 1; c: train, fold 0; t: test. Scene "reaction" = b (val), c (train), t (test).
VIDEOS = {"a": ("val", 0), "b": ("val", 1), "c": ("train", 0), "t": ("test", -1)}
SCENE = ["b", "c", "t"]
#: (train, val) videos of each fold's general head (as folds.split_videos gives them for VIDEOS)
TRAINED = {"official": (["c"], ["a", "b"]), "0": (["b"], ["a", "c"]), "1": (["a", "c"], ["b"])}


def _spec(scenes: dict) -> DatasetSpec:
    return DatasetSpec(name="hand", root=Path("."), video_dirs=(), annotations=Path("."), scenes=scenes)


# -- the params list against the manifest ---------------------------------------------------------------
def test_scene_list_equal_to_the_manifest_passes_in_params_order():
    assert check_scene_params(_spec({"reaction": ["b"], "studio": ["c"]}), ["studio", "reaction"]) == [
        "studio", "reaction"]
    assert check_scene_params(_spec({}), None) == []
    assert check_scene_params(_spec({}), []) == []


@pytest.mark.parametrize("scenes, manifest, match", [
    (["reaction", "bogus"], {"reaction": ["b"]}, r"train.scenes bogus not defined in data_manifest.yaml "
                                                  r"datasets.hand.scenes \(defined: reaction\)"),
    ([], {"reaction": ["b"]}, r"defines reaction but params.yaml train.scenes does not list it, so DVC would "
                              r"never train its heads"),
    (["reaction", "reaction"], {"reaction": ["b"]}, r"names reaction more than once"),
    ("reaction", {"reaction": ["b"]}, r"must be a list of scene names"),
    (["reaction"], {"reaction": []}, r"scenes.reaction lists no video"),
])
def test_a_scene_list_that_disagrees_with_the_manifest_is_a_clear_error(scenes, manifest, match):
    with pytest.raises(ConfigError, match=match):
        check_scene_params(_spec(manifest), scenes)


def test_the_sample_params_scene_list_matches_the_sample_manifest_and_dvc_trains_it():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    spec = dataset_spec(params["dataset"]["name"], MANIFEST)
    scenes = check_scene_params(spec, params["train"]["scenes"])
    assert scenes, "the sample defines a scene so that `dvc repro` trains and routes scene heads"
    assert all(len(spec.scenes[s]) == 2 for s in scenes)
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train_scene"]
    assert stage["matrix"] == {"task": "${train.tasks}", "fold": "${train.folds}", "scene": "${train.scenes}"}
    assert "scene=${item.scene}" in stage["cmd"]
    assert any("${item.fold}-${item.scene}/model.pt" in str(o) for o in stage["outs"])
    assert "train.scenes" in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["predict"]["params"]


@pytest.mark.parametrize("module", ["train_scene", "predict"])
def test_the_stages_refuse_a_scene_list_the_manifest_does_not_define(module, monkeypatch):
    import importlib

    monkeypatch.chdir(REPO)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["scenes"] = ["not_a_scene"]
    run = importlib.import_module(f"stages.{module}").run
    kw = {"task": "au", "fold": "official", "scene": "not_a_scene"} if module == "train_scene" else {}
    with pytest.raises(ConfigError, match="not_a_scene not defined in data_manifest.yaml"):
        run(params, **kw)


def test_find_models_keeps_the_scene_heads_of_the_listed_scenes_only(tmp_path):
    ws = store.Workspace(tmp_path)
    for name in ("au-tcn-official", "au-tcn-official-reaction", "au-tcn-official-old"):
        (ws.models / name).mkdir(parents=True)
        (ws.models / name / "model.pt").write_bytes(b"")
    assert [r.name for r in find_models(ws, scenes=["reaction"])] == ["au-tcn-official", "au-tcn-official-reaction"]
    assert [r.name for r in find_models(ws, scenes=[])] == ["au-tcn-official"]
    assert len(find_models(ws)) == 3


# -- routing and per-scene scores -------------------------------------------------------------------------
def labels_of() -> dict:
    expr = np.where(np.arange(T) < 15, 0, 4).astype(np.int8)
    va = np.stack([np.linspace(-0.5, 0.5, T), 0.3 * np.sin(np.arange(T) / 5)], 1).astype(np.float32)
    return {"au": np.zeros((T, 12), np.int8) - 1, "expr": expr, "va": va}


def general_out() -> dict:
    """The general head: EXPR right on frames 0..9 and 15..19 only; VA a damped, shifted copy."""
    lab = labels_of()
    wrong = np.zeros(T, bool)
    wrong[10:15] = wrong[20:] = True
    cls = np.where(wrong, 6, lab["expr"])
    expr = np.full((T, 8), 0.05, np.float32)
    expr[np.arange(T), cls] = 0.65
    return {"expr": expr, "va": (0.5 * lab["va"] + 0.1).astype(np.float32)}


def scene_out() -> dict:
    """A scene head: EXPR right on every frame; VA the labels themselves."""
    lab = labels_of()
    expr = np.full((T, 8), 0.05, np.float32)
    expr[np.arange(T), lab["expr"]] = 0.65
    return {"expr": expr, "va": lab["va"].copy()}


def build(root: Path, selected_scene: list[str] | None = None) -> store.Workspace:
    """Index, labels, models/*/metrics.json and predictions of general heads (official, 0, 1) and scene heads
    ``<task>-tcn-<fold>-reaction`` for EXPR and VA; a scene head chose its epoch on ``selected_scene``."""
    ws = store.Workspace(root)
    ws.root.mkdir(parents=True)
    records = [{"name": v, "video": v, "split": s, "splits": dict.fromkeys(("au", "expr", "va"), s), "fold": f,
                "n_frames": T, "labelled": {t: 0 if s == "test" or t == "au" else T for t in ("au", "expr", "va")}}
               for v, (s, f) in VIDEOS.items()]
    ws.index.write_text(json.dumps(complete_index({"dataset": "hand", "folds": {"k": 2}, "scenes": {"reaction": SCENE},
                                    "videos": records})))
    lab = store.open_store(ws.labels, "w")
    for v, (split, _) in VIDEOS.items():
        if split != "test":
            g = lab.create_group(v)
            for task, arr in labels_of().items():
                store.write_time_array(g, task, arr)
    models = []
    for task in ("expr", "va"):
        for fold in ("official", "0", "1"):
            train, own = TRAINED[fold]
            general = [v for v in VIDEOS if v in own or VIDEOS[v][0] in ("val", "test")]
            for scene in (None, "reaction"):
                name = f"{task}-tcn-{fold}" + (f"-{scene}" if scene else "")
                videos = [v for v in general if v in SCENE] if scene else general
                tr = [v for v in train if v in SCENE] if scene else train
                val = [v for v in own if v in SCENE] if scene else own
                (ws.models / name).mkdir(parents=True)
                sel = [v for v in (selected_scene or []) if v in val] if scene else []
                (ws.models / name / "metrics.json").write_text(json.dumps(
                    {"train_videos": tr, "val_videos": val, "selected_on": sel}))
                out = scene_out() if scene else general_out()
                for v in videos:
                    g = store.begin_video(ws.predictions(name), v, {"model": name})
                    store.write_time_array(g, task, out[task])
                    store.write_time_array(g, "present", np.ones(T, bool))
                    store.mark_complete(g)
                models.append({"name": name, "task": task, "head": "tcn",
                               "fold": fold if fold == "official" else int(fold), "scene": scene, "tasks": [task],
                               "val_videos": [v for v in val if v in videos], "videos": videos})
    ws.predictions_dir.mkdir(parents=True, exist_ok=True)
    ws.predictions_index.write_text(json.dumps({"models": models}))
    return ws


CFG = dict(smooth={t: {"method": "none"} for t in ("au", "expr", "va")}, au_thresholds=0.5)


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation coefficient (population moments), written out here as the reference."""
    mx, my = x.mean(), y.mean()
    return float(2 * np.mean((x - mx) * (y - my)) / (x.var() + y.var() + (mx - my) ** 2))


def test_scene_heads_take_over_their_scenes_validation_and_test_videos(tmp_path):
    ws = build(tmp_path / "ws")
    run_postprocess(ws, PostConfig(**CFG), progress=False)
    systems = read_systems(ws)["systems"]
    for fold in ("official", "0", "1"):
        meta = systems[f"expr-{fold}"]
        for v in ("b", "t"):  # val and test videos of the scene
            assert meta["models"][v] == f"expr-tcn-{fold}-reaction"
            post = read_post(ws, f"expr-{fold}", v)
            np.testing.assert_array_equal(post["after"], scene_out()["expr"].argmax(1))
            np.testing.assert_array_equal(post["general"], general_out()["expr"].argmax(1))
        assert meta["models"]["a"] == f"expr-tcn-{fold}" and "general" not in read_post(ws, f"expr-{fold}", "a")
        assert set(meta["scenes"]["reaction"]["videos"]) >= {"b", "t"}
    np.testing.assert_allclose(read_post(ws, "va-official", "t")["after"], scene_out()["va"], atol=1e-6)
    run_postprocess(ws, PostConfig(**CFG, scenes=False), progress=False)
    meta = read_systems(ws)["systems"]["expr-official"]
    assert meta["models"]["t"] == "expr-tcn-official" and meta["scenes"] == {}


def test_evaluate_reports_each_scenes_score_beside_the_general_heads(tmp_path):
    ws = build(tmp_path / "ws")
    run_postprocess(ws, PostConfig(**CFG), progress=False)
    metrics = run_evaluate(ws, EvalConfig(plot_system="official")).metrics
    lab = labels_of()
    for fold, scored in (("official", ["b"]), ("0", ["c"]), ("1", ["b"])):
        r = metrics["expr"][fold]["scenes"]["reaction"]
        assert r["scored_on"] == scored and r["frames"] == T
        ref_scene = f1_score(lab["expr"], scene_out()["expr"].argmax(1), labels=range(8), average="macro",
                             zero_division=0)
        ref_general = f1_score(lab["expr"], general_out()["expr"].argmax(1), labels=range(8), average="macro",
                               zero_division=0)
        assert r["scene_head"]["f1"] == pytest.approx(ref_scene)
        assert r["general_head"]["f1"] == pytest.approx(ref_general)
        assert r["difference"] == pytest.approx(ref_scene - ref_general)
        assert r["scene_head"]["heads"] == [f"expr-tcn-{fold}-reaction"]
        assert r["general_head"]["heads"] == [f"expr-tcn-{fold}"]
        assert not r["scene_head"]["optimistic"] and not r["general_head"]["optimistic"]
    va = metrics["va"]["official"]["scenes"]["reaction"]
    g = general_out()["va"]
    assert va["general_head"]["ccc"] == pytest.approx((ccc(g[:, 0], lab["va"][:, 0]) + ccc(g[:, 1], lab["va"][:, 1])) / 2)
    assert va["scene_head"]["ccc"] == pytest.approx(1.0)
    assert "a" not in metrics["expr"]["official"]["scenes"]["reaction"]["scored_on"]
    report = (ws.eval_dir / "metrics.json").read_text()
    assert '"scenes"' in report and '"general_head"' in report


def test_a_scene_head_that_chose_its_epoch_on_the_scored_video_is_flagged_optimistic(tmp_path):
    ws = build(tmp_path / "ws", selected_scene=["b"])  # the usual ABAW protocol: epoch chosen on the val video
    run_postprocess(ws, PostConfig(**CFG), progress=False)
    r = run_evaluate(ws, EvalConfig(plot_system="official")).metrics["expr"]["official"]["scenes"]["reaction"]
    assert r["scene_head"]["optimistic"] is True
    assert "expr-tcn-official-reaction on b" in r["scene_head"]["optimistic_reason"]
    assert r["general_head"]["optimistic"] is False  # the general head chose nothing on b
    assert read_systems(ws)["systems"]["expr-official"]["optimistic"] is True  # the fold system uses that head


def test_the_index_warns_about_a_scene_member_it_does_not_know(tmp_path):
    import dataclasses

    from afwpipe.index import build_index
    from synth import make_affwild2_tree
    from test_index import _spec

    root = make_affwild2_tree(tmp_path / "aw", n_frames=12)
    spec = dataclasses.replace(_spec(root), scenes={"reaction": ["1-30-64x48", "10-60-64x48", "typo"]})
    index = build_index(spec, store.Workspace(tmp_path / "work"), progress=False)
    assert index.scenes == {"reaction": ["1-30-64x48", "10-60-64x48", "typo"]}
    warned = [w for w in index.warnings if "scenes.reaction" in w["path"]]
    assert [w["video"] for w in warned] == ["typo"] and "is no name of the index" in warned[0]["warning"]
