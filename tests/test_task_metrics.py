"""Scores of declared tasks (afwpipe.task_metrics) against sklearn and scipy."""

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score

from afwpipe.datasets.base import parse_task
from afwpipe.metrics import ccc
from afwpipe.task_metrics import class_scores, multilabel_scores, pearson, regression_scores, task_scores


@pytest.mark.parametrize("seed", range(5))
def test_class_scores_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 5, 200)
    pred = np.where(rng.random(200) < 0.4, true, rng.integers(0, 5, 200))
    s = class_scores(pred, true)
    assert s["uar"] == pytest.approx(balanced_accuracy_score(true, pred))
    assert s["uar"] == pytest.approx(recall_score(true, pred, average="macro"))
    assert s["war"] == pytest.approx(accuracy_score(true, pred))
    assert s["f1"] == pytest.approx(f1_score(true, pred, average="macro", zero_division=0))


def test_uar_is_balanced_accuracy_when_a_predicted_class_is_absent_from_the_truth():
    true, pred = np.array([0, 0, 0, 1]), np.array([0, 2, 0, 1])
    s = class_scores(pred, true)
    assert s["uar"] == pytest.approx((2 / 3 + 1) / 2)
    with pytest.warns(UserWarning):
        assert s["uar"] == pytest.approx(balanced_accuracy_score(true, pred))
    assert s["f1"] == pytest.approx(f1_score(true, pred, average="macro", zero_division=0))


def test_multilabel_mean_f1_equals_sklearn_macro():
    rng = np.random.default_rng(1)
    true = (rng.random((300, 6)) < 0.3).astype(int)
    true[:, 5] = 0  # a class never on: F1 0 as sklearn's zero_division=0
    pred = (rng.random((300, 6)) < 0.35).astype(int)
    s = multilabel_scores(pred, true, list("abcdef"))
    assert s["f1"] == pytest.approx(f1_score(true, pred, average="macro", zero_division=0))
    assert s["per_class"]["a"] == pytest.approx(f1_score(true[:, 0], pred[:, 0]))


def test_regression_pearson_equals_scipy_and_ccc_is_lins():
    rng = np.random.default_rng(2)
    true = rng.normal(size=(150, 3))
    pred = 0.6 * true + rng.normal(scale=0.7, size=(150, 3)) + 0.3
    s = regression_scores(pred, true, ["joy", "awe", "calm"])
    rs = [pearsonr(pred[:, j], true[:, j]).statistic for j in range(3)]
    assert [s["per_target"][n]["pearson"] for n in ("joy", "awe", "calm")] == pytest.approx(rs)
    assert s["pearson"] == pytest.approx(np.mean(rs))
    # Lin (1989) with population moments, written out here
    x, y = pred[:, 1], true[:, 1]
    lin = 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    assert s["per_target"]["awe"]["ccc"] == pytest.approx(lin)
    assert s["ccc"] == pytest.approx(np.mean([ccc(pred[:, j], true[:, j]) for j in range(3)]))
    assert pearson(np.ones(4), np.arange(4)) == 0.0


def test_task_scores_leave_out_invalid_rows():
    task = parse_task("v", {"level": "frame", "type": "regression", "targets": ["v"]}, "t")
    labels = np.array([[0.1], [np.nan], [0.5], [0.9]], np.float32)
    pred = np.array([[0.2], [5.0], [0.4], [1.0]])
    s = task_scores(task, pred, labels)
    assert s["pearson"] == pytest.approx(pearsonr(pred[[0, 2, 3], 0], labels[[0, 2, 3], 0]).statistic)
    cls = parse_task("e", {"level": "video", "type": "class", "classes": ["a", "b"]}, "t")
    s = task_scores(cls, np.array([0, 1, 1]), np.array([0, -1, 0]))
    assert s["war"] == pytest.approx(0.5) and s["uar"] == pytest.approx(0.5)
