import numpy as np
import pytest
from scipy import ndimage

from afwpipe.decisions import binarize_au, soft_average, tune_au_thresholds, vote_au, vote_expr, vote_va
from afwpipe.temporal import SMOOTH_SIGMA, SMOOTH_WINDOW, fill_nearest, smooth, window_average


def test_fill_nearest_takes_closest_face_and_earlier_on_ties():
    present = np.array([0, 1, 0, 0, 1, 0, 0, 0, 1, 0], bool)
    values = np.arange(10.0)[:, None] * [1, 10]
    filled = fill_nearest(values, present)
    #       frame: 0  1  2  3  4  5  6  7  8  9
    expected_src = [1, 1, 1, 4, 4, 4, 4, 8, 8, 8]  # frame 6: 4 and 8 at distance 2 -> earlier (4)
    np.testing.assert_array_equal(filled, values[expected_src])
    assert filled is not values


def test_fill_nearest_with_no_face_returns_values_unchanged():
    values = np.arange(6).reshape(3, 2)
    out = fill_nearest(values, np.zeros(3, bool))
    np.testing.assert_array_equal(out, values)
    with pytest.raises(ValueError, match="present"):
        fill_nearest(values, np.zeros(4, bool))


def _edge_padded(x, before, after):
    return np.concatenate([np.repeat(x[:1], before, 0), x, np.repeat(x[-1:], after, 0)])


