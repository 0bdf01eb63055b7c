"""The suite has a per-test timeout (pytest-timeout, pyproject's ``[tool.pytest.ini_options]``): a deadlock,
as two read-ahead bugs once caused, fails the run instead of hanging CI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent

DEADLOCK = textwrap.dedent("""
    import threading

    def test_waits_for_a_reader_that_never_comes():
        cond = threading.Condition()
        with cond:
            cond.wait()  # no timeout: what a read-ahead consumer did when its reader died
""")


def test_pyproject_gives_every_test_a_timeout_that_ends_a_deadlock(tmp_path):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    opts = pyproject["tool"]["pytest"]["ini_options"]
    assert 300 <= int(opts["timeout"]) <= 1800  # generous: the sample workspace fixture takes minutes
    assert opts["timeout_method"] == "thread"  # also ends a hang that a signal cannot interrupt
    assert any(r.startswith("pytest-timeout") for r in pyproject["project"]["optional-dependencies"]["test"])
    # the configured method ends a real deadlock (the timeout shortened to 3 s for this run only)
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n" + "".join(
        f"{k} = {v!r}\n".replace("'", '"') for k, v in opts.items() if k.startswith("timeout")))
    (tmp_path / "test_deadlock.py").write_text(DEADLOCK)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "timeout=3",
                        "test_deadlock.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode != 0, r.stdout
    assert "Timeout" in r.stdout + r.stderr and "cond.wait()" in r.stdout + r.stderr
