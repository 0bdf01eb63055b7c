"""afwpipe.heap: with glibc's mmap threshold fixed, freed video-sized arrays go back to the OS instead of
staying in the heap (what kept train's and predict's peak RSS several times their cache budget)."""

import platform
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt(M_MMAP_THRESHOLD) is glibc's")

CHILD = textwrap.dedent("""
    import re, sys
    from pathlib import Path
    import numpy as np
    rss = lambda: int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
    if sys.argv[1] == "limit":
        from afwpipe.heap import limit_heap_retention
        assert limit_heap_retention() and limit_heap_retention()  # idempotent
    keep = []
    a = np.ones(8 << 20, np.uint8); del a       # a first large block freed: glibc raises its dynamic threshold
    base = rss()
    for i in range(40):                         # 4 MiB arrays freed, a small allocation kept after each
        b = np.ones(4 << 20, np.uint8); keep.append(np.ones(1000)); del b
    blocks = [np.ones(4 << 20, np.uint8) for _ in range(20)]  # 80 MiB at once, then freed
    keep.append(np.ones(1000))
    del blocks
    print(rss() - base)
""")


def retained_mib(mode: str) -> float:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip())


def test_freed_arrays_leave_the_process_with_the_threshold_fixed():
    # glibc's own behaviour (the reference): the 80 MiB freed last stay in the heap behind the kept small blocks
    assert retained_mib("default") > 40
    assert retained_mib("limit") < 8
