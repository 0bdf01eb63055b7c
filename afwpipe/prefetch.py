"""Run a generator in a background thread behind a bounded queue: decoding or reading overlaps the
model's forward pass, and memory stays bounded by the queue size."""

from __future__ import annotations

import queue
import threading

_END = object()


def prefetch(gen, maxsize: int):
    """Run generator ``gen`` in a thread, yielding its items through a bounded queue (errors re-raised)."""
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def work():
        try:
            for item in gen:
                if stop.is_set():
                    return
                q.put(item)
            q.put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)

    th = threading.Thread(target=work, daemon=True)
    th.start()
    try:
        while (item := q.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while th.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                th.join(0.05)
