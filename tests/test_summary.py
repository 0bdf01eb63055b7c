"""The experiment table (afwpipe/summary.py): scores at paths and keys that never name the head."""

import json

import pytest

from afwpipe import summary
from afwpipe.errors import EvaluateError
from afwpipe.store import Workspace


def _entry(key, before, after, optimistic=False, after_key="after"):
    return {"before": {key: before, "per_class": [0.1]}, after_key: {key: after}, "videos": 2, "frames": 144,
            "optimistic": optimistic}


#: the plot tables dvc.yaml's summary stage declares (written out by hand, not read from the code)
PLOTS = ("au_f1.csv", "expr_f1.csv", "expr_confusion.csv", "va_trace.csv")


def _workspace(tmp_path, head, after_key="after"):
    """A workspace as the evaluate and train stages leave it, for one head (hand-written values)."""
    ws = Workspace(tmp_path / head / "work" / "sample")
    ws.eval_dir.joinpath("plots").mkdir(parents=True)
    metrics = {"au": {"official": _entry("f1", 0.25, 0.5, after_key=after_key),
                      "ensemble": _entry("f1", 0.125, 0.375, True, after_key=after_key)},
               "va": {"0": _entry("ccc", -0.5, 0.75)}}
    (ws.eval_dir / "metrics.json").write_text(json.dumps(metrics))
    for name in PLOTS:
        (ws.eval_dir / "plots" / name).write_text(f"x,y\n{head},1\n")
    models = [{"name": f"au-{head}-official", "task": "au", "head": head, "fold": "official", "scene": None},
              {"name": f"va-{head}-0-indoor", "task": "va", "head": head, "fold": 0, "scene": "indoor"}]
    ws.predictions_dir.mkdir()
    ws.predictions_index.write_text(json.dumps({"models": models}))
    for m, (best, score) in zip(models, ((3, 0.5), (1, -0.25))):
        (ws.models / m["name"]).mkdir(parents=True)
        (ws.models / m["name"] / "metrics.json").write_text(json.dumps(
            {"best_epoch": best, "best": {"score": score}, "epochs": [{"epoch": e + 1} for e in range(4)]}))
    return ws


def test_two_heads_share_every_key_and_path(tmp_path):
    written = {}
    for head in ("tmf", "tcn"):
        out = tmp_path / head / "repo"
        res = summary.main(_workspace(tmp_path, head), out)
        written[head] = sorted(str(p.relative_to(out.resolve())) for p in res.files)
        evaluation = json.loads((out / "metrics" / "evaluate.json").read_text())
        assert evaluation == {"au": {"official": {"before": 0.25, "after": 0.5, "optimistic": False},
                                     "ensemble": {"before": 0.125, "after": 0.375, "optimistic": True}},
                              "va": {"0": {"before": -0.5, "after": 0.75, "optimistic": False}}}
        assert json.loads((out / "metrics" / "train.json").read_text()) == {
            "au-official": {"best_epoch": 3, "score": 0.5, "epochs": 4},
            "va-0-indoor": {"best_epoch": 1, "score": -0.25, "epochs": 4}}
        assert (out / "plots" / "au_f1.csv").read_text() == f"x,y\n{head},1\n"
    assert written["tmf"] == written["tcn"] == sorted(
        ["metrics/evaluate.json", "metrics/train.json"] + [f"plots/{p}" for p in PLOTS])


def test_after_tuned_on_scored_keeps_its_own_key(tmp_path):
    summary.main(_workspace(tmp_path, "tmf", after_key="after_tuned_on_scored"), tmp_path / "repo")
    au = json.loads((tmp_path / "repo" / "metrics" / "evaluate.json").read_text())["au"]["official"]
    assert au == {"before": 0.25, "after_tuned_on_scored": 0.5, "optimistic": False}


def test_missing_inputs_are_named_and_nothing_is_written(tmp_path):
    ws = _workspace(tmp_path, "tmf")
    (ws.models / "au-tmf-official" / "metrics.json").unlink()
    with pytest.raises(EvaluateError, match="au-tmf-official/metrics.json: no training metrics"):
        summary.main(ws, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
    (ws.eval_dir / "metrics.json").write_text(json.dumps({"gaze": {}}))
    with pytest.raises(EvaluateError, match="unknown track 'gaze'"):
        summary.main(ws, tmp_path / "repo")
