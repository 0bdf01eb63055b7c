"""Dataset readers behind a registry (afwpipe.datasets), task declarations, generic readers."""

from __future__ import annotations

import numpy as np
import pytest

from afwpipe.datasets import READERS, create_reader
from afwpipe.datasets.affwild2_reader import AFFWILD2_TASKS
from afwpipe.errors import DatasetError
from afwpipe.labels import TASKS, valid_mask
from afwpipe.manifest import dataset_spec


def test_registry_builds_affwild2_and_names_the_registered_on_an_unknown_reader():
    assert "affwild2" in READERS.list()
    assert create_reader("affwild2").name == "affwild2"
    with pytest.raises(DatasetError, match="unknown dataset reader 'dfew'; registered: .*affwild2"):
        create_reader("dfew")


def test_affwild2_builtin_tasks_mark_the_same_labels_valid_as_labels_valid_mask():
    for task, (_, names, invalid) in TASKS.items():
        spec = AFFWILD2_TASKS[task]
        lab = spec.empty(20)
        assert lab.dtype == (np.float32 if task == "va" else np.int8)
        lab[::3] = 0
        if task != "expr":
            lab[1, 0] = invalid
            lab[4, -1] = 1 if task == "au" else 0.5
        np.testing.assert_array_equal(spec.valid(lab), valid_mask(lab, task))
        assert spec.names == names


def test_affwild2_entry_refuses_declared_tasks(tmp_path):
    (tmp_path / "m.yaml").write_text("datasets:\n  aw:\n    root: .\n    tasks: {x: {level: video, type: class, classes: [a, b]}}\n")
    with pytest.raises(DatasetError, match=r"datasets.aw.tasks: the affwild2 reader's tasks are built in"):
        dataset_spec("aw", tmp_path / "m.yaml")
