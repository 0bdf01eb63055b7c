"""afwpipe.folds.inner_split: the videos that choose an epoch are carved out of the training side."""

import pytest

from afwpipe.errors import TrainError
from afwpipe.folds import inner_split
from synth import as_index


def _index(names_videos):
    return as_index({"videos": [{"name": n, "video": v} for n, v in names_videos]})


def test_siblings_stay_together_and_sides_are_disjoint():
    pairs = [(f"v{i}", f"v{i}") for i in range(8)] + [("v3_left", "v3"), ("v5_right", "v5")]
    index = _index(pairs)
    names = [n for n, _ in pairs]
    for seed in range(20):
        fit, select = inner_split(index, names, seed=seed, frac=0.25)
        assert set(fit).isdisjoint(select) and sorted(fit + select) == sorted(names)
        assert len({index.by_name[s].video for s in select}) == 2  # ceil(.25*8)
        for a, b in (("v3", "v3_left"), ("v5", "v5_right")):
            assert (a in select) == (b in select)


def test_seed_changes_the_choice_and_is_reproducible():
    index = _index([(f"v{i}", f"v{i}") for i in range(10)])
    names = [f"v{i}" for i in range(10)]
    assert inner_split(index, names, 1) == inner_split(index, names, 1)
    assert len({tuple(inner_split(index, names, s)[1]) for s in range(10)}) > 1


def test_too_few_videos_selects_nothing():
    index = _index([("a", "a"), ("a_left", "a"), ("b", "b")])
    assert inner_split(index, ["a", "a_left", "b"], 0) == (["a", "a_left", "b"], [])


def test_bad_fraction_is_an_error():
    with pytest.raises(TrainError, match="fraction"):
        inner_split(_index([]), [], 0, frac=1.5)
