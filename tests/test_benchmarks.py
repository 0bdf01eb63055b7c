"""Smoke test of ``benchmarks/run.py --quick``: every row of the table is produced with finite numbers.

No timed assertions: the values are measurements of this machine, not properties of the code.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROWS = {"1a", "1b", "1c", "2", "2b", "2c", "3a", "3b", "3c", "3c2", "3d", "4a", "4b", "4c", "4d", "4e", "4f", "4g",
        "4h", "4i", "5a", "5b", "5c", "5c1", "5d", "5e", "5f", "5g", "5h", "5i", "5j", "5k", "6", "7", "8a", "8b", "8c",
        "9a", "9b", "9c", "9d", "9e", "9f", "9g", "9h", "9i", "1d"}
REPEATED = {"1a", "1b", "1c", "2", "2b", "2c", "4a", "4b", "4c", "4d", "4e", "4f", "5a", "5b", "5g", "5h", "5i", "6", "7",
            "8a", "8b", "8c", "1d"}  # timed: a spread of repeats


@pytest.mark.slow
@pytest.mark.sample
def test_quick_benchmark_prints_every_ratio_with_finite_numbers(tmp_path, sample_videos):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--json", str(out),
                           "--workdir", str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {r["id"]: r for r in result["rows"]}
    assert set(rows) == ROWS
    for r in rows.values():
        for key in ("ratio", "numerator", "denominator"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["id"], key, r[key])
        assert f"| {r['id']} | {r['what']} |" in proc.stdout  # in the printed table
    for rid in REPEATED:
        lo, hi = rows[rid]["spread"]
        assert rows[rid]["repeats"] >= 2 and lo <= rows[rid]["ratio"] <= hi, rows[rid]
    assert {rid for rid, r in rows.items() if r["goal"]} == {"1c", "2b", "2c", "3b", "3c", "3c2", "3d", "4c", "4d", "4e", "4f",
                                                             "4h", "4i", "5g", "5h", "5i", "7", "8a", "8b", "8c", "9a",
                                                             "9b", "9c", "9d", "9e", "9f", "9g", "9h", "9i", "1d"}
    assert result["machine"]["cpu"] and result["machine"]["torch"]
    assert "Machine:" in proc.stdout
    assert list(tmp_path.iterdir()) == [out]  # temporary files removed
