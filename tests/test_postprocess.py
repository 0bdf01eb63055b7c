"""Post-processing composed over hand-made predictions: nearest-frame fill, each smoother, fixed and tuned AU
thresholds, each voting rule and soft averaging across folds, scene heads overriding general heads, and
the before/after decisions and systems the evaluate stage reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import f1_score

from synth import complete_index
from afwpipe import store
from afwpipe.errors import PostprocessError
from afwpipe.postprocess import PostConfig, run_postprocess
from afwpipe.readers import read_post, read_prediction, read_systems

T = 40
FOLDS = ("official", "0", "1")
# a, b: split val; c: train (own validation video of fold 0); t: test (no labels); b is in scene "studio";
# u (with ``late=True``): a val video added to the index after the heads were trained (no fold, no head saw it)
VIDEOS = {"a": ("val", 0), "b": ("val", 1), "c": ("train", 0), "t": ("test", -1)}
LATE = {"u": ("val", -1)}
#: (train, val) videos of each fold's head, as train.split_videos gives them for VIDEOS (models/*/metrics.json)
TRAINED = {"official": (["c"], ["a", "b"]), "0": (["b"], ["a", "c"]), "1": (["a", "c"], ["b"])}


def labels_of(name: str) -> dict:
    """AU all twelve positive on frames 20..39; EXPR Neutral then Happiness; VA a ramp and a sine."""
    au = np.zeros((T, 12), np.int8)
    au[20:] = 1
    expr = np.where(np.arange(T) < 20, 0, 4).astype(np.int8)
    va = np.stack([np.linspace(-0.5, 0.5, T), 0.3 * np.sin(np.arange(T) / 5)], 1).astype(np.float32)
    return {"au": au, "expr": expr, "va": va}


def base_outputs(name: str) -> dict:
    """Raw outputs that separate the classes but sit below 0.5: AU 0.3 on positives, 0.2 elsewhere."""
    lab = labels_of(name)
    au = np.where(lab["au"] == 1, 0.3, 0.2).astype(np.float32)
    expr = np.full((T, 8), 0.05, np.float32)
    expr[np.arange(T), lab["expr"]] = 0.65
    return {"au": au, "expr": expr, "va": lab["va"] * 0.8}


def model_videos(fold: str, scene: str | None = None, videos_: dict = VIDEOS) -> tuple[list[str], list[str]]:
    """(videos, own validation videos) of a head, as the predict stage chooses them."""
    own = TRAINED[fold][1]
    videos = [v for v in videos_ if v in own or videos_[v][0] in ("val", "test")]
    if scene:
        videos, own = [v for v in videos if v == "b"], [v for v in own if v == "b"]
    return videos, own


_BASES: dict = {}


def make_post_workspace(root, edit=None, scene: bool = False, tasks=("au", "expr", "va"),
                        late: bool = False) -> store.Workspace:
    """Workspace with index, labels, ``models/<name>/metrics.json`` (train / val videos, :data:`TRAINED`; no video
    chose the epoch: ``selected_on: []``) and
    ``predictions/`` of heads ``<task>-tcn-<fold>`` for ``tasks`` (and ``<task>-tcn-official-studio`` with
    ``scene``); ``late`` adds video u (:data:`LATE`). ``edit(model, video, arrays)`` may change outputs in
    place. Built once per (scene, tasks, late) and copied (Zarr writes cost ~10 ms each)."""
    key = (scene, tuple(tasks), late)
    if key not in _BASES:
        import tempfile

        _BASES[key] = _build(Path(tempfile.mkdtemp(prefix="post-base-")) / "ws", scene, tasks,
                             {**VIDEOS, **LATE} if late else VIDEOS)
    shutil.copytree(_BASES[key].root, root, dirs_exist_ok=True)
    ws = store.Workspace(root)
    if edit is not None:
        for m in json.loads(ws.predictions_index.read_text())["models"]:
            for v in m["videos"]:
                arrays = read_prediction(ws, m["name"], v)
                before = {k: a.copy() for k, a in arrays.items()}
                edit(m["name"], v, arrays)
                changed = [k for k in arrays if not np.array_equal(arrays[k], before[k])]
                if changed:
                    g = store.open_store(ws.predictions(m["name"]))[v]
                    for k in changed:
                        store.write_time_array(g, k, arrays[k])
    return ws


def _build(root, scene: bool, tasks, videos_: dict) -> store.Workspace:
    ws = store.Workspace(root)
    ws.root.mkdir(parents=True, exist_ok=True)
    records = [{"name": v, "video": v, "split": s, "splits": {t: s for t in ("au", "expr", "va")}, "fold": f,
                "n_frames": T, "annotation_frames": {} if s == "test" else {"au": T, "expr": T, "va": T},
                "labelled": {t: 0 if s == "test" else T for t in ("au", "expr", "va")}}
               for v, (s, f) in videos_.items()]
    ws.index.write_text(json.dumps(complete_index({"dataset": "hand", "folds": {"k": 2}, "scenes": {"studio": ["b"]},
                                    "videos": records})))
    lab = store.open_store(ws.labels, "w")
    for v, (split, _) in videos_.items():
        if split != "test":
            g = lab.create_group(v)
            for task, arr in labels_of(v).items():
                store.write_time_array(g, task, arr)
    models = []
    heads = [(f, None) for f in FOLDS] + ([("official", "studio")] if scene else [])
    for task in tasks:
        for fold, sc in heads:
            name = f"{task}-tcn-{fold}" + (f"-{sc}" if sc else "")
            videos, own = model_videos(fold, sc, videos_)
            train, val = TRAINED[fold]
            if sc:
                train, val = [v for v in train if v == "b"], [v for v in val if v == "b"]
            (ws.models / name).mkdir(parents=True)
            (ws.models / name / "metrics.json").write_text(json.dumps({"train_videos": train, "val_videos": val,
                                                                       "selected_on": []}))
            for v in videos:
                g = store.begin_video(ws.predictions(name), v, {"model": name})
                store.write_time_array(g, task, base_outputs(v)[task])
                store.write_time_array(g, "present", np.ones(T, bool))
                store.mark_complete(g)
            models.append({"name": name, "task": task, "head": "tcn", "fold": fold if fold == "official" else int(fold),
                           "scene": sc, "tasks": [task], "val_videos": own, "videos": videos})
    ws.predictions_dir.mkdir(parents=True, exist_ok=True)
    ws.predictions_index.write_text(json.dumps({"models": models}))
    return ws


NO_SMOOTH = {t: {"method": "none"} for t in ("au", "expr", "va")}


def _cfg(**kw) -> PostConfig:
    base = dict(smooth=NO_SMOOTH, au_thresholds=0.5)
    base.update(kw)
    return PostConfig(**base)


def test_frames_without_a_face_take_the_nearest_face_frames_output(tmp_path):
    def edit(model, video, arrays):
        if model.startswith("au-") and video == "a":
            arrays["present"][5:10] = False
            arrays["au"][5:10] = 0.9  # garbage where no face was seen
    ws = make_post_workspace(tmp_path, edit, tasks=("au",))
    run_postprocess(ws, _cfg(), progress=False)
    out = read_post(ws, "au-official", "a")
    assert out["before"][5:10].all() and not out["before"][:5].any()  # raw outputs, threshold 0.5
    np.testing.assert_allclose(out["prob"][:20], 0.2, atol=1e-6)  # frames 5..9 filled from frames 4 / 10
    assert not out["after"][:20].any()
    run_postprocess(ws, _cfg(fill=False), progress=False)
    assert read_post(ws, "au-official", "a")["after"][5:10].all()


@pytest.mark.parametrize("method,size", [("gaussian", 3.0), ("median", 7), ("mean", 5)])
def test_each_smoother_runs_after_the_fill_with_its_params(tmp_path, method, size):
    rng = np.random.default_rng(0)

    def edit(model, video, arrays):
        task = model.split("-")[0]
        arrays[task] = (arrays[task] + rng.uniform(-0.1, 0.1, arrays[task].shape)).astype(np.float32)
        arrays["present"][12:15] = False
    task = {"gaussian": "au", "median": "expr", "mean": "va"}[method]
    ws = make_post_workspace(tmp_path, edit, tasks=(task,))
    spec = {"method": method, "sigma" if method == "gaussian" else "window": size}
    run_postprocess(ws, _cfg(smooth={task: spec}), progress=False)
    filled = store.read_array(ws.predictions(f"{task}-tcn-0"), "c", task).astype(np.float64)
    filled[12:15] = filled[[11, 11, 15]]  # frame 13 is 2 from 11 and from 15: the earlier wins
    expected = {"gaussian": lambda x: ndimage.gaussian_filter1d(x, size, axis=0, mode="nearest"),
                "median": lambda x: ndimage.median_filter(x, size=(size, 1), mode="nearest"),
                "mean": lambda x: ndimage.uniform_filter1d(x, size, axis=0, mode="nearest")}[method](filled)
    np.testing.assert_allclose(read_post(ws, f"{task}-0", "c")["prob"], expected, atol=1e-6)


def test_default_smoothing_is_the_seeds_per_task_and_recorded(tmp_path):
    ws = make_post_workspace(tmp_path, tasks=("va",))
    run_postprocess(ws, PostConfig(au_thresholds=0.5), progress=False)
    cfg = read_systems(ws)["config"]["smooth"]
    assert {t: (c["method"], c["sigma"], c["window"]) for t, c in cfg.items()} == {
        "au": ("gaussian", 5.0, 10), "expr": ("gaussian", 25.0, 25), "va": ("gaussian", 25.0, 50)}
    raw = store.read_array(ws.predictions("va-tcn-official"), "a", "va")
    expected = ndimage.gaussian_filter1d(raw.astype(np.float64), 25.0, axis=0, mode="nearest")
    np.testing.assert_allclose(read_post(ws, "va-official", "a")["prob"], expected, atol=1e-6)


def test_tuned_and_fixed_thresholds_decide_the_after_frames(tmp_path):
    ws = make_post_workspace(tmp_path, tasks=("au", "expr"))
    run_postprocess(ws, _cfg(au_thresholds="tuned"), progress=False)
    systems = read_systems(ws)["systems"]
    th = np.array(systems["au-official"]["thresholds"])
    assert np.all((th > 0.2) & (th <= 0.3))  # separates 0.2 (negative) from 0.3 (positive)
    out = read_post(ws, "au-official", "a")
    np.testing.assert_array_equal(out["after"], labels_of("a")["au"])
    assert not out["before"].any()  # 0.5 before post-processing
    assert systems["expr-official"]["thresholds"] is None
    run_postprocess(ws, _cfg(au_thresholds=0.25), progress=False)
    assert read_systems(ws)["systems"]["au-0"]["thresholds"] == [0.25] * 12
    np.testing.assert_array_equal(read_post(ws, "au-0", "c")["after"], labels_of("c")["au"])


GRID = np.round(np.arange(0.10, 0.9001, 0.05), 2)  # the default grid, written out by hand


def brute_force_thresholds(prob: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per AU the grid threshold with the best sklearn F1; ties to the one closest to 0.5, then the lower."""
    out = []
    for j in range(prob.shape[1]):
        f1 = np.array([f1_score(true[:, j], (prob[:, j] >= th).astype(int), zero_division=0) for th in GRID])
        best = GRID[np.isclose(f1, f1.max(), rtol=0, atol=1e-12)]
        out.append(min(best, key=lambda th: (abs(th - 0.5), th)))
    return np.array(out)


