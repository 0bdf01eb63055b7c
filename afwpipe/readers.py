"""Readers of the stores that :mod:`afwpipe.store` lays out: labels and features, read whole-video at a
time (clips are cut in memory; docs/stores.md).

Features are read with tensorstore (https://google.github.io/tensorstore/, its ``zarr3`` driver), a C++
implementation of Zarr v3 with sharding: one ``pread`` per shard file and no Python work per chunk, where
zarr-python 3 spends ~1.6 ms per whole-array read beyond its bytes (event-loop hop, shard index read, one
read per inner chunk, several copies). The stores themselves are plain Zarr v3, written by zarr-python, and
still open with ``zarr.open_group``, ``xarray.open_zarr`` and ``dask.array.from_zarr``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import functools
import json
import os
from pathlib import Path

import numpy as np
import tensorstore as ts

from . import store
from .errors import PostprocessError, PredictError, TrainError
from .datasets.base import index_tasks, is_generic
from .exclusions import frame_mask, invalidate
from .labels import TASKS
from .views import EMB, FULL, array_name, view_modality

#: between an encoder and a view in the name of a local-view feature stream (``vggish@tfcrop0.8``)
STREAM_SEP = "@"
#: feature-group attributes that describe one video, not the encoder (left out of the identity)
PER_VIDEO_ATTRS = {store.COMPLETE, "layout", "video", "n_frames", "present_frames"}

#: tensorstore's limits for feature reads (its Context resources ``data_copy_concurrency`` and
#: ``file_io_concurrency``, https://google.github.io/tensorstore/spec.html#context): at most this many tasks
#: decode / copy chunks at once (CPU work: one core, so a reader leaves the other cores to the head that
#: trains) and at most this many file reads are in flight (threads that wait on the disk, not the CPU;
#: several at once keep a disk busier than one after the other). No chunk cache (``cache_pool`` 0 bytes):
#: the whole-video LRU cache of :mod:`afwpipe.clips` holds what is read.
READ_COPY_THREADS = 1
READ_IO_THREADS = 4


@functools.cache
def read_context() -> ts.Context:
    """The one tensorstore Context of this process's feature reads (:data:`READ_COPY_THREADS`,
    :data:`READ_IO_THREADS`, no chunk cache)."""
    return ts.Context({"data_copy_concurrency": {"limit": READ_COPY_THREADS},
                       "file_io_concurrency": {"limit": READ_IO_THREADS},
                       "cache_pool": {"total_bytes_limit": 0}})


def open_array(path: Path) -> ts.TensorStore:
    """Open the Zarr v3 array at folder ``path`` for reading with tensorstore (metadata only; reads go
    through :func:`read_context`).

    Raises:
        TrainError: the folder holds no Zarr v3 array tensorstore can read (the message names the folder and
            tensorstore's reason).
    """
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
    try:
        return ts.open(spec, read=True, open=True, context=read_context()).result()
    except ValueError as e:
        raise TrainError(f"{path}: cannot open this Zarr array for reading ({e}); re-extract the video") from e


def _result(future, path: Path) -> np.ndarray:
    """The array of a tensorstore read ``future`` of the array at ``path``; a failed read (e.g. a shard file
    cut short) raises TrainError naming the array."""
    try:
        return future.result()
    except ValueError as e:
        raise TrainError(f"{path}: cannot read this Zarr array ({e}); re-extract the video") from e


def available_encoders(ws: store.Workspace) -> list[str]:
    """Names of the feature stores of workspace ``ws`` (``features/<name>.zarr``), sorted."""
    d = ws.features_dir
    return sorted(p.name[: -len(".zarr")] for p in d.glob("*.zarr") if p.is_dir()) if d.is_dir() else []


class ZarrFeatures:
    """The feature stores ``features/<encoder>.zarr`` of a workspace, read whole-video at a time.

    Args:
        ws: the workspace.
        encoders: encoder names, in concatenation order.
        view: which cached view :meth:`load` reads (:mod:`afwpipe.views`): ``full`` (``emb``), a view name
            (``emb_<view>``, from the encoders of its modality: a crop view from visual encoders, an audio view
            of :mod:`afwpipe.audio_views` from audio encoders; the others give ``emb``) or ``mean`` (float32
            average of a visual encoder's ``views``). Or a list ``[full, <view>, ...]``: the global view and
            local views as separate feature blocks: every encoder gives ``emb`` under its own name, and each
            encoder of a listed view's modality also ``emb_<view>`` as the stream ``<encoder>@<view>``
            (its own entry of :attr:`encoders`, so the head sees it as one more input).

    Attributes:
        encoders: the feature streams, in concatenation order: the encoders given, each followed by its
            ``<encoder>@<view>`` streams when ``view`` is a list.
        reads: number of array reads done so far (one per video, encoder and array).
        on_disk: True: :class:`~afwpipe.clips.ClipDataset` reads these features ahead of use.

    Reads go through tensorstore (:func:`open_array`, threads limited by :data:`READ_COPY_THREADS` and
    :data:`READ_IO_THREADS`); the arrays are bit-identical to ``zarr.open_group(...)[...][:]``. Opening an
    array reads its metadata document (~0.5 ms), so the handles are opened once per video and kept
    (``shape`` opens them); ``emb`` and ``present`` are read in the same call (both reads in flight at
    once), so ``present`` costs next to nothing beside ``emb``. A cold read of one file at a time waits on
    the disk's latency, so :meth:`will_need` lets the OS read the next videos' files while this one is
    read. docs/guide/benchmarks.md's rows 5c, 5g, 5h and 5j give the measured rates.

    Raises:
        TrainError: an encoder has no store (the message lists the stores that exist); a view list that does not
            start with ``full``.
    """

    on_disk = True

    def __init__(self, ws: store.Workspace, encoders: Sequence[str], view: str | Sequence[str] = FULL):
        if not encoders:
            raise TrainError("no encoder given: name at least one feature store (e.g. mini_xception)")
        self.ws = ws
        self.paths = {e: ws.features(e) for e in encoders}
        missing = [e for e, p in self.paths.items() if not p.is_dir()]
        if missing:
            have = available_encoders(ws)
            raise TrainError(
                f"no feature store for encoder{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                f"in {ws.features_dir}; stores that exist: {', '.join(have) or '(none)'} "
                f"(run `afwpipe extract --encoder {missing[0]}`)")
        self._groups = {e: store.open_store(p, "r") for e, p in self.paths.items()}
        self._stream_view: dict[str, str] = {}  # <encoder>@<view> -> view
        if isinstance(view, str):
            self.view, local = view, []
        else:
            if not view or view[0] != FULL:
                raise TrainError(f"view list {list(view)}: the first view is the global one and must be {FULL!r} "
                                 f"(e.g. [full, tfcrop0.8])")
            self.view, local = FULL, list(view[1:])
        self.encoders = []
        for e in encoders:
            self.encoders.append(e)
            for v in local:
                if view_modality(v) == _store_modality(self._groups[e]):
                    s = f"{e}{STREAM_SEP}{v}"
                    self.encoders.append(s)
                    self._stream_view[s] = v
                    self.paths[s], self._groups[s] = self.paths[e], self._groups[e]
        for v in local:
            if not any(sv == v for sv in self._stream_view.values()):
                raise TrainError(f"view {v!r} applies to {view_modality(v)} encoders, but none of the features "
                                 f"{', '.join(encoders)} is {view_modality(v)}")
        self._arrays: dict[tuple[str, str], tuple] = {}
        self._views: dict[tuple[str, str, str], ts.TensorStore] = {}
        self.reads = 0

    def _handles(self, enc: str, name: str) -> tuple:
        """``(emb, present or None)`` tensorstore arrays of a complete video, opened once and kept."""
        key = (enc, name)
        if key not in self._arrays:
            if not store.is_complete(self.paths[enc], name):
                raise TrainError(f"{self.paths[enc]}: no complete features of video {name!r} "
                                 f"(run `afwpipe extract --encoder {enc}`)")
            g = self.paths[enc] / name
            present = g / "present"
            self._arrays[key] = (open_array(g / EMB),
                                 open_array(present) if (present / "zarr.json").is_file() else None)
        return self._arrays[key]

    def _array(self, enc: str, name: str, array: str) -> ts.TensorStore:
        """Tensorstore array ``array`` (e.g. ``emb_flip``) of video ``name``, opened once and kept."""
        if array == EMB:
            return self._handles(enc, name)[0]
        key = (enc, name, array)
        if key not in self._views:
            self._views[key] = open_array(self.paths[enc] / name / array)
        return self._views[key]

    def _read(self, enc: str, name: str, array: str) -> np.ndarray:
        """Whole array ``array`` of video ``name`` (its stored dtype)."""
        self.reads += 1
        return _result(self._array(enc, name, array).read(), self.paths[enc] / name / array)

    def shape(self, enc: str, name: str) -> tuple[int, int]:
        """``(T, D)`` of ``emb`` of video ``name`` (metadata only, no data read)."""
        t, d = self._handles(enc, name)[0].shape
        return int(t), int(d)

    def nbytes(self, enc: str, name: str) -> int:
        """Bytes :meth:`load` returns for video ``name`` (metadata only): ``emb`` at its stored itemsize
        (float16: 2) -- 4 (float32) for view ``mean`` of a visual encoder -- plus 1 per frame of ``present``.
        What a cache of loaded videos holds, so a byte budget can count it before the read."""
        emb = self._handles(enc, name)[0]
        t, d = emb.shape
        itemsize = emb.dtype.numpy_dtype.itemsize
        if self.view == "mean" and self._groups[enc][name].attrs.get("modality", "visual") == "visual":
            itemsize = np.dtype(np.float32).itemsize
        return int(t) * int(d) * itemsize + int(t)

    def will_need(self, names: Sequence[str]) -> None:
        """Tell the OS that the feature files of videos ``names`` (every encoder) will be read soon
        (``posix_fadvise(POSIX_FADV_WILLNEED)``: the kernel starts reading them into the page cache in the
        background). A hint only: nothing happens where the call does not exist, and a file that cannot be
        opened is left to :meth:`load` to report."""
        if not hasattr(os, "posix_fadvise"):
            return
        for enc in self.encoders:
            for name in names:
                for path in _files_under(self.paths[enc] / name):
                    try:
                        fd = os.open(path, os.O_RDONLY)
                    except OSError:
                        continue
                    try:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                    finally:
                        os.close(fd)

    def identity(self, enc: str, names: Sequence[str]) -> dict:
        """Provenance of the encoder's features (``encoder``, ``modality``, ``dim``, ``weights``,
        ``encoder_config``, …: the video group attributes without per-video ones like ``video``).

        Raises:
            TrainError: the videos ``names`` were extracted with different weights or encoder configs.
        """
        first = None
        for name in names:
            attrs = {k: v for k, v in self._groups[enc][name].attrs.items() if k not in PER_VIDEO_ATTRS}
            if first is None:
                first, first_name = attrs, name
            elif any(attrs.get(k) != first.get(k) for k in ("weights", "encoder_config", "dim")):
                raise TrainError(f"{self.paths[enc]}: videos {first_name!r} and {name!r} were extracted with "
                                 f"different weights/configs ({first.get('weights')} vs {attrs.get('weights')}); "
                                 f"re-extract with one setting")
        return first or {}

    def load(self, enc: str, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Whole ``emb [T, D]`` (stored dtype, float16; float32 for view ``mean``) of :attr:`view` and
        ``present [T]`` bool of video ``name``.

        Raises:
            TrainError: the video is not complete; a visual encoder's video lacks the view (``mean``: has
                fewer than two views); an array cannot be opened or read (names the array's folder).
        """
        emb_array, present_array = self._handles(enc, name)
        folder = self.paths[enc] / name
        # both reads in flight before either is awaited: present's few bytes come while emb's are read
        present_read = present_array.read() if present_array is not None else None
        if self._stream_view.get(enc, self.view) == FULL:
            emb = _result(emb_array.read(), folder / EMB)
            self.reads += 1
        else:
            emb = self._view_emb(enc, name, self._groups[enc][name])
        if present_read is not None:
            present = np.asarray(_result(present_read, folder / "present"), dtype=bool)
            self.reads += 1
        else:
            present = np.ones(len(emb), dtype=bool)
        return emb, present

    def _view_emb(self, enc: str, name: str, g) -> np.ndarray:
        view = self._stream_view.get(enc, self.view)
        modality = g.attrs.get("modality", "visual")
        if view == FULL or (view_modality(view) if view != "mean" else "visual") != modality:
            return self._read(enc, name, EMB)
        stored = list(g.attrs.get("views", [FULL]))
        want = stored if view == "mean" else [view]
        if any(v not in stored for v in want) or len(want) < (2 if view == "mean" else 1):
            base = enc.split(STREAM_SEP)[0]
            how = ("--views full,flip,crop0.8,..." if modality == "visual"
                   else f"--views full,{view}` or params extract.options.{base}.views: [full, {view}]`")
            raise TrainError(f"{self.paths[enc]}: video {name!r} of encoder {base!r} has views {', '.join(stored)}; "
                             f"view {view!r} needs {'two or more' if view == 'mean' else view} "
                             f"(run `afwpipe extract --encoder {base} {how}`)")
        if len(want) == 1:
            return self._read(enc, name, array_name(want[0]))
        # the mean of the views in float32, one view in memory at a time beside the sum (np.mean over a stack
        # held every view as float32 at once: n_views x the video's bytes at peak); the same sum order as the
        # stack's mean over axis 0, so the values are the same
        total = self._read(enc, name, array_name(want[0])).astype(np.float32)
        for v in want[1:]:
            total += self._read(enc, name, array_name(v))
        total /= np.float32(len(want))
        return total


def _store_modality(group) -> str:
    """``modality`` attribute of a feature store's first video group (``visual`` when it has none)."""
    for _, g in group.groups():
        return g.attrs.get("modality", "visual")
    return "visual"


def _files_under(folder: Path) -> list[Path]:
    """Data files below ``folder`` (not the ``zarr.json`` metadata)."""
    out = []
    for root, _, files in os.walk(folder):
        out.extend(Path(root) / f for f in files if f != "zarr.json")
    return out


class ArrayFeatures:
    """Features already in memory, with the interface of :class:`ZarrFeatures` (tests, benchmarks).

    Args:
        arrays: encoder -> video name -> ``(emb [T, D], present [T] bool)``.
        identities: encoder -> provenance attributes (default ``{"encoder": name, "dim": D}``).
    """

    on_disk = False

    def __init__(self, arrays: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
                 identities: Mapping[str, dict] | None = None):
        self.arrays = arrays
        self.encoders = list(arrays)
        self.identities = dict(identities or {})
        self.reads = 0

    def shape(self, enc: str, name: str) -> tuple[int, int]:
        if name not in self.arrays[enc]:
            raise TrainError(f"encoder {enc!r}: no features of video {name!r}")
        t, d = self.arrays[enc][name][0].shape
        return int(t), int(d)

    def identity(self, enc: str, names: Sequence[str]) -> dict:
        return self.identities.get(enc, {"encoder": enc, "dim": self.shape(enc, names[0])[1]})

    def nbytes(self, enc: str, name: str) -> int:
        """Bytes :meth:`load` returns for video ``name`` (``emb`` and ``present`` as held)."""
        emb, present = self.arrays[enc][name]
        return int(np.asarray(emb).nbytes + np.asarray(present).nbytes)

    def load(self, enc: str, name: str) -> tuple[np.ndarray, np.ndarray]:
        self.reads += 1
        return self.arrays[enc][name]


def trained_on_of(encoder_config: dict | None) -> list[str]:
    """The videos whose labels fitted a fine-tuned encoder (``afwpipe finetune``), from a feature store's
    ``encoder_config`` (its ``finetune.trained_on``, :mod:`afwpipe.encoders.finetuned`); ``[]`` for an encoder
    that was not fine-tuned here."""
    return list(((encoder_config or {}).get("finetune") or {}).get("trained_on") or [])


def load_labels(ws: store.Workspace, names: Sequence[str], tasks: Sequence[str] = tuple(TASKS)
                ) -> dict[str, dict[str, np.ndarray]]:
    """Whole label arrays of ``names`` from ``labels.zarr``: name -> task -> ``au [T,12] int8`` /
    ``expr [T] int8`` / ``va [T,2] float32`` (a dataset's declared tasks: ``[T, ...]`` / ``[1, ...]``,
    :mod:`afwpipe.datasets`) (invalid markers as stored), with the frames the index excludes
    (the manifest's ``exclude``: frame ranges and a detector-score floor, :mod:`afwpipe.exclusions`) set to the
    invalid markers, so that no step trains on or scores them.

    Raises:
        TrainError: a video has no labels group (the index and labels.zarr disagree), or the score floor is set
            and a video has no complete faces (:func:`afwpipe.exclusions.frame_mask`).
    """
    root = store.open_store(ws.labels, "r")
    index = ws.read_index() if ws.index.is_file() else None
    specs = index_tasks(index) if is_generic(index) else None
    out = {}
    for name in names:
        if name not in root:
            raise TrainError(f"{ws.labels}: no labels of video {name!r}; rerun `afwpipe index`")
        g = root[name]
        out[name] = {t: g[t][...] for t in tasks}
        frames = {t: a for t, a in out[name].items() if specs is None or specs[t].level == "frame"}
        n = len(next(iter(frames.values()))) if frames else 0
        mask = frame_mask(ws, index, name, n) if frames else None
        if mask is not None:  # a video task's label is the whole video's: excluded frames leave it
            markers = None if specs is None else {t: specs[t].invalid for t in frames}
            out[name] = {**out[name], **invalidate(frames, mask, markers)}
    return out


def read_predictions_index(ws: store.Workspace) -> list[dict]:
    """The model records of ``predictions/index.json``.

    Raises:
        PredictError: there is no prediction index (run ``afwpipe predict``).
    """
    if not ws.predictions_index.is_file():
        raise PredictError(f"{ws.predictions_index}: no predictions; run `afwpipe predict` (or `dvc repro predict`)")
    return json.loads(ws.predictions_index.read_text())["models"]


def read_prediction(ws: store.Workspace, model: str, name: str) -> dict[str, np.ndarray]:
    """Arrays of one video of one head: task -> ``[T, C]`` float32 and ``present [T]`` bool.

    Raises:
        PredictError: the video has no complete predictions of this head.
    """
    path = ws.predictions(model)
    if not store.is_complete(path, name):
        raise PredictError(f"{path}: no complete predictions of video {name!r}; rerun `afwpipe predict`")
    g = store.open_store(path, "r")[name]
    return {k: g[k][...] for k in g.array_keys()}


def read_systems(ws: store.Workspace) -> dict:
    """``post/systems.json`` (``config`` and ``systems``).

    Raises:
        PostprocessError: there is none (run ``afwpipe postprocess``).
    """
    if not ws.post_systems.is_file():
        raise PostprocessError(f"{ws.post_systems}: no post-processed predictions; run `afwpipe postprocess`")
    return json.loads(ws.post_systems.read_text())


def read_post(ws: store.Workspace, system: str, name: str) -> dict[str, np.ndarray]:
    """``prob``, ``before`` and ``after`` of one video of one system, and ``general`` (the general head's
    decisions) for a video a scene head predicted (:mod:`afwpipe.postprocess`).

    Raises:
        PostprocessError: the system or the video has no post-processed output.
    """
    path = ws.post(system)
    if not path.is_file():
        raise PostprocessError(f"{path}: no post-processed system {system!r}; run `afwpipe postprocess`")
    with np.load(path) as z:
        if f"{name}/after" not in z.files:
            raise PostprocessError(f"{path}: no post-processed predictions of video {name!r}")
        return {k: z[f"{name}/{k}"] for k in ("prob", "before", "after", "general") if f"{name}/{k}" in z.files}


__all__ = ["ArrayFeatures", "ZarrFeatures", "available_encoders", "load_labels", "read_post", "read_prediction",
           "read_predictions_index", "read_systems"]
