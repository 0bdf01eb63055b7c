"""Run a per-video worker over many videos: in this process, or as one task per video on a Dask
distributed cluster (``--scheduler tcp://host:8786`` or dask's ``scheduler-address`` config).

A worker is built by a picklable factory (``functools.partial(FaceWorker, ...)``) with a ``run_video(rec)
-> VideoResult`` method. On a cluster every worker process builds the worker once (the model is loaded
once per process) and each task writes only its own video's groups, complete marker last, into the
shared store, so a cluster run and a single-process run give the same stores. Tasks that need a GPU
declare ``resources={"GPU": 1}``: start GPU workers with ``dask worker ADDRESS --resources GPU=1``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import dask
from tqdm import tqdm

from .errors import AfwpipeError, WeightsError
from .results import VideoResult
from .records import IndexRecord

log = logging.getLogger(__name__)

_WORKERS: dict[str, Any] = {}


def _worker_key(factory) -> str:
    return repr(factory)


def run_one(worker, rec: IndexRecord):
    """``worker.run_video(rec)``; a bad video becomes a failed result, missing weights stop the run."""
    try:
        return worker.run_video(rec)
    except WeightsError:
        raise  # not a property of this video: every other video would fail the same way
    except AfwpipeError as e:
        log.error("%s", e)
        return VideoResult(rec.name, error=str(e))


def _remote(rec: IndexRecord, factory: Callable):
    """Task body on a Dask worker: build the video worker once per process, then run one video."""
    key = _worker_key(factory)
    if key not in _WORKERS:
        _WORKERS[key] = factory()
    return run_one(_WORKERS[key], rec)


def scheduler_address(scheduler: str | None) -> str | None:
    """The given address, else dask's ``scheduler-address`` config (``DASK_SCHEDULER_ADDRESS``), else None."""
    return scheduler or dask.config.get("scheduler-address", None)


def run_videos(factory: Callable, recs: list[IndexRecord], desc: str, progress: bool = True,
               scheduler: str | None = None, gpu: bool = False) -> list:
    """Run ``factory().run_video`` on every record; return the results in ``recs`` order.

    Args:
        factory: picklable zero-argument callable building the video worker.
        recs: index records (:class:`afwpipe.records.IndexRecord`; ``name`` is the task key).
        desc: progress bar label and task-key prefix.
        scheduler: Dask scheduler address; None runs in this process (unless dask config names one).
        gpu: tasks require the worker resource ``GPU=1``.

    Raises:
        WeightsError: from the first video whose worker cannot load its model.
    """
    address = scheduler_address(scheduler)
    if address is None:
        worker = factory()
        return [run_one(worker, rec) for rec in tqdm(recs, desc=desc, unit="video", disable=not progress)]
    from distributed import Client, as_completed

    with Client(address) as client:
        log.info("submitting %d %s tasks to %s", len(recs), desc, address)
        futures = client.map(_remote, recs, factory=factory, pure=False,
                             key=[f"{desc}-{r.name}" for r in recs],
                             resources={"GPU": 1} if gpu else None)
        order = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(recs)
        for fut in tqdm(as_completed(futures), total=len(futures), desc=f"{desc} @ {address}", unit="video",
                        disable=not progress):
            results[order[fut.key]] = fut.result()
    return results
