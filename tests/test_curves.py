"""Training curves through DVCLive (afwpipe/curves.py): one row per epoch equal to the run's own record,
`dvc plots show` on a small DVC repository draws the curves of every head that the project's dvc.yaml
declares, the summary's metrics/train.json keeps its keys, and a run outside a DVC project leaves git alone."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from afwpipe import store, summary
from afwpipe.curves import ProjectLive
from afwpipe.errors import TrainError
from afwpipe.records import Checkpoint
from afwpipe.train import TrainConfig, train
from conftest import REPO
from test_clips import make_workspace

TCN = dict(channels=16, mlp_dim=32, dilations=(1, 2), dropout=0.1)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # DVCLive posts to DVC Studio only with a token; make sure no test run does
    monkeypatch.setenv("DVC_STUDIO_OFFLINE", "true")
    monkeypatch.delenv("DVC_STUDIO_TOKEN", raising=False)


def _cfg(**kw) -> TrainConfig:
    base = dict(task="mtl", head="tcn", features=["vis", "aud"], fold="official", k=32, epochs=3, patience=0,
                lr=3e-3, batch_size=8, head_kwargs=TCN, device="cpu")
    return TrainConfig(**{**base, **kw})


def _tsv(path: Path) -> list[tuple[int, float]]:
    """(step, value) rows of a DVCLive metric file, read with the csv module."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0][0] == "step", rows[0]
    return [(int(r[0]), float(r[1])) for r in rows[1:]]


def _workspace(root: Path) -> store.Workspace:
    # v0..v4 train, v5..v7 val; scene "studio": v0..v3 + v6
    return make_workspace(root, n_videos=8, n_frames=96, n_val=3, scenes={"studio": ["v0", "v1", "v2", "v3", "v6"]})


