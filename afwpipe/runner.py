"""Run a per-video stage over many videos: in this process, or as one task per video on a Dask
distributed cluster (``--scheduler tcp://host:8786`` or dask's ``scheduler-address`` config).

A stage is built by a picklable factory (``functools.partial(FaceStage, ...)``) with a ``run_video(rec)
-> VideoResult`` method. On a cluster every worker process builds the stage once (the model is loaded
once per worker) and each task writes only its own video's groups, complete marker last, into the
shared store, so a cluster run and a single-process run give the same stores. Tasks that need a GPU
declare ``resources={"GPU": 1}``: start GPU workers with ``dask worker ADDRESS --resources GPU=1``.

Also here, shared by the per-video stages: ``VideoResult`` / ``StageSummary`` (results, the one-line
summary, the failures file) and ``prefetch`` (a generator run in a thread behind a bounded queue).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import dask
from tqdm import tqdm

from .errors import AfwpipeError, WeightsError

log = logging.getLogger(__name__)

_WORKER_STAGES: dict[str, Any] = {}
_END = object()


@dataclass
class VideoResult:
    """Summary of one video of a per-video stage (detect, extract)."""

    name: str
    frames: int = 0
    present: int = 0
    seconds: float = 0.0
    skipped: bool = False
    error: str | None = None
    audio: bool = False


@dataclass
class StageSummary:
    """Per-video results of a stage run, its one-line summary and its failures file."""

    stage: str = "detect"
    results: list[VideoResult] = field(default_factory=list)
    weights: str | None = None  # weights identity of the model that ran (extract)

    @property
    def failures(self) -> list[VideoResult]:
        return [r for r in self.results if r.error]

    def line(self) -> str:
        done = [r for r in self.results if not r.skipped and not r.error]
        frames = sum(r.frames for r in done)
        secs = sum(r.seconds for r in done)
        present = sum(r.present for r in done)
        rate = f" at {frames / secs:.1f} frames/s" if secs else ""
        return (f"{self.stage}: {len(done)} videos processed, {sum(r.skipped for r in self.results)} already complete, "
                f"{len(self.failures)} failed; {frames} frames{rate}, present in {present}/{frames} frames")

    def write_failures(self, path: Path) -> None:
        """Write ``[{name, error}]`` of the failed videos (an empty list when none failed)."""
        path.write_text(json.dumps([{"name": r.name, "error": r.error} for r in self.failures], indent=1) + "\n")


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




def _stage_key(factory) -> str:
    return repr(factory)


def run_one(stage, rec: dict):
    """``stage.run_video(rec)``; a bad video becomes a failed result, missing weights stop the run."""
    try:
        return stage.run_video(rec)
    except WeightsError:
        raise  # not a property of this video: every other video would fail the same way
    except AfwpipeError as e:
        log.error("%s", e)
        return VideoResult(rec["name"], error=str(e))


def _remote(rec: dict, factory: Callable):
    """Task body on a worker: build the stage once per worker process, then run one video."""
    key = _stage_key(factory)
    if key not in _WORKER_STAGES:
        _WORKER_STAGES[key] = factory()
    return run_one(_WORKER_STAGES[key], rec)


def scheduler_address(scheduler: str | None) -> str | None:
    """The given address, else dask's ``scheduler-address`` config (``DASK_SCHEDULER_ADDRESS``), else None."""
    return scheduler or dask.config.get("scheduler-address", None)


def run_videos(factory: Callable, recs: list[dict], desc: str, progress: bool = True,
               scheduler: str | None = None, gpu: bool = False) -> list:
    """Run ``factory().run_video`` on every record; return the results in ``recs`` order.

    Args:
        factory: picklable zero-argument callable building the stage.
        recs: index records (``name`` is the task key).
        desc: progress bar label and task-key prefix.
        scheduler: Dask scheduler address; None runs in this process (unless dask config names one).
        gpu: tasks require the worker resource ``GPU=1``.

    Raises:
        WeightsError: from the first video whose stage cannot load its model.
    """
    address = scheduler_address(scheduler)
    if address is None:
        stage = factory()
        return [run_one(stage, rec) for rec in tqdm(recs, desc=desc, unit="video", disable=not progress)]
    from distributed import Client, as_completed

    with Client(address) as client:
        log.info("submitting %d %s tasks to %s", len(recs), desc, address)
        futures = client.map(_remote, recs, factory=factory, pure=False,
                             key=[f"{desc}-{r['name']}" for r in recs],
                             resources={"GPU": 1} if gpu else None)
        order = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(recs)
        for fut in tqdm(as_completed(futures), total=len(futures), desc=f"{desc} @ {address}", unit="video",
                        disable=not progress):
            results[order[fut.key]] = fut.result()
    return results
