"""Training on cached features: a planted signal is learned to near-perfect validation scores (official
split and a numbered fold), checkpoints carry the config, encoder identities and training-split statistics,
runs are reproducible, and bad folds / tasks / stores give clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from synth import as_index
from afwpipe import store
from afwpipe.folds import summary_split
from afwpipe.clips import ClipDataset
from afwpipe.readers import ZarrFeatures, load_labels
from afwpipe.errors import TrainError
from afwpipe.labels import EXPR_NAMES
from afwpipe.metrics import f1_binary
from afwpipe.inference import checkpoint_stats, load_model
from afwpipe.inference import predict_frames as predict
from afwpipe.folds import split_videos
from afwpipe.train import TrainConfig, score, train
from test_clips import make_workspace

TCN = dict(channels=32, mlp_dim=64, dilations=(1, 2), dropout=0.1)
SMALL = {"tcn": TCN, "tmf": dict(d_model=32, n_layers=1, n_heads=2, dropout=0.1),
         "msf": dict(d_model=32, n_heads=2, windows=(3, 9), dropout=0.1),
         "xattn": dict(d_model=32, n_heads=2, n_layers=1, dropout=0.1),
         "mamba": dict(d_model=32, n_layers=1, state_size=8, dropout=0.1),
         "stack": dict(stack=["gated", "tcn"], d_model=32, mlp_dim=32, blocks={"tcn": {"causal": True}})}


def _cfg(**kw) -> TrainConfig:
    base = dict(task="mtl", head="tcn", features=["vis", "aud"], fold="official", k=32, epochs=20, patience=0,
                lr=3e-3, batch_size=8, head_kwargs=TCN, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    # v0..v4 train, v5..v7 val; folds: even videos 0, odd 1; scene "studio": v0..v3 + v6
    return make_workspace(tmp_path_factory.mktemp("train"), n_videos=8, n_frames=160, n_val=3,
                          scenes={"studio": ["v0", "v1", "v2", "v3", "v6"]})


@pytest.fixture(scope="module")
def mtl_run(ws):
    return train(ws, _cfg(), progress=False)


def test_planted_signal_is_learned_on_the_official_split(mtl_run):
    # chance: AU F1 ~0.5, EXPR macro F1 ~0.125, VA CCC ~0
    best = mtl_run.best
    # train.epoch_selection inner: v2, one of the five training videos (inner_frac 0.2), chooses the epoch
    assert mtl_run.n_train == 4 and mtl_run.n_val == 3 and mtl_run.selected_on == ["v2"]
    assert best["au"]["f1"] > 0.9 and best["expr"]["f1"] > 0.8 and best["va"]["ccc"] > 0.93
    assert best["score"] == pytest.approx(np.mean([best["au"]["f1"], best["expr"]["f1"], best["va"]["ccc"]]))


def test_planted_signal_is_learned_on_a_numbered_fold(ws):
    r = train(ws, _cfg(task="au", fold=0, epochs=20), progress=False)
    assert r.model_dir.name == "au-tcn-0" and r.n_train == 3 and r.n_val == 4 and r.selected_on == ["v5"]
    assert r.best["au"]["f1"] > 0.9 and set(r.best) == {"au", "score"}
    metrics = json.loads((r.model_dir / "metrics.json").read_text())
    assert metrics["val_videos"] == ["v0", "v2", "v4", "v6"]


@pytest.mark.parametrize("head", ["tmf", "msf", "xattn", "mamba", "stack"])
def test_every_head_trains(ws, head, tmp_path):
    r = train(ws, _cfg(task="va", head=head, head_kwargs=SMALL[head], epochs=4), progress=False,
              out_dir=tmp_path / head)
    assert r.best["va"]["ccc"] > 0.5 and (tmp_path / head / "model.pt").is_file()
    reloaded, ckpt = load_model(tmp_path / head / "model.pt")  # rebuilt from its config, weights loaded strictly
    assert ckpt.config["head"] == head and not reloaded.training


def test_metrics_json_has_every_epoch_and_the_best_per_class_scores(mtl_run):
    m = json.loads((mtl_run.model_dir / "metrics.json").read_text())
    assert mtl_run.model_dir == mtl_run.model_dir.parent / "mtl-tcn-official"
    assert mtl_run.model_dir.parent.name == "models"
    assert [e["epoch"] for e in m["epochs"]] == list(range(1, 21))
    assert all(np.isfinite(e["loss"]) for e in m["epochs"])
    assert m["best_epoch"] == 1 + int(np.argmax([e["score"] for e in m["epochs"]]))
    assert set(m["best"]["au"]["per_au"]) == {"AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23",
                                              "AU24", "AU25", "AU26"}
    assert set(m["best"]["expr"]["per_class"]) >= {"Neutral", "Happiness", "Sadness", "Other"}
    assert set(m["best"]["va"]) == {"ccc", "valence", "arousal"}


def test_checkpoint_holds_config_encoder_identities_and_training_stats(ws, mtl_run):
    head, ckpt = load_model(mtl_run.model_dir / "model.pt")
    cfg = ckpt.config
    assert cfg == {**cfg, "task": "mtl", "head": "tcn", "head_kwargs": TCN, "k": 32, "stride": 16,
                   "eval_stride": 16, "lr": 3e-3, "seed": 0, "epochs": 20, "features": ["vis", "aud"],
                   "fold": "official", "batch_size": 8, "weight_decay": 1e-2}
    assert TrainConfig(**cfg) == mtl_run.config
    assert [e["name"] for e in ckpt.encoders] == ["vis", "aud"]
    assert ckpt.encoders[0]["weights"] == "sha256:vis-test" and ckpt.encoders[0]["dim"] == 8
    assert ckpt.encoders[1]["modality"] == "audio" and ckpt.in_dims == {"vis": 8, "aud": 4}
    # standardisation statistics come from the training videos only
    names = ckpt.train_videos
    assert names == ["v0", "v1", "v3", "v4"] and ckpt.selected_on == ["v2"]  # v2 chose the epoch, fit nothing
    expected = ClipDataset(ZarrFeatures(ws, ["vis", "aud"]), load_labels(ws, names), names, k=32).feature_stats()
    stats = checkpoint_stats(ckpt)
    for enc in ("vis", "aud"):
        np.testing.assert_allclose(stats[enc][0], expected[enc][0], rtol=1e-6)
        np.testing.assert_allclose(stats[enc][1], expected[enc][1], rtol=1e-6)
    # the saved weights are the best epoch's: predicting again gives its validation score
    val = ckpt.val_videos
    labels = load_labels(ws, val)
    ds = ClipDataset(ZarrFeatures(ws, ["vis", "aud"]), labels, val, k=32, stride=16, stats=stats)
    again = score(predict(head, ds), labels, ("au", "expr", "va"))
    assert again["score"] == pytest.approx(ckpt.best_score, abs=1e-9)


def test_same_seed_gives_identical_metrics(ws, tmp_path):
    cfg = _cfg(head="tmf", head_kwargs=SMALL["tmf"], epochs=3)  # dropout and shuffling both draw randoms
    a = train(ws, cfg, progress=False, out_dir=tmp_path / "a")
    b = train(ws, cfg, progress=False, out_dir=tmp_path / "b")
    ma, mb = (json.loads((r.model_dir / "metrics.json").read_text()) for r in (a, b))
    assert ma["epochs"] == mb["epochs"]
    sa, sb = (torch.load(r.model_dir / "model.pt", weights_only=True)["state_dict"] for r in (a, b))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = train(ws, _cfg(head="tmf", head_kwargs=SMALL["tmf"], epochs=3, seed=1), progress=False, out_dir=tmp_path / "c")
    assert json.loads((c.model_dir / "metrics.json").read_text())["epochs"] != ma["epochs"]


def test_early_stopping_stops_after_patience_epochs_without_improvement(ws, tmp_path):
    r = train(ws, _cfg(task="va", lr=0.0, epochs=10, patience=2), progress=False, out_dir=tmp_path)
    assert r.epochs_run == 3 and r.best_epoch == 1


def test_scene_subset_trains_its_own_head(ws):
    train_names, val_names = split_videos(ws.read_index(), ("au",), "official", "studio")
    assert train_names == ["v0", "v1", "v2", "v3"] and val_names == ["v6"]
    r = train(ws, _cfg(task="au", scene="studio", epochs=1), progress=False)
    assert r.model_dir.name == "au-tcn-official-studio" and r.n_train == 3 and r.n_val == 1


def test_splits_are_per_task():
    """x is EXPR-val and VA-train (its single ``split`` summary says val); t is in the AU test list although an
    AU annotation exists; folds: x, y, t fold 0, w, u fold 1."""
    lab = {"au": 5, "expr": 5, "va": 5}

    def rec(name, fold, **splits):
        return {"name": name, "video": name, "fold": fold, "labelled": lab,
                "split": summary_split(splits), "splits": splits}

    index = as_index({"folds": {"k": 2}, "videos": [
        rec("x", 0, au="train", expr="val", va="train"), rec("y", 0, au="val", expr="train", va="val"),
        rec("t", 0, au="test", expr="train", va="train"), rec("w", 1, au="train", expr="train", va="train"),
        rec("u", 1, au="val", expr="val", va="val")]})
    assert split_videos(index, ("va",), "official") == (["t", "w", "x"], ["u", "y"])
    assert split_videos(index, ("expr",), "official") == (["t", "w", "y"], ["u", "x"])
    assert split_videos(index, ("au",), "official") == (["w", "x"], ["u", "y"])
    assert split_videos(index, ("au", "expr", "va"), "official") == (["t", "w"], ["u", "x", "y"])  # mtl summary
    assert split_videos(index, ("au",), 0) == (["u", "w"], ["x", "y"])  # t, AU-test, in neither side
    assert split_videos(index, ("expr",), 0) == (["u", "w"], ["t", "x", "y"])


def test_unknown_scene_and_fold_are_errors(ws):
    with pytest.raises(TrainError, match=r"unknown scene 'outdoor'; scenes of the index: studio"):
        split_videos(ws.read_index(), ("au",), "official", "outdoor")
    with pytest.raises(TrainError, match=r"fold 2 does not exist: the index has 2 folds"):
        split_videos(ws.read_index(), ("au",), 2)
    with pytest.raises(TrainError, match="fold must be 'official', 'all' or a fold number"):
        _cfg(fold="first")
    assert _cfg(fold="1").fold == 1


def test_missing_feature_store_lists_the_existing_ones(ws):
    with pytest.raises(TrainError, match=r"'whisper'.*stores that exist: aud, vis"):
        train(ws, _cfg(features=["vis", "whisper"]), progress=False)


def _copy(ws, tmp_path) -> store.Workspace:
    shutil.copytree(ws.root, tmp_path / "ws", ignore=shutil.ignore_patterns("models"))
    return store.Workspace(tmp_path / "ws")


def test_fold_without_labelled_frames_for_a_task_is_a_clear_error(ws, tmp_path):
    ws2 = _copy(ws, tmp_path)
    for name in ("v5", "v6", "v7"):  # validation videos lose their EXPR labels, the index still counts them
        g = store.open_store(ws2.labels)[name]
        store.write_time_array(g, "expr", np.full(160, -1, np.int8))
    with pytest.raises(TrainError, match=r"fold official: no labelled EXPR frame in the validation videos \(v5, v6, v7\)"):
        train(ws2, _cfg(task="expr", epochs=1), progress=False)
    index = json.loads(ws2.index.read_text())
    for r in index["videos"]:
        r["labelled"]["va"] = 0 if r["split"] == "train" else r["labelled"]["va"]
    ws2.index.write_text(json.dumps(index))
    with pytest.raises(TrainError, match=r"fold official: no training video labelled for VA"):
        train(ws2, _cfg(task="va", epochs=1), progress=False)


def test_nan_in_features_stops_training_naming_encoder_video_and_frame(ws, tmp_path):
    ws2 = _copy(ws, tmp_path)
    emb = store.read_array(ws2.features("aud"), "v3", "emb").astype(np.float32)
    emb[42, 1] = np.nan
    from test_clips import write_features
    write_features(ws2, "aud", "v3", emb, np.ones(160, bool))
    with pytest.raises(TrainError, match=r"encoder 'aud', video 'v3': NaN in the features at frame 42"):
        train(ws2, _cfg(epochs=1), progress=False)


def test_stage_reads_params_and_prints_one_line(ws, tmp_path, capsys):
    from stages import train as stage

    shutil.copytree(ws.root, tmp_path / "sample", ignore=shutil.ignore_patterns("models"))
    params = {"dataset": {"name": "sample", "root": None}, "workdir": str(tmp_path),
              "train": {"task": "au", "head": "tcn", "features": ["vis", "aud"], "fold": "official", "k": 32,
                        "epochs": 1, "patience": 0, "lr": "3e-3", "batch_size": 8, "device": "cpu", "seed": 0,
                        "head_kwargs": TCN, "folds": ["official", 0, 1]}}
    r = stage.run(params, task="expr", fold="1")
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("train expr-tcn-1:")
    assert r.model_dir == tmp_path / "sample" / "models" / "expr-tcn-1"
    assert r.config.lr == 3e-3  # YAML reads 3e-3 without a dot as a string
    params["train"]["batchsize"] = 4
    with pytest.raises(TrainError, match="unknown key.*batchsize"):
        stage.run(params, task="au", fold="official")


@pytest.mark.sample
@pytest.mark.parametrize("head", ["tmf", "tcn", "msf"])
def test_sample_expr_head_separates_sadness_from_happiness(head, tmp_path, sample_workspace):
    """On the sample (mini_xception + logmel features), the EXPR head's training videos are told apart:
    macro F1 over Happiness vs Sadness (chance 0.5) on the training frames."""
    SAMPLE = sample_workspace
    r = train(SAMPLE, TrainConfig(task="expr", head=head, epochs=20, patience=0, lr=1e-3, device="cpu"),
              progress=False, out_dir=tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["best"]["expr"]["f1"] == r.best["expr"]["f1"]
    model, ckpt = load_model(tmp_path / "model.pt")
    assert [e["name"] for e in ckpt.encoders] == ["mini_xception", "logmel"]
    assert ckpt.encoders[0]["weights"].startswith("sha256:") and ckpt.encoders[1]["dim"] == 80
    names = ckpt.train_videos
    labels = load_labels(SAMPLE, names)
    ds = ClipDataset(ZarrFeatures(SAMPLE, ckpt.config["features"]), labels, names, 100, 50,
                     stats=checkpoint_stats(ckpt))
    preds = predict(model, ds)
    prob = np.concatenate([preds[n]["expr"] for n in names])
    true = np.concatenate([labels[n]["expr"] for n in names])
    happy, sad = EXPR_NAMES.index("Happiness"), EXPR_NAMES.index("Sadness")
    keep = np.isin(true, [happy, sad])
    assert (true[keep] == sad).sum() > 50 and (true[keep] == happy).sum() > 50
    pred = np.where(prob[keep, happy] >= prob[keep, sad], happy, sad)
    f1 = np.mean([f1_binary(pred == c, true[keep] == c) for c in (happy, sad)])
    assert f1 > 0.8


# -- options the ABAW teams sweep over (issue 14) ----------------------------------------------------------
def _standardised_train_clips(ws):
    names = ["v0", "v1", "v2", "v3", "v4"]
    ds = ClipDataset(ZarrFeatures(ws, ["vis", "aud"]), load_labels(ws, names), names, k=32)
    ds.set_stats(ds.feature_stats())
    return ds


def test_modality_dropout_zeroes_whole_encoders_at_rate_p_and_never_all_of_a_clip(ws):
    from scipy.stats import binom

    from afwpipe.clips import drop_modalities

    ds = _standardised_train_clips(ws)
    idx = np.arange(len(ds))
    rng, p = np.random.default_rng(0), 0.3
    dropped, draws = np.zeros(2), 0
    for _ in range(100):
        batch, ref = ds.batch(idx), ds.batch(idx)
        drop = drop_modalities(batch, p, rng)
        assert not drop.all(axis=1).any()
        for j, enc in enumerate(("vis", "aud")):
            x, x0, rows = batch["x"][enc].numpy(), ref["x"][enc].numpy(), drop[:, j]
            assert (x[rows] == 0).all() and not batch["present"][enc][rows].any()
            assert np.abs(x0[rows]).sum(axis=(1, 2)).min(initial=1) > 0  # the dropped blocks held features
            np.testing.assert_array_equal(x[~rows], x0[~rows])
            np.testing.assert_array_equal(batch["present"][enc][~rows], ref["present"][enc][~rows])
        dropped += drop.sum(axis=0)
        draws += len(idx)
    # per-encoder rate with two encoders: p − p²/2 (a clip that drew both keeps one, chosen uniformly)
    lo, hi = binom.interval(0.9999, draws, p - p * p / 2)
    assert all(lo <= d <= hi for d in dropped), (dropped, lo, hi, draws)


class _Recorder(torch.nn.Module):
    """A head that records, per clip and encoder, whether its whole feature block was zero, and whether the
    ``present`` it received marks that block absent (what heads such as ``xattn`` mask by)."""

    def __init__(self, head):
        super().__init__()
        self.head, self.zero_blocks, self.absent_zero_blocks, self.clips = head, 0, 0, 0

    def forward(self, x, mask, present):
        zero = {e: v.abs().sum(dim=(1, 2)) == 0 for e, v in x.items()}
        self.zero_blocks += sum(int(z.sum()) for z in zero.values())
        self.absent_zero_blocks += sum(int((zero[e] & ~present[e].any(dim=1)).sum()) for e in x)
        self.clips += len(mask)
        return self.head(x, mask, present)


def test_modality_dropout_acts_in_training_only(ws):
    from afwpipe.heads import create_head
    from afwpipe.train import train_epoch

    ds = _standardised_train_clips(ws)
    rec = _Recorder(create_head("tcn", ds.dims, ("au",), **TCN))
    opt = torch.optim.SGD(rec.parameters(), lr=0.0)
    train_epoch(rec, ds, opt, np.random.default_rng(0), "cpu", 8, modality_dropout=0.5)
    assert rec.zero_blocks > 0.2 * rec.clips  # rate 0.5 − 0.25/2 per encoder, two encoders
    assert rec.absent_zero_blocks == rec.zero_blocks  # every dropped block reaches the head marked absent
    for run in (lambda: predict(rec, ds, "cpu", 8),  # evaluation / prediction
                lambda: train_epoch(rec, ds, opt, np.random.default_rng(0), "cpu", 8)):  # training with p = 0
        rec.zero_blocks = rec.clips = 0
        run()
        assert rec.clips > 0 and rec.zero_blocks == 0


def test_xattn_trains_with_modality_dropout(ws):
    """The cross-modal attention head through train_epoch with modality dropout: finite losses, and the
    weights move (the dropped encoders are masked out of attention, never a NaN)."""
    from afwpipe.heads import create_head
    from afwpipe.train import train_epoch

    ds = _standardised_train_clips(ws)
    torch.manual_seed(0)
    head = create_head("xattn", ds.dims, ("au", "va"), d_model=16, n_heads=2, n_layers=1)
    before = [p.detach().clone() for p in head.parameters()]
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    loss = train_epoch(head, ds, opt, np.random.default_rng(0), "cpu", 8, modality_dropout=0.5)
    assert np.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in head.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, head.parameters()))


def test_sweep_options_are_checked_and_saved_in_the_checkpoint(ws, tmp_path):
    with pytest.raises(TrainError, match="at least two features"):
        _cfg(features=["vis"], modality_dropout=0.2)
    for bad in (dict(focal_gamma=-1), dict(logit_adjust_tau=-0.5), dict(modality_dropout=1.0)):
        with pytest.raises(TrainError, match="focal_gamma"):
            _cfg(**bad)
    opts = dict(focal_gamma=2.0, logit_adjust_tau=1.0, modality_dropout=0.3)
    r = train(ws, _cfg(epochs=2, **opts), progress=False, out_dir=tmp_path / "opts")
    base = train(ws, _cfg(epochs=2), progress=False, out_dir=tmp_path / "base")
    _, ckpt = load_model(r.model_dir / "model.pt")
    assert {k: ckpt.config[k] for k in opts} == opts
    assert ckpt.expr_class_weight is None and ckpt.au_pos_weight is not None  # the adjustment replaces them
    losses = [[e["loss"] for e in json.loads((x.model_dir / "metrics.json").read_text())["epochs"]] for x in (r, base)]
    assert all(np.isfinite(losses[0])) and losses[0] != losses[1]


def test_cli_train_options_reach_the_checkpoint(ws, tmp_path):
    import yaml
    from click.testing import CliRunner

    from afwpipe.cli import main
    from conftest import REPO

    shutil.copytree(ws.root, tmp_path / "sample", ignore=shutil.ignore_patterns("models"))
    params = {"workdir": str(tmp_path), "train": {"head": "tcn", "features": ["vis", "aud"], "k": 32, "patience": 0,
                                                  "batch_size": 8, "device": "cpu", "head_kwargs": TCN}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    res = CliRunner().invoke(main, ["--params", str(tmp_path / "p.yaml"), "--manifest", str(REPO / "data_manifest.yaml"),
                                    "train", "--task", "expr", "--fold", "1", "--epochs", "1", "--focal-gamma", "2",
                                    "--logit-adjust-tau", "0.5", "--modality-dropout", "0.2", "--epoch-selection", "val"])
    assert res.exit_code == 0, res.output
    _, ckpt = load_model(tmp_path / "sample" / "models" / "expr-tcn-1" / "model.pt")
    assert (ckpt.config["focal_gamma"], ckpt.config["logit_adjust_tau"], ckpt.config["modality_dropout"]) \
        == (2.0, 0.5, 0.2)
    assert ckpt.config["epoch_selection"] == "val" and ckpt.selected_on == ckpt.val_videos


def _negated_val_va(ws, tmp_path, fold):
    """A copy of ``ws`` whose validation videos of ``fold`` carry negated VA labels (valid frames only)."""
    root = tmp_path / "negated"
    shutil.copytree(ws.root, root)
    neg = store.Workspace(root)
    _, val = split_videos(neg.read_index(), ("va",), fold)
    lab = store.open_store(neg.labels, "a")
    for v in val:
        va = lab[v]["va"][...]
        store.write_time_array(lab[v], "va", np.where(va == -5.0, va, -va).astype(np.float32))
    return neg, val


def test_the_validation_videos_never_choose_the_epoch_by_default(ws, tmp_path):
    """Default epoch_selection inner: labels of the videos a fold system is scored on cannot move the kept epoch
    or weights; with ``val`` (the usual ABAW protocol) they do, which is why it is flagged optimistic."""
    neg, val = _negated_val_va(ws, tmp_path, 0)
    runs = {}
    for sel in ("inner", "val"):
        for name, w in (("orig", ws), ("neg", neg)):
            runs[sel, name] = train(w, _cfg(task="va", fold=0, epochs=8, epoch_selection=sel), progress=False,
                                    out_dir=tmp_path / f"{sel}-{name}")
    inner, inner_neg = runs["inner", "orig"], runs["inner", "neg"]
    assert inner.selected_on == ["v5"] and not set(inner.selected_on) & set(val)
    m = json.loads((inner.model_dir / "metrics.json").read_text())
    assert m["epoch_selection"] == "inner" and m["selected_on"] == ["v5"] and m["val_videos"] == val
    assert sorted(m["train_videos"] + m["selected_on"]) == ["v1", "v3", "v5", "v7"]
    assert m["best_epoch"] == 1 + int(np.argmax([e["score"] for e in m["epochs"]]))  # the inner videos' score
    assert inner.best_epoch == inner_neg.best_epoch
    sa, sb = (torch.load(r.model_dir / "model.pt", weights_only=True)["state_dict"] for r in (inner, inner_neg))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert inner_neg.best["va"]["ccc"] == pytest.approx(-inner.best["va"]["ccc"], abs=0.05)  # still scored on val
    # today's choice, kept as an option: the validation videos choose, so their labels move the epoch
    on_val, on_val_neg = runs["val", "orig"], runs["val", "neg"]
    assert on_val.selected_on == val and on_val.n_train == 4
    assert on_val.best_epoch != on_val_neg.best_epoch


def test_too_few_training_videos_train_exactly_epochs_and_keep_the_last(ws, tmp_path):
    cfg = _cfg(task="va", fold=0, epochs=5, patience=1, lr=1e-2, inner_min_videos=5)  # fold 0 trains on 4 videos
    r = train(ws, cfg, progress=False, out_dir=tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert r.selected_on == [] and m["selected_on"] == [] and m["selection"] is None
    assert r.epochs_run == 5 and r.best_epoch == 5 and [e["epoch"] for e in m["epochs"]] == [1, 2, 3, 4, 5]
    assert r.n_train == 4 and m["train_videos"] == ["v1", "v3", "v5", "v7"]
    head, ckpt = load_model(tmp_path / "model.pt")
    assert ckpt.selected_on == [] and ckpt.best_epoch == 5
    labels = load_labels(ws, ckpt.val_videos)
    ds = ClipDataset(ZarrFeatures(ws, ["vis", "aud"]), labels, ckpt.val_videos, k=32, stride=16,
                     stats=checkpoint_stats(ckpt))
    assert score(predict(head, ds), labels, ("va",))["score"] == pytest.approx(ckpt.best_score, abs=1e-9)


@pytest.mark.parametrize("kw, match", [({"epoch_selection": "test"}, "epoch_selection must be one of inner, val"),
                                       ({"inner_frac": 1.0}, "inner_frac must lie in"),
                                       ({"inner_min_videos": 1}, "inner_min_videos be ≥ 2")])
def test_epoch_selection_settings_are_checked(kw, match):
    with pytest.raises(TrainError, match=match):
        _cfg(**kw)
