"""Issue 23 §3, a whole-dataset member in the vote: ``train.folds`` may name ``all`` (a head trained on every labelled
train+val video of its task, never a test one, with no validation video); it has no score of its own, it votes in
the ensemble (postprocess, analyze), and the ensemble is flagged optimistic on the videos it trained on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from afwpipe import store
from afwpipe.evaluate import run_evaluate
from synth import as_index
from afwpipe.folds import ALL, parse_fold, split_videos, summary_split
from afwpipe.honesty import whole_dataset_members
from afwpipe.inference import load_model
from afwpipe.postprocess import run_postprocess
from afwpipe.predict import PredictConfig, run_predict
from afwpipe.readers import read_post, read_predictions_index, read_systems
from afwpipe.summary import training_table
from afwpipe.train import TrainConfig, train
from test_features_per_task import make_workspace_with_test
from test_postprocess import T, _cfg, _fold_edit, make_post_workspace

TCN = dict(channels=16, mlp_dim=32, dilations=(1, 2), dropout=0.1)


def test_all_trains_on_every_labelled_train_and_val_name_of_the_task_and_never_a_test_one():
    """x: EXPR-val, VA-train; t: AU-test with an AU annotation; n: unlabelled for AU; folds 0 / 1 / -1."""
    def rec(name, fold, labelled=5, **splits):
        return {"name": name, "video": name, "fold": fold, "labelled": dict.fromkeys(("au", "expr", "va"), labelled),
                "split": summary_split(splits), "splits": splits}

    index = as_index({"folds": {"k": 2}, "videos": [
        rec("x", 0, au="train", expr="val", va="train"), rec("y", 1, au="val", expr="train", va="val"),
        rec("t", 0, au="test", expr="train", va="train"), rec("w", -1, au="train", expr="train", va="val"),
        rec("z", -1, au="test", expr="test", va="test"), rec("n", 1, labelled=0, au="train", expr="train", va="train")]})
    assert split_videos(index, ("au",), ALL) == (["w", "x", "y"], [])  # t is AU-test, z test, n unlabelled
    assert split_videos(index, ("expr",), ALL) == (["t", "w", "x", "y"], [])
    assert split_videos(index, ("va",), "all") == (["t", "w", "x", "y"], [])
    assert parse_fold("all") == ALL and TrainConfig(task="va", fold="all").run_name == "va-tmf-all"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    # v0..v5 train, v6 val, v7 test (no labels): fold all trains on v0..v6
    ws = make_workspace_with_test(tmp_path_factory.mktemp("all"), 8, 80)
    for fold in ("official", ALL):
        train(ws, TrainConfig(task="au", head="tcn", features=["vis", "aud"], fold=fold, k=32, epochs=3, patience=0,
                              lr=3e-3, batch_size=8, head_kwargs=TCN, device="cpu"), progress=False)
    return ws


def test_the_all_head_has_no_validation_video_and_no_score(ws, tmp_path):
    m = json.loads((ws.models / "au-tcn-all" / "metrics.json").read_text())
    labelled = [f"v{i}" for i in range(7)]
    assert sorted(m["train_videos"] + m["selected_on"]) == labelled and m["selected_on"]  # inner split chose
    assert m["val_videos"] == [] and m["best"] is None and m["fold"] == ALL
    _, ckpt = load_model(ws.models / "au-tcn-all" / "model.pt")
    assert ckpt.val_videos == [] and ckpt.best_score is None
    # epoch_selection val: nothing to choose on, exactly `epochs` run and the last is kept
    r = train(ws, TrainConfig(task="au", head="tcn", features=["vis", "aud"], fold=ALL, k=32, epochs=2, patience=1,
                              epoch_selection="val", batch_size=8, head_kwargs=TCN, device="cpu"),
              progress=False, out_dir=tmp_path / "val")
    assert r.selected_on == [] and r.epochs_run == 2 and r.best_epoch == 2 and r.n_train == 7 and r.n_val == 0
    assert "no validation video (fold all" in r.line()


def test_predict_postprocess_and_evaluate_include_the_member_and_never_score_it(ws):
    run_predict(ws, PredictConfig(head="tcn", folds=["official", "all"], device="cpu"), progress=False)
    models = {m["name"]: m for m in read_predictions_index(ws)}
    assert models["au-tcn-all"]["videos"] == ["v6", "v7"] and models["au-tcn-all"]["val_videos"] == []
    assert models["au-tcn-all"]["fold"] == ALL
    run_postprocess(ws, _cfg(), progress=False)
    systems = read_systems(ws)["systems"]
    assert systems["au-all"]["eval_videos"] == [] and "fold all trained on every" in systems["au-all"]["unscored"]
    ens = systems["au-ensemble"]
    assert ens["models"]["v6"] == "au-tcn-official+au-tcn-all" and ens["eval_videos"] == ["v6"]
    assert ens["optimistic"] and "whole-dataset member au-tcn-all (train.folds all) trained on 1 of the 1 scored " \
                                 "video(s): v6" in ens["optimistic_reason"]
    run_evaluate(ws)
    metrics = json.loads((ws.eval_dir / "metrics.json").read_text())
    assert set(metrics["au"]) == {"official", "ensemble"} and metrics["au"]["ensemble"]["optimistic"]
    table = training_table(ws)
    assert "score" not in table["au-all"] and table["au-all"]["epochs"] == 3 and "score" in table["au-official"]
    # analyze runs the same ensemble: the member is one of its heads
    from afwpipe.analyze import resolve_model

    plan = resolve_model("ensemble", ws)
    assert [m.fold for m in plan.tracks["au"].members] == ["official", "all"]


def _add_all_head(ws, tasks, trained=("a", "b", "c"), edit=None) -> None:
    """Head ``<task>-tcn-all`` for ``tasks`` in a :func:`make_post_workspace`: trained on ``trained``, no validation
    video, predicting the val and test names (a, b, t; and u when the workspace has it)."""
    from test_postprocess import base_outputs

    index = json.loads(ws.predictions_index.read_text())
    names = [r.name for r in ws.read_index().records if r.split in ("val", "test")]
    for task in tasks:
        name = f"{task}-tcn-all"
        (ws.models / name).mkdir(parents=True)
        (ws.models / name / "metrics.json").write_text(json.dumps({"train_videos": list(trained), "val_videos": [],
                                                                   "selected_on": []}))
        for v in names:
            out = base_outputs(v)[task]
            if edit is not None:
                edit(out)
            g = store.begin_video(ws.predictions(name), v, {"model": name})
            store.write_time_array(g, task, out)
            store.write_time_array(g, "present", np.ones(T, bool))
            store.mark_complete(g)
        index["models"].append({"name": name, "task": task, "head": "tcn", "fold": ALL, "scene": None,
                                "tasks": [task], "val_videos": [], "videos": names})
    ws.predictions_index.write_text(json.dumps(index))


def test_the_member_votes_in_the_ensemble(tmp_path):
    def au(yes):
        def f(a):
            a[:] = 0.1
            a[:, yes] = 0.9
        return f

    def va(value):
        return lambda v: v.__setitem__(slice(None), value)
    edits = {("au", "official"): au([0, 1, 2]), ("au", "0"): au([0, 1]), ("au", "1"): au([0]),
             ("va", "official"): va(0.6), ("va", "0"): va(0.0), ("va", "1"): va(-0.3)}
    ws = make_post_workspace(tmp_path, _fold_edit(edits), tasks=("au", "va"))
    _add_all_head(ws, ["au"], edit=au([0, 1, 2, 3]))
    _add_all_head(ws, ["va"], edit=va(0.9))
    run_postprocess(ws, _cfg(ensemble="vote", au_vote_tie=1), progress=False)
    a = {t: read_post(ws, f"{t}-ensemble", "a") for t in ("au", "va")}
    # AU votes on a, by AU index: 0 4/4, 1 3/4, 2 2/4 (a tie: au_vote_tie 1), 3 1/4; without the member index 2 was 1/3
    assert (a["au"]["after"][:, :3] == 1).all() and (a["au"]["after"][:, 3:] == 0).all()
    np.testing.assert_allclose(a["va"]["after"], np.mean([0.6, 0.0, -0.3, 0.9]), atol=1e-6)
    systems = read_systems(ws)["systems"]
    assert list(systems) == ["au-official", "au-0", "au-1", "au-all", "au-ensemble",
                             "va-official", "va-0", "va-1", "va-all", "va-ensemble"]
    assert systems["au-ensemble"]["models"]["a"] == "au-tcn-official+au-tcn-0+au-tcn-1+au-tcn-all"
    for track in ("au", "va"):
        assert systems[f"{track}-all"]["eval_videos"] == [] and systems[f"{track}-all"]["unscored"]
        ens = systems[f"{track}-ensemble"]
        assert ens["optimistic"] and (f"whole-dataset member {track}-tcn-all (train.folds all) trained on 2 of the 2 "
                                      f"scored video(s): a, b") in ens["optimistic_reason"]
    # its AU thresholds come from the numbered folds' out-of-fold frames, never its own outputs
    run_postprocess(ws, _cfg(au_thresholds="tuned"), progress=False)
    got = read_systems(ws)["systems"]["au-all"]["threshold_videos"]
    assert got == ["0/a", "0/c", "1/b"]


def test_the_flag_follows_what_the_member_trained_on(tmp_path):
    # u joined the val split after training: no member, the whole-dataset one included, saw it
    ws = make_post_workspace(tmp_path, tasks=("va",), late=True)
    _add_all_head(ws, ["va"])
    run_postprocess(ws, _cfg(), progress=False)
    ens = read_systems(ws)["systems"]["va-ensemble"]
    assert ens["eval_videos"] == ["u"] and ens["optimistic"] is False and ens["optimistic_reason"] is None
    assert whole_dataset_members(["u"], {"va-tcn-all": {"a", "b", "c"}}) == []
    assert whole_dataset_members(["a", "u"], {"va-tcn-all": {"a", "b"}}) == [
        "whole-dataset member va-tcn-all (train.folds all) trained on 1 of the 2 scored video(s): a"]