def test_one_row_per_epoch_equal_to_the_runs_record(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside any DVC project
    ws = _workspace(tmp_path / "ws")
    r = train(ws, _cfg(epoch_selection="val"), progress=False)
    live = ws.root / "curves" / "mtl-official"
    record = json.loads((r.model_dir / "metrics.json").read_text())["epochs"]
    ckpt = Checkpoint.load(r.model_dir / "model.pt")
    assert [e["epoch"] for e in record] == [1, 2, 3]

    loss = _tsv(live / "plots" / "metrics" / "loss.tsv")
    assert loss == [(e["epoch"], e["loss"]) for e in record]
    sel = {name: _tsv(live / "plots" / "metrics" / "select" / f"{name}.tsv")
           for name in ("score", "au_f1", "expr_f1", "va_ccc", "valence_ccc", "arousal_ccc")}
    assert sel["score"] == [(e["epoch"], e["score"]) for e in record]
    assert sel["au_f1"] == [(e["epoch"], e["au"]["f1"]) for e in record]
    assert sel["expr_f1"] == [(e["epoch"], e["expr"]["f1"]) for e in record]
    assert sel["va_ccc"] == [(e["epoch"], e["va"]["ccc"]) for e in record]
    assert sel["arousal_ccc"] == [(e["epoch"], e["va"]["arousal"]) for e in record]
    # with epoch_selection val the checkpoint's best_score is the validation score of its kept epoch
    assert dict(sel["score"])[ckpt.best_epoch] == pytest.approx(ckpt.best_score, abs=0)
    assert max(v for _, v in sel["score"]) == ckpt.best_score

    latest = json.loads((live / "metrics.json").read_text())
    assert latest["step"] == 3 and latest["loss"] == record[-1]["loss"]
    assert latest["select"]["score"] == record[-1]["score"]
    assert not (live / "dvc.yaml").exists() and not (live / "report.html").exists()
    assert not (tmp_path / ".dvc").exists()


def test_a_fixed_epoch_count_logs_the_loss_only_and_a_rerun_starts_afresh(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ws = _workspace(tmp_path / "ws")
    # fold all with epoch_selection val: no validation video, nothing chooses the epoch
    r = train(ws, _cfg(task="va", fold="all", epochs=2, epoch_selection="val"), progress=False)
    live = ws.root / "curves" / "va-all"
    record = json.loads((r.model_dir / "metrics.json").read_text())["epochs"]
    assert _tsv(live / "plots" / "metrics" / "loss.tsv") == [(e["epoch"], e["loss"]) for e in record]
    assert not (live / "plots" / "metrics" / "select").exists()
    # a rerun: two rows, not four
    r2 = train(ws, _cfg(task="va", fold="all", epochs=2, epoch_selection="val", seed=1), progress=False)
    record2 = json.loads((r2.model_dir / "metrics.json").read_text())["epochs"]
    assert _tsv(live / "plots" / "metrics" / "loss.tsv") == [(e["epoch"], e["loss"]) for e in record2] != \
        [(e["epoch"], e["loss"]) for e in record]


def test_val_curves_score_the_validation_videos_without_changing_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ws = _workspace(tmp_path / "ws")
    # inner epoch selection (the default): one of the 5 training videos chooses, v5..v7 validate
    plain = train(ws, _cfg(task="va", epochs=4), progress=False, out_dir=tmp_path / "plain")
    r = train(ws, _cfg(task="va", epochs=4, val_curves=True), progress=False)
    record = json.loads((r.model_dir / "metrics.json").read_text())["epochs"]
    plain_record = json.loads((plain.model_dir / "metrics.json").read_text())["epochs"]
    assert [e["loss"] for e in record] == [e["loss"] for e in plain_record]  # the extra pass trains nothing
    assert [e["score"] for e in record] == [e["score"] for e in plain_record]
    assert "val" not in plain_record[0] and r.selected_on and r.best_epoch == plain.best_epoch

    metrics = ws.root / "curves" / "va-official" / "plots" / "metrics"
    val = _tsv(metrics / "val" / "score.tsv")
    assert val == [(e["epoch"], e["val"]["score"]) for e in record]
    assert _tsv(metrics / "val" / "valence_ccc.tsv") == [(e["epoch"], e["val"]["va"]["valence"]) for e in record]
    assert _tsv(metrics / "select" / "score.tsv") == [(e["epoch"], e["score"]) for e in record]
    # train's own score of the kept weights on the validation videos (after reloading them) is that epoch's
    assert dict(val)[r.best_epoch] == pytest.approx(r.best["score"], abs=1e-6)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_val_curves_must_be_a_bool(value):
    with pytest.raises(TrainError, match="val_curves"):
        _cfg(val_curves=value)


def _dvc(repo: Path, *args: str) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1", DVC_STUDIO_OFFLINE="true")
    res = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
    assert res.returncode == 0, (args, res.stdout[-3000:], res.stderr[-3000:])
    return res.stdout


@pytest.mark.slow
def test_dvc_plots_show_draws_every_heads_curves_and_the_summary_keeps_its_keys(tmp_path, monkeypatch):
    """A DVC repository with the project's own train and train_scene stages (dvc.yaml copied, params small):
    three heads trained into its workspace, `dvc plots show --json` lists each one's loss and score curves
    with the TSV's values."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _dvc(repo, "git", "init", "-q")
    _dvc(repo, "dvc", "init", "-q")
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {s: stages[s] for s in ("train", "train_scene")}}))
    (repo / "params.yaml").write_text(yaml.safe_dump(
        {"dataset": {"name": "sample"}, "train": {"head": "tcn", "tasks": ["au", "va"], "folds": ["official"],
                                                   "scenes": ["studio"]}}))
    monkeypatch.chdir(repo)  # as `dvc repro` runs a stage
    ws = _workspace(repo / "work" / "sample")
    runs = [train(ws, _cfg(task="au", epoch_selection="val"), progress=False),
            train(ws, _cfg(task="va", head="tmf", head_kwargs=dict(d_model=16, n_layers=1, n_heads=2),
                           epoch_selection="val"), progress=False),
            train(ws, _cfg(task="au", scene="studio", epoch_selection="val"), progress=False),
            train(ws, _cfg(task="va", scene="studio", epoch_selection="val"), progress=False)]
    keys = ["au-official", "va-official", "au-official-studio", "va-official-studio"]

    shown = json.loads(_dvc(repo, "dvc", "plots", "show", "--json"))
    assert not shown.get("errors"), shown["errors"]
    shown = shown["data"]
    for key, r in zip(keys, runs):
        record = json.loads((r.model_dir / "metrics.json").read_text())["epochs"]
        for name, field, expect in (("loss", "loss", [e["loss"] for e in record]),
                                    ("select/score", "score", [e["score"] for e in record])):
            path = f"work/sample/curves/{key}/plots/metrics/{name}.tsv"
            assert path in shown, (path, sorted(shown))
            points = shown[path][0]["content"]["data"]["values"]  # the Vega-Lite spec DVC renders
            assert {p["rev"] for p in points} == {"workspace"}
            assert [(int(p["step"]), float(p[field])) for p in points] == list(zip([1, 2, 3], expect))
    assert not (repo / ".dvc" / "tmp" / "exps" / "run" / "DVCLIVE_STEP_COMPLETED").exists()  # cleaned up

    # the summary's metrics/train.json: today's keys and values, its epoch count equal to the curve's rows
    ws.predictions_dir.mkdir()
    ws.predictions_index.write_text(json.dumps({"models": [
        {"name": r.model_dir.name, "task": r.config.task, "fold": r.config.fold, "scene": r.config.scene}
        for r in runs]}))
    table = summary.training_table(ws)
    assert sorted(table) == sorted(keys)
    for key, r in zip(keys, runs):
        assert set(table[key]) == {"best_epoch", "score", "epochs"}
        assert table[key]["best_epoch"] == r.best_epoch and table[key]["score"] == r.best["score"]
        assert table[key]["epochs"] == len(_tsv(ws.root / "curves" / key / "plots" / "metrics" / "loss.tsv"))


def test_outside_a_dvc_project_a_git_repository_is_left_alone(tmp_path, monkeypatch):
    # DVCLive's own set-up runs `dvc init` in an enclosing git repository (and fails in one without commits)
    repo = tmp_path / "git"
    repo.mkdir()
    _dvc(repo, "git", "init", "-q")
    monkeypatch.chdir(repo)
    live = ProjectLive("curves", report=None, save_dvc_exp=False, dvcyaml=False)
    live.log_metric("loss", 0.5)
    live.next_step()
    live.end()
    assert _tsv(repo / "curves" / "plots" / "metrics" / "loss.tsv") == [(0, 0.5)]
    assert not (repo / ".dvc").exists() and not (repo / ".dvcignore").exists()
    assert _dvc(repo, "git", "status", "--porcelain") == "?? curves/\n"


def test_cli_val_curves_reaches_the_config_and_the_curves(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from afwpipe.cli import main
    from afwpipe.inference import load_model

    monkeypatch.chdir(tmp_path)
    ws = _workspace(tmp_path / "sample")
    params = {"workdir": str(tmp_path), "train": {"head": "tcn", "features": ["vis", "aud"], "k": 32, "patience": 0,
                                                  "batch_size": 8, "device": "cpu", "head_kwargs": TCN}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    res = CliRunner().invoke(main, ["--params", str(tmp_path / "p.yaml"), "--manifest",
                                    str(REPO / "data_manifest.yaml"), "train", "--task", "va", "--epochs", "2",
                                    "--val-curves"])
    assert res.exit_code == 0, res.output
    _, ckpt = load_model(ws.models / "va-tcn-official" / "model.pt")
    assert ckpt.config["val_curves"] is True
    record = json.loads((ws.models / "va-tcn-official" / "metrics.json").read_text())["epochs"]
    assert _tsv(ws.root / "curves" / "va-official" / "plots" / "metrics" / "val" / "score.tsv") == \
        [(e["epoch"], e["val"]["score"]) for e in record] and len(record) == 2