def _noisy_au(seed_of):
    """AU outputs overlapping between classes, a different level and spread per (fold, video): labels are not
    separable by any threshold."""
    def edit(model, video, arrays):
        task, _, fold = model.split("-")[:3]
        if task == "au":
            rng = np.random.default_rng(seed_of(fold, video))
            level, spread = rng.uniform(0.1, 0.5), rng.uniform(0.1, 0.3)
            lab = labels_of(video)["au"]
            arrays["au"] = np.clip(level + 0.2 * lab + rng.normal(0, spread, lab.shape), 0, 1).astype(np.float32)
    return edit


def _au_frames(ws, system_fold: str, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Raw AU outputs of (head fold, video) pairs (no smoothing in these tests) and their labels."""
    prob = np.concatenate([store.read_array(ws.predictions(f"au-tcn-{f}"), v, "au") for f, v in pairs])
    return prob.astype(np.float64), np.concatenate([labels_of(v)["au"] for _, v in pairs])


# Out-of-fold frames per system: numbered folds' heads on their own validation videos (TRAINED), minus the
# videos the system is scored on. official scores a, b; fold 0 scores a, c; fold 1 scores b.
OOF = {"official": [("0", "c")], "0": [("1", "b")], "1": [("0", "a"), ("0", "c")]}


def test_tuned_thresholds_come_from_out_of_fold_frames_never_the_scored_ones(tmp_path):
    seeds = {(f, v): i for i, (f, v) in enumerate((f, v) for f in FOLDS for v in ("a", "b", "c", "t"))}
    ws = make_post_workspace(tmp_path, _noisy_au(lambda f, v: seeds[(f, v)]), tasks=("au",))
    run_postprocess(ws, _cfg(au_thresholds="tuned"), progress=False)
    systems = read_systems(ws)["systems"]
    for fold, pairs in OOF.items():
        s = systems[f"au-{fold}"]
        expected = brute_force_thresholds(*_au_frames(ws, fold, pairs))
        np.testing.assert_allclose(s["thresholds"], expected, err_msg=fold)
        assert s["thresholds_from"] == "out-of-fold frames" and s["threshold_videos"] == [f"{f}/{v}" for f, v in pairs]
        assert not set(s["eval_videos"]) & {v for _, v in pairs}
        on_scored = brute_force_thresholds(*_au_frames(ws, fold, [(fold, v) for v in s["eval_videos"]]))
        assert not np.allclose(s["thresholds"], on_scored)  # the check can tell the two apart
        after = read_post(ws, f"au-{fold}", s["eval_videos"][0])
        np.testing.assert_array_equal(after["after"], (after["prob"] >= expected).astype(np.int8))
    # the scored frames do not move the thresholds: rewrite fold 1's head on its scored video b
    ws2 = make_post_workspace(tmp_path / "2", _noisy_au(lambda f, v: seeds[(f, v)] + 100 * ((f, v) == ("1", "b"))),
                              tasks=("au",))
    run_postprocess(ws2, _cfg(au_thresholds="tuned"), progress=False)
    assert read_systems(ws2)["systems"]["au-1"]["thresholds"] == systems["au-1"]["thresholds"]
    assert read_systems(ws2)["systems"]["au-0"]["thresholds"] != systems["au-0"]["thresholds"]  # b is fold 0's OOF


def test_tuned_on_scored_tunes_on_the_scored_frames_and_says_so(tmp_path):
    ws = make_post_workspace(tmp_path, _noisy_au(lambda f, v: 7 * FOLDS.index(f) + ord(v)), tasks=("au",))
    run_postprocess(ws, _cfg(au_thresholds="tuned_on_scored"), progress=False)
    s = read_systems(ws)["systems"]["au-0"]
    expected = brute_force_thresholds(*_au_frames(ws, "0", [("0", "a"), ("0", "c")]))
    np.testing.assert_allclose(s["thresholds"], expected)
    assert s["thresholds_from"] == "scored frames (optimistic)" and s["optimistic"]
    assert "tuned on the scored frames" in s["optimistic_reason"]


def test_without_out_of_fold_frames_thresholds_fall_back_to_half_with_a_warning(tmp_path):
    ws = make_post_workspace(tmp_path, tasks=("au",))
    index = json.loads(ws.predictions_index.read_text())
    index["models"] = [m for m in index["models"] if m["fold"] == "official"]  # only official trained
    ws.predictions_index.write_text(json.dumps(index))
    run_postprocess(ws, _cfg(au_thresholds="tuned"), progress=False)
    s = read_systems(ws)["systems"]["au-official"]
    assert s["thresholds"] == [0.5] * 12 and s["thresholds_from"] == "0.5 fallback (no out-of-fold frame)"
    assert s["threshold_videos"] == [] and "no labelled AU frame" in s["warnings"][0]
    assert not read_post(ws, "au-official", "a")["after"].any()  # base outputs 0.2 / 0.3 stay below 0.5


def test_ensemble_is_scored_only_on_videos_no_member_trained_or_early_stopped_on(tmp_path):
    # u joined the val split after training: no head's metrics.json lists it; a, b, c were seen by some member
    ws = make_post_workspace(tmp_path, tasks=("au", "va"), late=True)
    run_postprocess(ws, _cfg(), progress=False)
    systems = read_systems(ws)["systems"]
    for track in ("au", "va"):
        ens = systems[f"{track}-ensemble"]
        assert ens["videos"] == ["a", "b", "t", "u"] and ens["eval_videos"] == ["u"]
        assert ens["seen_videos"] == ["a", "b"] and ens["optimistic"] is False and ens["optimistic_reason"] is None
    # without u, every labelled video was seen: scored on the val split, flagged
    ws = make_post_workspace(tmp_path / "2", tasks=("au", "va"))
    run_postprocess(ws, _cfg(), progress=False)
    ens = read_systems(ws)["systems"]["au-ensemble"]
    assert ens["eval_videos"] == ["a", "b"] and ens["optimistic"] is True
    assert "trained or early-stopped on every labelled video" in ens["optimistic_reason"]
    # the fallback takes each track's own val split: b is VA-train but AU-val
    index = json.loads(ws.index.read_text())
    index["videos"][1]["splits"]["va"] = "train"
    ws.index.write_text(json.dumps(complete_index(index)))
    run_postprocess(ws, _cfg(), progress=False)
    assert read_systems(ws)["systems"]["au-ensemble"]["eval_videos"] == ["a", "b"]
    assert read_systems(ws)["systems"]["va-ensemble"]["eval_videos"] == ["a"]


def test_seen_videos_are_recomputed_from_the_index_without_metrics_json(tmp_path):
    from afwpipe.postprocess import seen_videos

    ws = make_post_workspace(tmp_path, tasks=("au",), late=True)
    index = ws.read_index()
    rec = {"name": "au-tcn-official", "task": "au", "fold": "official", "scene": None}
    assert seen_videos(ws, index, rec) == {"c"}  # metrics.json: trained on c, no video chose its epoch
    _set_selected(ws, None)  # a head trained before selected_on existed chose its epoch on its val videos
    assert seen_videos(ws, index, rec) == {"a", "b", "c"}  # trained before u existed
    shutil.rmtree(ws.models / "au-tcn-official")
    # split_videos: u is an official val video now, counted as choosing the epoch (the conservative reading)
    assert seen_videos(ws, index, rec) == {"a", "b", "c", "u"}
    (ws.models / "au-tcn-0").joinpath("metrics.json").write_text("{}")
    with pytest.raises(PostprocessError, match="au-tcn-0/metrics.json: no train_videos"):
        seen_videos(ws, index, {**rec, "name": "au-tcn-0", "fold": 0})


def _fold_edit(values: dict):
    """Per-fold overrides of video a: values[(task, fold)] -> function(arrays[task])."""
    def edit(model, video, arrays):
        task, _, fold = model.split("-")[:3]
        if video == "a" and (task, fold) in values:
            values[(task, fold)](arrays[task])
    return edit


def test_vote_ensemble_majority_per_au_majority_class_and_mean_va(tmp_path):
    def au(fold_yes):
        def f(a):
            a[:] = 0.1
            a[:, fold_yes] = 0.9
        return f

    def expr(cls):
        def f(e):
            e[:] = 0.0
            e[:, cls] = 1.0
        return f
    edits = {("au", "official"): au([0, 1, 2]), ("au", "0"): au([0, 1]), ("au", "1"): au([0]),
             ("expr", "official"): expr(3), ("expr", "0"): expr(3), ("expr", "1"): expr(5),
             ("va", "official"): lambda v: v.__setitem__(slice(None), 0.6),
             ("va", "0"): lambda v: v.__setitem__(slice(None), 0.0),
             ("va", "1"): lambda v: v.__setitem__(slice(None), -0.3)}
    ws = make_post_workspace(tmp_path, _fold_edit(edits))
    run_postprocess(ws, _cfg(ensemble="vote"), progress=False)
    a = {t: read_post(ws, f"{t}-ensemble", "a") for t in ("au", "expr", "va")}
    assert (a["au"]["after"][:, :2] == 1).all() and (a["au"]["after"][:, 2:] == 0).all()  # 3/3, 2/3 yes; 1/3 no
    assert (a["expr"]["after"] == 3).all()
    np.testing.assert_allclose(a["va"]["after"], 0.1, atol=1e-6)
    systems = read_systems(ws)["systems"]
    assert systems["au-ensemble"]["videos"] == ["a", "b", "t"]  # c is only fold 0's
    assert systems["au-ensemble"]["eval_videos"] == ["a", "b"]
    assert systems["au-ensemble"]["models"]["a"] == "au-tcn-official+au-tcn-0+au-tcn-1"


def test_vote_ties_follow_the_tie_setting_and_summed_probabilities(tmp_path):
    def au(p):
        return lambda a: a.__setitem__(slice(None), p)

    def expr(probs):
        return lambda e: e.__setitem__(slice(None), np.array(probs, np.float32))
    edits = {("au", "official"): au(0.9), ("au", "0"): au(0.1),
             ("expr", "official"): expr([0.6, 0.4, 0, 0, 0, 0, 0, 0]),
             ("expr", "0"): expr([0, 0.9, 0.1, 0, 0, 0, 0, 0])}
    ws = make_post_workspace(tmp_path, _fold_edit(edits), tasks=("au", "expr"))
    for tie in (1, 0):
        run_postprocess(ws, _cfg(au_vote_tie=tie), progress=False)
        # three folds: the third (fold 1) keeps 0.2/0.3 AU outputs (no) -> 1 yes of 3 -> 0 whatever the tie
        assert not read_post(ws, "au-ensemble", "a")["after"].any()
    # EXPR: official says 0, fold 0 says 1, fold 1 says the label (0 then 4): frames 20.. tie 1/1/4 -> class 1
    e = read_post(ws, "expr-ensemble", "a")["after"]
    assert (e[:20] == 0).all() and (e[20:] == 1).all()  # tie among 0/1/4 broken by summed probability (0.9+0.4)


def test_soft_ensemble_averages_processed_probabilities_before_thresholding(tmp_path):
    def au(p):
        return lambda a: a.__setitem__(slice(None), p)
    edits = {("au", "official"): au(0.9), ("au", "0"): au(0.45), ("au", "1"): au(0.3)}
    ws = make_post_workspace(tmp_path, _fold_edit(edits), tasks=("au", "expr"))
    run_postprocess(ws, _cfg(ensemble="vote"), progress=False)
    assert not read_post(ws, "au-ensemble", "a")["after"].any()  # votes 1, 0, 0
    run_postprocess(ws, _cfg(ensemble="soft"), progress=False)
    out = read_post(ws, "au-ensemble", "a")
    np.testing.assert_allclose(out["prob"], 0.55, atol=1e-6)
    assert out["after"].all()  # mean 0.55 >= 0.5
    expr = read_post(ws, "expr-ensemble", "a")
    np.testing.assert_array_equal(expr["after"], labels_of("a")["expr"])


def test_scene_head_replaces_the_general_head_for_its_videos(tmp_path):
    def edit(model, video, arrays):
        if model == "va-tcn-official-studio":
            arrays["va"][:] = -0.7
    ws = make_post_workspace(tmp_path, edit, scene=True, tasks=("va",))
    run_postprocess(ws, _cfg(), progress=False)
    b, a = read_post(ws, "va-official", "b"), read_post(ws, "va-official", "a")
    np.testing.assert_allclose(b["after"], -0.7, atol=1e-6)
    np.testing.assert_allclose(b["before"], base_outputs("b")["va"], atol=1e-6)  # before: the general head
    np.testing.assert_allclose(a["after"], base_outputs("a")["va"], atol=1e-6)  # not in the scene
    systems = read_systems(ws)["systems"]
    assert systems["va-official"]["models"] == {"a": "va-tcn-official", "b": "va-tcn-official-studio",
                                                "t": "va-tcn-official"}
    assert "va-official-studio" not in systems  # scene heads feed their fold's system
    run_postprocess(ws, _cfg(scenes=False), progress=False)
    np.testing.assert_allclose(read_post(ws, "va-official", "b")["after"], base_outputs("b")["va"], atol=1e-6)


def test_mtl_heads_can_feed_a_track(tmp_path):
    ws = make_post_workspace(tmp_path, tasks=("va",))
    index = json.loads(ws.predictions_index.read_text())
    for m in index["models"]:
        if m["task"] == "va":
            m["task"] = "mtl"
    ws.predictions_index.write_text(json.dumps(index))
    summary = run_postprocess(ws, _cfg(sources={"va": "mtl"}), progress=False)
    assert {s.name for s in summary.systems} >= {"va-official", "va-ensemble"}
    assert "postprocess:" in summary.line()
    with pytest.raises(PostprocessError, match="va-tcn-official has no AU output"):
        run_postprocess(ws, _cfg(sources={"au": "mtl", "va": "mtl"}), progress=False)


def test_bad_settings_are_clear_errors():
    with pytest.raises(PostprocessError, match="unknown key.*smoothing"):
        PostConfig.from_params({"smoothing": {}})
    with pytest.raises(PostprocessError, match=r"smooth.au.method: 'box'"):
        PostConfig.from_params({"smooth": {"au": {"method": "box"}}})
    with pytest.raises(PostprocessError, match="ensemble: 'mean'"):
        PostConfig.from_params({"ensemble": "mean"})
    with pytest.raises(PostprocessError, match="neither 'tuned' nor 'tuned_on_scored' nor a number"):
        PostConfig.from_params({"au_thresholds": "best"})
    cfg = PostConfig.from_params({"smooth": {"va": {"method": "median", "window": None}}})
    assert cfg.smooth["va"] == {"method": "median", "sigma": 25.0, "window": 50}


def test_stage_reads_params_and_prints_one_line(tmp_path, capsys):
    from stages import postprocess as stage

    make_post_workspace(tmp_path / "hand", tasks=("au",))
    params = {"dataset": {"name": "sample", "root": None}, "workdir": str(tmp_path),
              "postprocess": {"au_thresholds": "tuned", "ensemble": "soft",
                              "smooth": {"au": {"method": "median", "window": 3}}}}
    (tmp_path / "hand").rename(tmp_path / "sample")
    summary = stage.run(params)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("postprocess: 4 systems") and "au median w3" in out[0] and "soft" in out[0]
    assert "before -> after: au ensemble F1 0.0000 -> 1.0000 (optimistic: " in out[0]
    assert summary.cfg.smooth["au"]["window"] == 3


def _ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation coefficient, written out."""
    mx, my = x.mean(), y.mean()
    return float(2 * np.mean((x - mx) * (y - my)) / (x.var() + y.var() + (mx - my) ** 2))


def test_summary_line_gives_before_and_after_per_track_and_says_when_smoothing_lowered_it(tmp_path):
    ws = make_post_workspace(tmp_path, tasks=("expr", "va"), late=True)
    cfg = PostConfig(smooth={"expr": {"method": "none"}, "va": {"method": "gaussian", "sigma": 25}})
    line = run_postprocess(ws, cfg, progress=False).line()
    out, true = read_post(ws, "va-ensemble", "u"), labels_of("u")["va"]  # u: the ensemble's only unseen video
    before, after = (np.mean([_ccc(out[k][:, j].astype(np.float64), true[:, j]) for j in (0, 1)])
                     for k in ("before", "after"))
    assert after < before - 0.1  # σ 25 flattens the arousal sine of a 40-frame video
    assert f"expr ensemble F1 0.2500 -> 0.2500, va ensemble CCC {before:.4f} -> {after:.4f} (lower after) in" in line
    # with every labelled video seen by a member the ensemble's numbers are flagged in the line too
    ws = make_post_workspace(tmp_path / "2", tasks=("va",))
    line = run_postprocess(ws, cfg, progress=False).line()
    assert "va ensemble CCC" in line and "lower after; optimistic: members trained or early-stopped" in line


# -- smoothing chosen on out-of-fold frames (issue 14) ------------------------------------------------------
SIGMAS = [0.0, 1.0, 2.0, 4.0, 8.0]


def _noisy_va(seed_of):
    """VA outputs: the labels plus white noise of a different spread per (fold, video), so the best σ differs."""
    def edit(model, video, arrays):
        task, _, fold = model.split("-")[:3]
        if task == "va":
            rng = np.random.default_rng(seed_of(fold, video))
            arrays["va"] = (labels_of(video)["va"] + rng.normal(0, rng.uniform(0.02, 0.4), (T, 2))).astype(np.float32)
    return edit


def _ccc_np(x, y):
    return 2 * np.mean((x - x.mean()) * (y - y.mean())) / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def brute_force_sigma(ws, pairs, labels) -> tuple[float, list[float]]:
    """σ of SIGMAS with the best mean CCC (scipy smoothing, numpy CCC) on the pooled frames of ``pairs``."""
    raw = [store.read_array(ws.predictions(f"va-tcn-{f}"), v, "va").astype(np.float64) for f, v in pairs]
    true = np.concatenate([labels[v] for _, v in pairs])
    scores = []
    for s in SIGMAS:
        pred = np.clip(np.concatenate([r if s == 0 else ndimage.gaussian_filter1d(r, s, axis=0, mode="nearest")
                                       for r in raw]), -1, 1)
        scores.append(np.mean([_ccc_np(pred[:, j], true[:, j]) for j in range(2)]))
    return SIGMAS[int(np.argmax(scores))], scores


def _tuned_va_cfg():
    return _cfg(smooth={**NO_SMOOTH, "va": {"method": "gaussian", "sigma": "tuned"}}, smooth_grid=SIGMAS)


def test_tuned_smoothing_is_the_brute_force_best_sigma_on_out_of_fold_frames(tmp_path):
    seeds = {(f, v): 11 * i + 3 for i, (f, v) in enumerate((f, v) for f in FOLDS for v in ("a", "b", "c", "t"))}
    ws = make_post_workspace(tmp_path, _noisy_va(lambda f, v: seeds[(f, v)]), tasks=("va",))
    summary = run_postprocess(ws, _tuned_va_cfg(), progress=False)
    systems = read_systems(ws)["systems"]
    labels = {v: labels_of(v)["va"] for v in VIDEOS}
    chosen = {}
    for fold, pairs in OOF.items():
        s = systems[f"va-{fold}"]
        best, scores = brute_force_sigma(ws, pairs, labels)
        chosen[fold] = best
        assert s["smoothing"]["sigma"] == best and s["smoothing"]["from"] == "out-of-fold frames", fold
        assert s["smoothing"]["videos"] == [f"{f}/{v}" for f, v in pairs]
        np.testing.assert_allclose(list(s["smoothing"]["scores"].values()), scores, rtol=1e-6)
        raw = store.read_array(ws.predictions(f"va-tcn-{fold}"), s["eval_videos"][0], "va").astype(np.float64)
        expected = raw if best == 0 else ndimage.gaussian_filter1d(raw, best, axis=0, mode="nearest")
        np.testing.assert_allclose(read_post(ws, f"va-{fold}", s["eval_videos"][0])["prob"], expected, rtol=1e-5)
    assert len(set(chosen.values())) > 1, chosen  # the folds' tuning frames lead to different choices
    assert systems["va-ensemble"]["smoothing"]["sigma"] == chosen
    assert "va gaussian σ tuned (official {official:g}, 0 {0:g}, 1 {1:g})".format(
        official=chosen["official"], *[chosen["0"], chosen["1"]]) in summary.line()
    # the scored video's labels never move the choice: rewrite b's VA labels (fold 1 scores b; fold 0 tunes on it)
    ws2 = make_post_workspace(tmp_path / "2", _noisy_va(lambda f, v: seeds[(f, v)]), tasks=("va",))
    g = store.open_store(ws2.labels)["b"]
    store.write_time_array(g, "va", (-labels_of("b")["va"][::-1]).copy())
    run_postprocess(ws2, _tuned_va_cfg(), progress=False)
    systems2 = read_systems(ws2)["systems"]
    assert systems2["va-1"]["smoothing"] == systems["va-1"]["smoothing"]
    assert systems2["va-0"]["smoothing"]["scores"] != systems["va-0"]["smoothing"]["scores"]


def test_tuned_smoothing_settings_are_checked():
    with pytest.raises(PostprocessError, match="window: tuned"):
        PostConfig(smooth={"va": {"method": "gaussian", "window": "tuned"}})
    with pytest.raises(PostprocessError, match="smooth_grid"):
        PostConfig(smooth_grid=[-1])
    cfg = PostConfig(smooth={"au": {"method": "median", "window": "tuned"}})
    assert cfg.tuned_smoothing("au") == "window" and cfg.tuned_smoothing("va") is None
    with pytest.raises(PostprocessError, match="whole frames"):
        PostConfig(smooth={"au": {"method": "median", "window": "tuned"}}, smooth_grid=[0, 2.5]).smooth_candidates("au")


def _noisy_expr(seed_of):
    """EXPR probabilities: the true class raised by 0.15 over noise of a different spread per (fold, video)."""
    def edit(model, video, arrays):
        task, _, fold = model.split("-")[:3]
        if task == "expr":
            rng = np.random.default_rng(seed_of(fold, video))
            p = rng.uniform(0, rng.uniform(0.3, 1.5), (T, 8))
            p[np.arange(T), labels_of(video)["expr"]] += 0.15
            arrays["expr"] = (p / p.sum(1, keepdims=True)).astype(np.float32)
    return edit


def test_tuned_window_is_the_brute_force_best_sklearn_macro_f1_on_out_of_fold_frames(tmp_path):
    windows = [1, 3, 5, 9, 15]
    seeds = {(f, v): 7 * i + 1 for i, (f, v) in enumerate((f, v) for f in FOLDS for v in ("a", "b", "c", "t"))}
    ws = make_post_workspace(tmp_path, _noisy_expr(lambda f, v: seeds[(f, v)]), tasks=("expr",))
    cfg = _cfg(smooth={**NO_SMOOTH, "expr": {"method": "mean", "window": "tuned"}}, smooth_grid=windows)
    run_postprocess(ws, cfg, progress=False)
    systems = read_systems(ws)["systems"]
    for fold, pairs in OOF.items():
        raw = [store.read_array(ws.predictions(f"expr-tcn-{f}"), v, "expr").astype(np.float64) for f, v in pairs]
        true = np.concatenate([labels_of(v)["expr"] for _, v in pairs])
        f1 = [f1_score(true, np.concatenate([ndimage.uniform_filter1d(r, w, axis=0, mode="nearest") for r in raw])
                       .argmax(1), labels=range(8), average="macro", zero_division=0) for w in windows]
        best = windows[int(np.argmax(f1))]
        s = systems[f"expr-{fold}"]
        assert s["smoothing"]["window"] == best and type(s["smoothing"]["window"]) is int, (fold, f1)
        np.testing.assert_allclose(list(s["smoothing"]["scores"].values()), f1, rtol=1e-9)


def test_without_out_of_fold_frames_smoothing_keeps_the_default_with_a_warning(tmp_path, capsys):
    from stages import postprocess as stage

    ws = make_post_workspace(tmp_path / "sample", tasks=("va",))
    index = json.loads(ws.predictions_index.read_text())
    index["models"] = [m for m in index["models"] if m["fold"] == "official"]  # only official trained
    ws.predictions_index.write_text(json.dumps(index))
    params = {"dataset": {"name": "sample", "root": None}, "workdir": str(tmp_path),
              "postprocess": {"smooth": {"va": {"sigma": "tuned"}}}}
    stage.run(params)
    s = read_systems(ws)["systems"]["va-official"]
    assert s["smoothing"] == {"method": "gaussian", "sigma": 25.0, "from": "default (no out-of-fold frame)",
                              "videos": [], "scores": {}}
    assert "smoothing sigma 25 (the default)" in s["warnings"][0]
    assert "va gaussian σ tuned (official 25)" in capsys.readouterr().out


def test_cli_tune_smoothing_tunes_each_tracks_own_parameter_on_the_given_grid(tmp_path):
    import yaml
    from click.testing import CliRunner

    from afwpipe.cli import main
    from conftest import REPO

    ws = make_post_workspace(tmp_path / "sample", tasks=("expr", "va"))
    params = {"workdir": str(tmp_path), "postprocess": {"smooth": {"expr": {"method": "median"}}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    res = CliRunner().invoke(main, ["--params", str(tmp_path / "p.yaml"), "--manifest", str(REPO / "data_manifest.yaml"),
                                    "postprocess", "--tune-smoothing", "--smooth-grid", "1,3,5"])
    assert res.exit_code == 0, res.output
    systems = read_systems(ws)["systems"]
    assert list(systems["expr-0"]["smoothing"]["scores"]) == ["1", "3", "5"]
    assert systems["expr-0"]["smoothing"]["method"] == "median" and "window" in systems["expr-0"]["smoothing"]
    assert list(systems["va-0"]["smoothing"]["scores"]) == ["1", "3", "5"] and "sigma" in systems["va-0"]["smoothing"]
    assert "expr median w tuned (official " in res.output and "va gaussian σ tuned (official " in res.output


def test_tuned_au_smoothing_is_chosen_together_with_thresholds_tuned_on_the_same_frames(tmp_path):
    sigmas = [0.0, 2.0, 6.0]
    seeds = {(f, v): 5 * i + 2 for i, (f, v) in enumerate((f, v) for f in FOLDS for v in ("a", "b", "c", "t"))}
    ws = make_post_workspace(tmp_path, _noisy_au(lambda f, v: seeds[(f, v)]), tasks=("au",))
    cfg = _cfg(au_thresholds="tuned", smooth={**NO_SMOOTH, "au": {"method": "gaussian", "sigma": "tuned"}},
               smooth_grid=sigmas)
    run_postprocess(ws, cfg, progress=False)
    systems = read_systems(ws)["systems"]
    for fold, pairs in OOF.items():
        prob, true = _au_frames(ws, fold, pairs)
        lengths = np.cumsum([0] + [T] * len(pairs))
        f1 = []
        for s in sigmas:  # per video smoothing, then per-AU thresholds by brute force, then sklearn mean F1
            sm = np.concatenate([prob[a:b] if s == 0 else ndimage.gaussian_filter1d(prob[a:b], s, axis=0, mode="nearest")
                                 for a, b in zip(lengths[:-1], lengths[1:])])
            th = brute_force_thresholds(sm, true)
            f1.append(np.mean([f1_score(true[:, j], (sm[:, j] >= th[j]).astype(int), zero_division=0)
                               for j in range(12)]))
        best = sigmas[int(np.argmax(f1))]
        s = systems[f"au-{fold}"]
        assert s["smoothing"]["sigma"] == best, (fold, f1)
        np.testing.assert_allclose(list(s["smoothing"]["scores"].values()), f1, rtol=1e-9)
        # the thresholds are then tuned on the frames smoothed with the chosen σ (each fold its own choice)
        chosen = {f: systems[f"au-{f}"]["smoothing"]["sigma"] for f in FOLDS}
        sm = np.concatenate([prob[a:b] if chosen[f] == 0 else ndimage.gaussian_filter1d(prob[a:b], chosen[f], axis=0,
                                                                                         mode="nearest")
                             for (f, _), a, b in zip(pairs, lengths[:-1], lengths[1:])])
        np.testing.assert_allclose(s["thresholds"], brute_force_thresholds(sm, true))


def test_tuned_smoothing_ties_go_to_the_first_candidate(tmp_path):
    # the hand-made outputs give the same decisions under every window of the grid (EXPR: the argmax stays
    # the label; AU: every probability stays under the 0.5 threshold), so every candidate scores the same
    # and the first one of the grid must win, not the smallest or the last
    ws = make_post_workspace(tmp_path, tasks=("au", "expr"))
    smooth = {**NO_SMOOTH, "au": {"method": "median", "window": "tuned"}, "expr": {"method": "mean", "window": "tuned"}}
    run_postprocess(ws, _cfg(smooth=smooth, smooth_grid=[5, 3, 1, 9]), progress=False)
    systems = read_systems(ws)["systems"]
    for track in ("au", "expr"):
        for fold in OOF:
            s = systems[f"{track}-{fold}"]["smoothing"]
            assert s["from"] == "out-of-fold frames" and len(set(s["scores"].values())) == 1, (track, fold, s)
            assert s["window"] == 5, (track, fold, s)


def test_videos_a_scene_head_trained_on_are_never_the_ensembles_scored_videos(tmp_path):
    # u is a val video no general head saw; the official fold's scene head (studio) trained on it
    ws = make_post_workspace(tmp_path, scene=True, tasks=("au",), late=True)
    (ws.models / "au-tcn-official-studio" / "metrics.json").write_text(
        json.dumps({"train_videos": ["u"], "val_videos": ["b"]}))
    run_postprocess(ws, _cfg(), progress=False)
    ens = read_systems(ws)["systems"]["au-ensemble"]
    assert ens["seen_videos"] == ["a", "b", "u"]
    # every labelled video was seen by a member: not scored as unseen on u, but on the val split, flagged
    assert ens["eval_videos"] == ["a", "b", "u"] and ens["optimistic"] is True
    assert "trained or early-stopped on every labelled video" in ens["optimistic_reason"]
    # without scene heads the system never used that head: u is unseen and scored
    run_postprocess(ws, _cfg(scenes=False), progress=False)
    ens = read_systems(ws)["systems"]["au-ensemble"]
    assert ens["eval_videos"] == ["u"] and ens["optimistic"] is False


def _set_selected(ws, selected):
    """Rewrite every head's metrics.json ``selected_on``: ``selected(head metrics) -> list``, or None to drop the
    key (a head trained before train.epoch_selection existed)."""
    for path in ws.models.glob("*/metrics.json"):
        m = json.loads(path.read_text())
        m.pop("selected_on", None)
        if selected is not None:
            m["selected_on"] = selected(m)
        path.write_text(json.dumps(m))


def _expected_optimistic(systems: dict) -> dict:
    """The rule written out from systems.json alone: a system is optimistic exactly when a scored video chose
    a member head's epoch, tuned its (or, for the ensemble, its fold systems') thresholds or smoothing, or
    trained a member (the ensemble's seen videos)."""
    out = {}
    for name, s in systems.items():
        members = [m for m in systems.values() if m["track"] == s["track"] and m["fold"] != "ensemble"] \
            if s["fold"] == "ensemble" else [s]
        tuning = {p.split("/")[1] for m in members for p in m["threshold_videos"] + m["smoothing"].get("videos", [])}
        chose = set(s["selected_on"]) | tuning | set(s["seen_videos"])
        out[name] = bool(set(s["eval_videos"]) & chose)
    return out


def test_a_system_is_optimistic_exactly_when_a_scored_video_chose_its_epoch_or_tuning(tmp_path):
    cfg = _cfg(au_thresholds="tuned", smooth={"au": {"method": "none"}, "expr": {"method": "none"},
                                               "va": {"method": "gaussian", "sigma": "tuned"}})
    # no video chose an epoch (a fixed epoch count, or an inner split): u is unseen, so nothing is optimistic
    ws = make_post_workspace(tmp_path / "fixed", tasks=("au", "va"), late=True)
    run_postprocess(ws, cfg, progress=False)
    systems = read_systems(ws)["systems"]
    assert {n: s["optimistic"] for n, s in systems.items()} == _expected_optimistic(systems)
    assert not any(s["optimistic"] for s in systems.values()) and systems["va-0"]["selected_on"] == []
    # inner split: fold 0's head chose its epoch on b, one of its training videos: still honest
    _set_selected(ws, lambda m: m["train_videos"][:1])
    run_postprocess(ws, cfg, progress=False)
    systems = read_systems(ws)["systems"]
    assert systems["au-0"]["selected_on"] == ["b"] and not any(s["optimistic"] for s in systems.values())
    # the usual ABAW protocol (train.epoch_selection val), and heads trained before selected_on existed: each
    # fold system is scored on the videos that chose its head's epoch
    for selected in (lambda m: m["val_videos"], None):
        _set_selected(ws, selected)
        run_postprocess(ws, cfg, progress=False)
        systems = read_systems(ws)["systems"]
        assert {n: s["optimistic"] for n, s in systems.items()} == _expected_optimistic(systems)
        for track in ("au", "va"):
            assert [f for f in FOLDS if systems[f"{track}-{f}"]["optimistic"]] == list(FOLDS)
            assert not systems[f"{track}-ensemble"]["optimistic"]  # scored on u, which chose nothing
        assert systems["au-0"]["optimistic_reason"] == (
            "epochs chosen on scored videos (train.epoch_selection val, the usual ABAW protocol): au-tcn-0 on a, c")
    # an ensemble scored on the val split (no unseen video): its fold systems' thresholds and smoothing were
    # tuned on those videos, and its members trained on them
    ws = make_post_workspace(tmp_path / "ens", tasks=("au", "va"))
    run_postprocess(ws, cfg, progress=False)
    systems = read_systems(ws)["systems"]
    assert {n: s["optimistic"] for n, s in systems.items()} == _expected_optimistic(systems)
    reason = systems["au-ensemble"]["optimistic_reason"]
    assert "trained or early-stopped on every labelled video" in reason
    assert "thresholds or smoothing tuned on scored videos: a, b" in reason
    assert not systems["au-0"]["optimistic"]
