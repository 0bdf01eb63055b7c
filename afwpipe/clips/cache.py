"""A least-recently-used cache bounded in bytes, for whole-video feature arrays."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

#: default byte budget of the whole-video cache (params ``train.cache_gb``)
DEFAULT_CACHE_BYTES = 4 << 30


class LRUCache:
    """Least-recently-used cache bounded in bytes (``nbytes`` of the cached numpy arrays).

    ``max_bytes=None`` is unbounded. An entry larger than the whole budget is returned but not kept.
    Counters ``hits`` and ``misses`` say how often the loader ran.
    """

    def __init__(self, max_bytes: int | None = DEFAULT_CACHE_BYTES):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        return key in self._items

    def get(self, key, load: Callable[[], Any]) -> Any:
        """The value of ``key``, calling ``load()`` (and caching its result) on a miss."""
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key][0]
        self.misses += 1
        value = load()
        size = _nbytes(value)
        if self.max_bytes is not None and size > self.max_bytes:
            return value
        self._items[key] = (value, size)
        self.nbytes += size
        while self.max_bytes is not None and self.nbytes > self.max_bytes:
            _, (_, old) = self._items.popitem(last=False)
            self.nbytes -= old
        return value


def _nbytes(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, Mapping):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0
