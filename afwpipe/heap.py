"""Keep freed video arrays from staying in the process's heap: glibc's ``mallopt(M_MMAP_THRESHOLD, ...)``.

Training and prediction read whole videos (a few MiB to a few hundred MiB each) into a cache bounded by
``train.cache_gb`` / ``predict.cache_gb``. glibc serves allocations above its mmap threshold with their own
``mmap`` and returns them to the OS on ``free``; but the threshold is dynamic: after the first large block is
freed, glibc raises it to that block's size (up to 32 MiB on 64-bit), so later video-sized arrays come from
the heap, and the heap keeps what they freed. The process's peak RSS then exceeds the cache budget by several
times the cache (``mallopt(3)``, "M_MMAP_THRESHOLD": setting it disables the dynamic adjustment). Setting a
fixed threshold of 128 KiB (glibc's own initial value) keeps every large array in its own mapping, returned
on ``free``; ``benchmarks/memory_budget.py`` measures the effect (docs/guide/benchmarks.md, rows 4h–4i).

Only glibc has ``mallopt`` with these parameters; elsewhere (macOS, musl) nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

#: glibc's malloc.h: ``#define M_MMAP_THRESHOLD -3``
M_MMAP_THRESHOLD = -3
#: bytes above which an allocation gets its own mapping: glibc's default initial threshold (128 KiB)
MMAP_THRESHOLD_BYTES = 128 * 1024

_done = False


def limit_heap_retention(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes for this process (module docstring). Idempotent;
    environment variable ``MALLOC_MMAP_THRESHOLD_`` (glibc's own tunable), when set, wins and nothing is changed.

    Returns:
        True when the threshold is (or was already) set by this call or an earlier one, False where the C
        library has no ``mallopt`` or refuses the value.
    """
    global _done
    if _done:
        return True
    import os

    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        _done = True
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, int(threshold)))
    if not _done:
        log.debug("mallopt(M_MMAP_THRESHOLD, %d) refused", threshold)
    return _done


__all__ = ["MMAP_THRESHOLD_BYTES", "M_MMAP_THRESHOLD", "limit_heap_retention"]
