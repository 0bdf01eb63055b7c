"""A least-recently-used cache bounded in bytes, for whole-video feature arrays, with pins for read-ahead."""

from __future__ import annotations

import threading
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

    Pinned entries (:meth:`put` with ``pin=True``, :meth:`pin`) are never evicted until :meth:`unpin`:
    a reader thread loads the videos an epoch needs next and pins them until their last clip is cut
    (:class:`afwpipe.clips.dataset.ReadAhead`). Evicting only unpinned entries can leave ``nbytes`` above
    ``max_bytes`` while pinned bytes alone exceed it; the reader avoids that by waiting on
    :meth:`fits`. Every method holds one lock (``cond``, a :class:`threading.Condition` the reader waits on).
    """

    def __init__(self, max_bytes: int | None = DEFAULT_CACHE_BYTES):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.cond = threading.Condition()
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._pins: dict[Any, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        return key in self._items

    def get(self, key, load: Callable[[], Any]) -> Any:
        """The value of ``key``, calling ``load()`` (and caching its result) on a miss."""
        with self.cond:
            if key in self._items:
                self.hits += 1
                self._items.move_to_end(key)
                return self._items[key][0]
        value = load()
        self.put(key, value)
        return value

    def put(self, key, value, pin: bool = False) -> None:
        """Cache ``value`` under ``key`` (a miss: the caller loaded it), pinned when ``pin``; then evict
        least-recently-used unpinned entries until the budget holds (or only pinned ones are left)."""
        size = _nbytes(value)
        with self.cond:
            self.misses += 1
            if pin:
                self._pins[key] = self._pins.get(key, 0) + 1
            elif self.max_bytes is not None and size > self.max_bytes:
                return
            if key in self._items:
                self.nbytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self.nbytes += size
            self._evict()
            self.cond.notify_all()

    def pin(self, key) -> bool:
        """Pin ``key`` if it is cached (and make it the most recent); False when it is not."""
        with self.cond:
            if key not in self._items:
                return False
            self._pins[key] = self._pins.get(key, 0) + 1
            self._items.move_to_end(key)
            return True

    def unpin(self, key) -> None:
        """Release one pin of ``key``; unpinned, it can be evicted again (least recently used first)."""
        with self.cond:
            n = self._pins.pop(key, 0) - 1
            if n > 0:
                self._pins[key] = n
            self._evict()
            self.cond.notify_all()

    def unpin_all(self) -> None:
        """Release every pin (an epoch ended or was abandoned)."""
        with self.cond:
            self._pins.clear()
            self._evict()
            self.cond.notify_all()

    def pinned_bytes(self) -> int:
        with self.cond:
            return sum(self._items[k][1] for k in self._pins if k in self._items)

    def fits(self, size: int) -> bool:
        """True when ``size`` more bytes fit the budget once every unpinned entry is evicted."""
        return self.max_bytes is None or self.pinned_bytes() + size <= self.max_bytes

    def _evict(self) -> None:
        if self.max_bytes is None:
            return
        for key in list(self._items):
            if self.nbytes <= self.max_bytes:
                return
            if key not in self._pins:
                self.nbytes -= self._items.pop(key)[1]


def _nbytes(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, Mapping):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0
