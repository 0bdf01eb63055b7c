"""One task per video on a Dask LocalCluster (two worker processes on loopback) gives the same stores, and
the scheduler's task stream shows each video's task (``detect-<name>``, ``extract-<encoder>-<name>``) ran
on one of the cluster's workers."""

from contextlib import contextmanager

import numpy as np
import pytest
import zarr

from afwpipe.detect import DetectConfig, run_detect
from afwpipe.extract import ExtractConfig, run_extract

from test_detect import _dataset, _frames
from synth import make_video


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, env={"OMP_NUM_THREADS": "1"}) as c:
        yield c


@contextmanager
def _task_workers(cluster):
    """Yields a dict filled, when the block ends, with task key -> address of the worker that ran it, for
    every task the scheduler's task stream recorded during the block (whichever client submitted it)."""
    from distributed import Client, get_task_stream

    ran = {}
    with Client(cluster) as client:
        workers = set(client.scheduler_info()["workers"])
        assert len(workers) == 2
        with get_task_stream(client) as ts:
            yield ran
        for rec in ts.data:
            assert rec["worker"] in workers, rec
            ran[str(rec["key"])] = rec["worker"]


def _stores_equal(a_ws, b_ws, stores, names):
    for path_of in stores:
        a, b = zarr.open_group(str(path_of(a_ws)), mode="r"), zarr.open_group(str(path_of(b_ws)), mode="r")
        for name in names:
            assert a[name].attrs["complete"] and b[name].attrs["complete"]
            assert sorted(a[name].array_keys()) == sorted(b[name].array_keys())
            for arr in a[name].array_keys():
                np.testing.assert_array_equal(a[name][arr][...], b[name][arr][...], err_msg=f"{name}/{arr}")


@pytest.mark.sample
def test_local_cluster_run_equals_single_process(cluster, sample_videos, tmp_path, one_torch_thread):
    man, woman = _frames(sample_videos["single_face"], 6), _frames(sample_videos["WolfgangLanger_Pexels"], 6)
    vids = {"v1": make_video(tmp_path / "v1.mp4", 6, size=(320, 180), frames=man),
            "v2": make_video(tmp_path / "v2.mp4", 5, size=(320, 180), frames=woman),
            "v3": make_video(tmp_path / "v3.avi", 4, size=(96, 64), audio=False)}
    single, dist = _dataset(tmp_path / "single", vids), _dataset(tmp_path / "dist", vids)
    cfg = DetectConfig(size=64, batch_size=4)
    with _task_workers(cluster) as ran:
        run_detect(single, cfg, progress=False)
    assert ran == {}  # without a scheduler nothing goes to the cluster
    with _task_workers(cluster) as ran:
        summary = run_detect(dist, cfg, progress=False, scheduler=cluster.scheduler_address)
    assert sorted(ran) == ["detect-v1", "detect-v2", "detect-v3"]
    assert [r.name for r in summary.results] == ["v1", "v2", "v3"] and not summary.failures
    _stores_equal(single, dist, [lambda w: w.faces, lambda w: w.audio], vids)
    for enc in ("mini_xception", "logmel"):
        run_extract(single, ExtractConfig(enc), progress=False)
        with _task_workers(cluster) as ran:
            s = run_extract(dist, ExtractConfig(enc), progress=False, scheduler=cluster.scheduler_address)
        assert sorted(ran) == [f"extract-{enc}-{v}" for v in ("v1", "v2", "v3")]
        assert s.weights and not s.failures
        _stores_equal(single, dist, [lambda w, e=enc: w.features(e)], vids)


def test_cluster_reports_bad_video_and_keeps_the_rest(cluster, tmp_path):
    vids = {"good": make_video(tmp_path / "good.mp4", 4, size=(96, 64)),
            "bad": make_video(tmp_path / "bad.mp4", 30, size=(96, 64))}
    ws = _dataset(tmp_path, vids)
    bad = tmp_path / "ds" / "videos" / "bad.mp4"
    bad.write_bytes(bad.read_bytes()[:900])
    with _task_workers(cluster) as ran:
        s = run_detect(ws, DetectConfig(size=32, batch_size=4), progress=False, scheduler=cluster.scheduler_address)
    assert sorted(ran) == ["detect-bad", "detect-good"]
    assert [r.name for r in s.failures] == ["bad"] and "bad.mp4" in s.failures[0].error
    assert zarr.open_group(str(ws.faces), mode="r")["good"].attrs["complete"]
