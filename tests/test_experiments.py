"""Queued DVC experiments on the sample's cached features: two heads side by side in `dvc exp show`.

Runs in a temporary copy of the repository (its own git repository and DVC cache). The cache is seeded
with the `sample_workspace` fixture's index, faces and features (`dvc commit`), so the experiments run only
train -> predict -> postprocess -> evaluate -> summary, never detect or extract.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

#: what the copy leaves out: derived data, caches, the repository's own git and DVC state
IGNORE = shutil.ignore_patterns(".git", "work", ".test-assets", "artifacts", "cache", "tmp", "config.local",
                                "__pycache__", "*.egg-info", ".pytest_cache")
#: a small configuration: one VA head on the official split (and the sample scene's head, which train.scenes must
#: list while the manifest has the scene), 2 epochs; scene heads do not replace the general head, so the
#: system's score before post-processing is the general head's own validation score
SMALL = ["-S", "train.tasks=[va]", "-S", "train.folds=[official]", "-S", "train.epochs=2",
         "-S", "postprocess.scenes=false"]
#: stages whose outputs the fixture provides
SEEDED = ["fetch_sample", "index", "detect", "extract@mini_xception", "extract@logmel"]


def _run(repo: Path, *args: str) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               AFWPIPE_OFFLINE="1")
    res = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
    assert res.returncode == 0, (args, res.stdout[-3000:], res.stderr[-3000:])
    return res.stdout


def _seed(repo: Path, ws, sample_videos: dict, fer_hdf5: Path) -> None:
    """The fixture's workspace and the fetched assets where the pipeline puts them, committed to DVC."""
    shutil.copytree(ws.root, repo / "work" / "sample")
    videos = repo / "data" / "sample" / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for path in sample_videos.values():
        shutil.copy(path, videos / path.name)
    (repo / "data" / "weights").mkdir(exist_ok=True)
    shutil.copy(fer_hdf5, repo / "data" / "weights" / fer_hdf5.name)


@pytest.mark.sample
@pytest.mark.slow
def test_queued_experiments_show_two_heads_side_by_side(sample_workspace, sample_videos, fer_hdf5, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=IGNORE)
    _seed(repo, sample_workspace, sample_videos, fer_hdf5)
    _run(repo, "git", "init", "-q")
    _run(repo, "dvc", "commit", "-f", "-q", *SEEDED)
    status = json.loads(_run(repo, "dvc", "status", "--json", *SEEDED))
    assert status == {}, f"the seeded stages would rerun: {status}"
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "seeded")
    for head in ("tmf", "tcn"):
        _run(repo, "dvc", "exp", "run", "--queue", "-n", f"exp-{head}", "-S", f"train.head={head}", *SMALL)
    _run(repo, "dvc", "queue", "start", "-j", "1")
    deadline = time.monotonic() + 3600  # a bound against a hung worker, not a timing assertion
    idle = 0
    while time.monotonic() < deadline and idle < 2:  # until the worker has been gone for two polls
        time.sleep(10)
        queue = _run(repo, "dvc", "queue", "status")
        idle = idle + 1 if "0 active, 0 idle" in queue else 0
    assert not any(s in queue for s in ("Queued", "Running", "Failed")), \
        (queue, _run(repo, "dvc", "queue", "logs", "exp-tcn"))

    rows = {}
    for baseline in json.loads(_run(repo, "dvc", "exp", "show", "--json")):
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                rows[rev["name"]] = rev["data"]
    assert set(rows) == {"exp-tmf", "exp-tcn"}
    for head in ("tmf", "tcn"):
        data = rows[f"exp-{head}"]
        assert data["params"]["params.yaml"]["data"]["train"]["head"] == head
        evaluation = data["metrics"]["metrics/evaluate.json"]["data"]
        training = data["metrics"]["metrics/train.json"]["data"]
        assert set(evaluation) == {"va"} and set(evaluation["va"]) == {"official", "ensemble"}
        assert -1 <= evaluation["va"]["official"]["before"] <= 1
        assert set(training) == {"va-official", "va-official-man"}
        assert training["va-official"]["epochs"] == training["va-official-man"]["epochs"] == 2
        # the head's own training metrics (work/, never in git) give the same best score
        assert training["va-official"]["score"] == pytest.approx(evaluation["va"]["official"]["before"], abs=1e-6)
        # each head's curves (DVCLive, afwpipe/curves.py): its last epoch, beside today's two files
        assert set(data["metrics"]) == {"metrics/evaluate.json", "metrics/train.json",
                                        "work/sample/curves/va-official/metrics.json",
                                        "work/sample/curves/va-official-man/metrics.json"}
        curve = data["metrics"]["work/sample/curves/va-official/metrics.json"]["data"]
        assert curve["step"] == 2 and set(curve) == {"step", "loss"}  # 2 training videos: no epoch choice
    assert rows["exp-tmf"]["metrics"] != rows["exp-tcn"]["metrics"], "two heads, identical scores"
    # detect and extract were not rerun: their seeded outputs are unchanged in both experiments
    assert "Running stage 'detect'" not in _run(repo, "dvc", "queue", "logs", "exp-tcn")