def test_gaussian_smoothing_matches_direct_convolution():
    rng = np.random.default_rng(0)
    x = rng.random((30, 3))
    sigma = 2.0
    r = int(4 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    xp = _edge_padded(x, r, r)
    direct = np.stack([np.convolve(xp[:, c], k, mode="valid") for c in range(3)], axis=1)
    np.testing.assert_allclose(smooth(x, "gaussian", sigma=sigma), direct, atol=1e-12)


@pytest.mark.parametrize("window", [3, 4])
def test_median_and_mean_smoothing_match_direct_windows(window):
    rng = np.random.default_rng(1)
    x = rng.random((12, 2))
    before = window // 2
    after = window - 1 - before  # scipy centring: frames t - w//2 .. t + (w-1)//2
    xp = _edge_padded(x, before, after)
    windows = np.stack([xp[t:t + window] for t in range(12)])
    np.testing.assert_allclose(smooth(x, "mean", window=window), windows.mean(axis=1))
    # scipy's median of an even window is the upper of the two middle values (a rank filter)
    np.testing.assert_allclose(smooth(x, "median", window=window), np.sort(windows, axis=1)[:, window // 2])


def test_smooth_defaults_per_task_and_errors():
    x = np.random.default_rng(2).random((200, 12))
    np.testing.assert_allclose(smooth(x, task="au"), ndimage.gaussian_filter1d(x, 5.0, axis=0, mode="nearest"))
    np.testing.assert_allclose(smooth(x, "median", task="va"), ndimage.median_filter(x, size=(50, 1), mode="nearest"))
    np.testing.assert_allclose(smooth(x, "mean", task="expr"), ndimage.uniform_filter1d(x, 25, axis=0, mode="nearest"))
    assert (SMOOTH_SIGMA, SMOOTH_WINDOW) == ({"au": 5, "expr": 25, "va": 25}, {"au": 10, "expr": 25, "va": 50})
    with pytest.raises(ValueError, match="unknown method"):
        smooth(x, "box", window=3)
    with pytest.raises(ValueError, match="task="):
        smooth(x, "mean")
    # a constant signal stays constant at the edges (mode="nearest")
    np.testing.assert_allclose(smooth(np.ones((50, 2)), task="expr"), 1.0)


def test_window_average_means_overlaps_and_drops_padding_past_the_end():
    windows = [(0, np.full((4, 2), 1.0)), (2, np.full((4, 2), 3.0)), (4, np.full((4, 2), 5.0))]
    out = window_average(windows, 7)  # last window runs 1 frame past the end
    np.testing.assert_allclose(out[:, 0], [1, 1, 2, 2, 4, 4, 5])
    with pytest.raises(ValueError, match="1 of 9 frames are in no window"):
        window_average(windows[:2] + [(7, np.ones((2, 2)))], 9)


def test_tune_au_thresholds_finds_the_separating_threshold():
    prob = np.zeros((8, 12)) + 0.5
    true = np.zeros((8, 12), int)
    # AU0: positives have prob 0.35, negatives 0.2 -> any threshold in (0.2, 0.35]: closest to 0.5 is 0.35
    prob[:, 0] = [0.35, 0.35, 0.35, 0.2, 0.2, 0.2, 0.2, 0.2]
    true[:3, 0] = 1
    # AU1: positives 0.8, negatives 0.7 -> 0.75 or 0.8, closest to 0.5 is 0.75
    prob[:, 1] = [0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    true[:2, 1] = 1
    true[:, 2] = -1  # no valid frame -> 0.5
    th = tune_au_thresholds(prob, true)
    assert th[0] == pytest.approx(0.35) and th[1] == pytest.approx(0.75) and th[2] == 0.5
    np.testing.assert_array_equal(binarize_au(prob, th)[:, 0], true[:, 0])


def test_vote_au_majority_and_ties():
    a, b, c = np.array([[1, 0, 1]]), np.array([[1, 1, 0]]), np.array([[0, 0, 1]])
    np.testing.assert_array_equal(vote_au([a, b, c]), [[1, 0, 1]])
    np.testing.assert_array_equal(vote_au([a, b]), [[1, 1, 1]])  # 1-1 ties -> positive by default
    np.testing.assert_array_equal(vote_au([a, b], tie=0), [[1, 0, 0]])


def test_vote_expr_majority_then_probability_then_lowest_index():
    preds = [np.array([2, 5, 1]), np.array([2, 3, 4]), np.array([0, 5, 6])]
    np.testing.assert_array_equal(vote_expr(preds), [2, 5, 1])  # frame 2: three-way tie -> lowest
    probs = [np.full((3, 8), 0.1) for _ in range(3)]
    probs[2][2, 6] = 0.9
    np.testing.assert_array_equal(vote_expr(preds, probs), [2, 5, 6])


def test_vote_va_and_soft_average_are_means():
    a, b = np.array([[0.2, -0.4]]), np.array([[0.4, 0.0]])
    np.testing.assert_allclose(vote_va([a, b]), [[0.3, -0.2]])
    np.testing.assert_allclose(soft_average([a, b], weights=[3, 1]), [[0.25, -0.3]])
    with pytest.raises(ValueError, match="differ in shape"):
        vote_va([a, np.zeros((2, 2))])


def test_tune_au_thresholds_ties_go_to_the_closest_to_half_then_the_lower():
    from afwpipe.decisions import AU_THRESHOLD_GRID

    # every threshold in (0.05, 0.95] separates these frames perfectly: F1 is 1 on the whole grid
    prob = np.where(np.arange(10)[:, None] < 4, 0.95, 0.05) * np.ones((1, 12))
    true = (prob > 0.5).astype(int)
    assert (tune_au_thresholds(prob, true) == 0.5).all()
    assert (tune_au_thresholds(prob, true, np.array([0.1, 0.45, 0.9])) == 0.45).all()  # closest beats lower
    # each pair of the default grid equally far from 0.5 (0.45/0.55 … 0.1/0.9): the lower one, whatever the
    # rounding of grid - 0.5 (0.7 - 0.5 < 0.5 - 0.3 in float64)
    grid = [float(g) for g in AU_THRESHOLD_GRID]
    pairs = [(lo, hi) for lo in grid for hi in grid if lo < 0.5 < hi and round(lo + hi, 9) == 1.0]
    assert len(pairs) == 8
    for lo, hi in pairs:
        assert (tune_au_thresholds(prob, true, np.array([hi, lo])) == lo).all(), (lo, hi)
