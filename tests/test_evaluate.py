"""Evaluate stage on hand-made post-processed predictions: metrics.json structure for every fold and the
ensemble, before and after post-processing, equal to the metric functions on the stored decisions; per-class
CSV, DVC plot files (per-class F1, confusion rows, VA trace) and the PNG report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from afwpipe.errors import EvaluateError
from afwpipe.evaluate import EvalConfig, run_evaluate
from afwpipe.metrics import au_f1, expr_f1, va_ccc
from afwpipe.postprocess import PostConfig, run_postprocess
from afwpipe.readers import read_post, read_systems
from test_postprocess import T, labels_of, make_post_workspace


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    ws = make_post_workspace(tmp_path_factory.mktemp("eval") / "ws")
    run_postprocess(ws, PostConfig(au_thresholds="tuned", smooth={"au": {"method": "none"}}), progress=False)
    return ws, run_evaluate(ws)


def _rows(path):
    with path.open() as f:
        return list(csv.reader(f))


def test_metrics_json_has_every_fold_and_the_ensemble_before_and_after(evaluated):
    ws, summary = evaluated
    m = json.loads((ws.eval_dir / "metrics.json").read_text())
    assert m == summary.metrics
    assert set(m) == {"au", "expr", "va"}
    for track, keys in (("au", {"f1"}), ("expr", {"f1"}), ("va", {"ccc", "valence", "arousal"})):
        assert set(m[track]) == {"official", "0", "1", "ensemble"}
        for fold, r in m[track].items():
            extra = ({"thresholds_from"} if track == "au" else set()) | (
                {"optimistic_reason"} if fold == "ensemble" else set())
            assert set(r) == {"before", "after", "videos", "frames", "scored_on", "optimistic"} | extra
            assert set(r["before"]) == keys == set(r["after"])
            assert r["optimistic"] is (fold == "ensemble")  # every labelled video was seen by a member
    assert m["au"]["official"]["videos"] == 2 and m["au"]["official"]["frames"] == 2 * T
    assert m["au"]["0"]["videos"] == 2 and m["au"]["1"]["videos"] == 1  # own validation videos
    assert m["au"]["0"]["scored_on"] == ["a", "c"] and m["au"]["1"]["scored_on"] == ["b"]
    assert m["au"]["official"]["scored_on"] == ["a", "b"] == m["au"]["ensemble"]["scored_on"]
    assert m["au"]["ensemble"]["before"]["f1"] == 0.0 and m["au"]["ensemble"]["after"]["f1"] == 1.0  # tuned
    assert m["au"]["official"]["thresholds_from"] == "out-of-fold frames"
    assert m["au"]["ensemble"]["thresholds_from"] == "fold votes (out-of-fold frames)"
    assert "trained or early-stopped on every labelled video" in m["va"]["ensemble"]["optimistic_reason"]


def test_scores_are_the_metric_functions_on_the_stored_decisions(evaluated):
    ws, summary = evaluated
    names = ["a", "c"]  # fold 0's own validation videos
    for track in ("au", "expr", "va"):
        true = np.concatenate([labels_of(v)[track] for v in names])
        for stage in ("before", "after"):
            pred = np.concatenate([read_post(ws, f"{track}-0", v)[stage] for v in names])
            got = summary.metrics[track]["0"][stage]
            if track == "au":
                assert got["f1"] == pytest.approx(au_f1(pred, true)[0])
            elif track == "expr":
                assert got["f1"] == pytest.approx(expr_f1(pred, true)[0])
            else:
                mean, v, a = va_ccc(pred, true)
                assert (got["ccc"], got["valence"], got["arousal"]) == pytest.approx((mean, v, a))


def test_per_class_csv_and_dvc_plot_files(evaluated):
    ws, summary = evaluated
    rows = _rows(ws.eval_dir / "per_class.csv")
    assert rows[0] == ["track", "system", "class", "before", "after"]
    assert len(rows) == 1 + 4 * (12 + 8 + 2)
    au = _rows(ws.eval_dir / "plots" / "au_f1.csv")
    assert au[0] == ["AU", "before", "after"] and [r[0] for r in au[1:]][:3] == ["AU1", "AU2", "AU4"]
    assert all(float(r[2]) == 1.0 for r in au[1:])
    expr = _rows(ws.eval_dir / "plots" / "expr_f1.csv")
    assert expr[0] == ["class", "before", "after"] and len(expr) == 9
    conf = _rows(ws.eval_dir / "plots" / "expr_confusion.csv")
    assert conf[0] == ["actual", "predicted"] and len(conf) == 1 + 2 * T  # ensemble: videos a and b
    assert ["Happiness", "Happiness"] in conf[1:]
    trace = _rows(ws.eval_dir / "plots" / "va_trace.csv")
    assert trace[0][:5] == ["frame", "valence", "arousal", "valence_true", "arousal_true"] and len(trace) == 1 + T
    png = (ws.eval_dir / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert summary.line().startswith("evaluate: before -> after: au ensemble F1 0.0000 -> 1.0000 (optimistic: "
                                      "members trained or early-stopped on every labelled video; scored on the 2 AU "
                                      "val video(s); thresholds or smoothing tuned on scored videos: a, b), "
                                      "expr ensemble F1 0.2500 -> 0.2500 (optimistic: ")


def test_unknown_trace_video_and_settings_are_errors(evaluated):
    ws, _ = evaluated
    with pytest.raises(EvaluateError, match=r"trace_video 'c' is not an evaluation video of va-ensemble \(a, b\)"):
        run_evaluate(ws, EvalConfig(trace_video="c"))
    with pytest.raises(EvaluateError, match="unknown key.*video"):
        EvalConfig.from_params({"video": "a"})
    run_evaluate(ws, EvalConfig.from_params({"plot_system": 0, "trace_video": "c"}))
    assert len(_rows(ws.eval_dir / "plots" / "expr_confusion.csv")) == 1 + 2 * T  # fold 0: a and c


def test_system_without_labelled_frames_is_skipped(tmp_path, caplog):
    ws = make_post_workspace(tmp_path / "ws", tasks=("va",))
    for v in ("a", "b", "c"):  # no VA label anywhere
        from afwpipe import store
        store.write_time_array(store.open_store(ws.labels)[v], "va", np.full((T, 2), -5.0, np.float32))
    run_postprocess(ws, PostConfig(), progress=False)
    summary = run_evaluate(ws)
    assert summary.metrics == {} and "no labelled VA frame" in caplog.text
    assert summary.line().endswith("(nothing scored) in " + summary.line().rsplit(" in ", 1)[1])


def test_ensemble_scored_on_unseen_videos_only_and_thresholds_tuned_on_scored_frames_say_so(tmp_path):
    ws = make_post_workspace(tmp_path / "ws", tasks=("au",), late=True)  # u: a val video no head saw
    run_postprocess(ws, PostConfig(au_thresholds="tuned", ensemble="soft", smooth={"au": {"method": "none"}}),
                    progress=False)
    m = run_evaluate(ws).metrics["au"]
    assert m["ensemble"]["videos"] == 1 and m["ensemble"]["frames"] == T and m["ensemble"]["optimistic"] is False
    assert set(m["ensemble"]) == {"before", "after", "videos", "frames", "scored_on", "optimistic", "thresholds_from"}
    pred = read_post(ws, "au-ensemble", "u")["after"]
    assert m["ensemble"]["after"]["f1"] == pytest.approx(au_f1(pred, labels_of("u")["au"])[0])
    run_postprocess(ws, PostConfig(au_thresholds="tuned_on_scored", smooth={"au": {"method": "none"}}),
                    progress=False)
    summary = run_evaluate(ws)
    r = summary.metrics["au"]["official"]
    assert "after" not in r and r["after_tuned_on_scored"]["f1"] == 1.0 and r["optimistic"] is True
    assert r["thresholds_from"] == "scored frames (optimistic)"
    assert r["optimistic_reason"] == "AU thresholds tuned on the scored frames"
    assert json.loads((ws.eval_dir / "metrics.json").read_text()) == summary.metrics
    assert "au ensemble F1" in summary.line()


def test_threshold_fallback_warning_reaches_metrics_json(tmp_path):
    ws = make_post_workspace(tmp_path / "ws", tasks=("au",))
    index = json.loads(ws.predictions_index.read_text())
    index["models"] = [m for m in index["models"] if m["fold"] == "official"]
    ws.predictions_index.write_text(json.dumps(index))
    run_postprocess(ws, PostConfig(smooth={"au": {"method": "none"}}), progress=False)
    summary = run_evaluate(ws)
    r = summary.metrics["au"]["official"]
    assert r["thresholds_from"] == "0.5 fallback (no out-of-fold frame)" and "no labelled AU frame" in r["warnings"][0]
    # the official head trained on c only and no video chose its epoch: a and b are unseen, the ensemble honest
    assert "au ensemble F1 0.0000 -> 0.0000 in" in summary.line()


def test_tuned_smoothing_choice_reaches_metrics_json(tmp_path):
    ws = make_post_workspace(tmp_path / "ws", tasks=("va",))
    run_postprocess(ws, PostConfig(smooth={"va": {"sigma": "tuned"}}, smooth_grid=[0, 2, 4]), progress=False)
    systems = read_systems(ws)["systems"]
    m = run_evaluate(ws).metrics["va"]
    for fold in ("official", "0", "1"):
        chosen = systems[f"va-{fold}"]["smoothing"]
        assert m[fold]["smoothing"] == {"method": "gaussian", "sigma": chosen["sigma"], "from": "out-of-fold frames"}
    assert m["ensemble"]["smoothing"]["sigma"] == {f: systems[f"va-{f}"]["smoothing"]["sigma"] for f in ("official", "0", "1")}
