import numpy as np
import pytest
from sklearn.metrics import f1_score

from afwpipe.metrics import au_f1, ccc, expr_f1, f1_binary, va_ccc


def _ccc_direct(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    sxy = np.sum((x - x.mean()) * (y - y.mean())) / len(x)
    return 2 * sxy / (np.var(x) + np.var(y) + (x.mean() - y.mean()) ** 2)


@pytest.mark.parametrize("seed", range(5))
def test_au_f1_matches_sklearn_per_au_on_valid_frames(seed):
    rng = np.random.default_rng(seed)
    true = (rng.random((300, 12)) < rng.random(12) * 0.5).astype(int)
    pred = (rng.random((300, 12)) < 0.3).astype(int)
    true[rng.random(300) < 0.2] = -1  # whole frames invalid, as in Aff-Wild2
    mean, per = au_f1(pred, true)
    valid = true[:, 0] != -1
    expected = [f1_score(true[valid, j], pred[valid, j], zero_division=0) for j in range(12)]
    np.testing.assert_allclose(per, expected)
    assert mean == pytest.approx(np.mean(expected))


def test_au_f1_masks_per_entry_and_scores_absent_positives_zero():
    true = np.zeros((4, 12), int)
    true[0, 3] = -1
    pred = np.zeros((4, 12), int)
    pred[0, 3] = 1  # on an invalid entry: ignored
    mean, per = au_f1(pred, true)
    assert mean == 0.0 and np.all(per == 0.0)


def test_all_invalid_frames_raise_clear_error():
    with pytest.raises(ValueError, match="no valid frame"):
        au_f1(np.zeros((3, 12)), -np.ones((3, 12), int))
    with pytest.raises(ValueError, match="no valid frame"):
        expr_f1(np.zeros(3, int), -np.ones(3, int))
    with pytest.raises(ValueError, match="valence has no valid frame"):
        va_ccc(np.zeros((3, 2)), np.full((3, 2), -5.0))


@pytest.mark.parametrize("seed", range(5))
def test_expr_f1_matches_sklearn_macro_over_8_classes(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 6, 200)  # classes 6 and 7 absent from truth
    pred = rng.integers(0, 7, 200)  # class 7 absent from both
    true[rng.random(200) < 0.1] = -1
    mean, per = expr_f1(pred, true)
    valid = true != -1
    kw = dict(labels=list(range(8)), zero_division=0)
    assert mean == pytest.approx(f1_score(true[valid], pred[valid], average="macro", **kw))
    np.testing.assert_allclose(per, f1_score(true[valid], pred[valid], average=None, **kw))
    assert per[7] == 0.0


def test_expr_f1_rejects_out_of_range_prediction():
    with pytest.raises(ValueError, match="outside 0..7"):
        expr_f1(np.array([0, 8]), np.array([0, 1]))


def test_f1_binary_no_positives_anywhere_is_zero():
    assert f1_binary(np.zeros(5), np.zeros(5)) == 0.0
    assert f1_binary(np.array([1, 0]), np.array([1, 0])) == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_ccc_matches_direct_formula(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=100)
    y = 0.5 * x + rng.normal(scale=0.5, size=100) + 0.3
    assert ccc(x, y) == pytest.approx(_ccc_direct(x, y))
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(x - x.mean(), x.mean() - x) == pytest.approx(-1.0)


def test_ccc_degenerate_cases():
    y = np.array([0.1, 0.5, -0.2])
    assert ccc(np.zeros(3), y) == 0.0  # constant prediction, varying truth
    assert ccc(np.full(3, 0.2), np.full(3, -0.3)) == 0.0  # two different constants
    assert ccc(np.full(3, 0.2), np.full(3, 0.2)) == 1.0  # identical constants
    with pytest.raises(ValueError, match="empty"):
        ccc(np.array([]), np.array([]))


def test_va_ccc_masks_invalid_per_column():
    rng = np.random.default_rng(0)
    true = rng.uniform(-1, 1, (50, 2))
    pred = true + rng.normal(scale=0.2, size=(50, 2))
    true[:5, 0] = -5
    true[10:20, 1] = -5
    mean, v, a = va_ccc(pred, true)
    assert v == pytest.approx(_ccc_direct(pred[5:, 0], true[5:, 0]))
    keep = np.r_[0:10, 20:50]
    assert a == pytest.approx(_ccc_direct(pred[keep, 1], true[keep, 1]))
    assert mean == pytest.approx((v + a) / 2)


def test_constant_predictions_match_sklearn_and_the_direct_ccc():
    rng = np.random.default_rng(7)
    true_au = (rng.random((50, 12)) < 0.3).astype(int)
    true_au[:, 5] = 0  # an AU absent from the ground truth
    for value in (0, 1):
        pred = np.full((50, 12), value)
        mean, per = au_f1(pred, true_au)
        expected = [f1_score(true_au[:, j], pred[:, j], zero_division=0) for j in range(12)]
        np.testing.assert_allclose(per, expected)
        assert per[5] == 0.0
    true_expr = rng.integers(0, 8, 60)
    for cls in (0, 4):
        pred = np.full(60, cls)
        mean, per = expr_f1(pred, true_expr)
        assert mean == pytest.approx(f1_score(true_expr, pred, average="macro", labels=list(range(8)),
                                              zero_division=0))
    true_va = rng.uniform(-1, 1, (40, 2))
    mean, v, a = va_ccc(np.full((40, 2), 0.3), true_va)
    assert (v, a) == (0.0, 0.0) and mean == 0.0
    assert _ccc_direct(np.full(40, 0.3), true_va[:, 0]) == pytest.approx(0.0)
