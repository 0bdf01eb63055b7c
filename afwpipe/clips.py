"""Clips of K frames cut from cached per-frame features, with labels and masks, for training fusion heads.

Reading: Zarr costs ~3.5 ms of per-call overhead for a small read (about 28k frames/s for 100-frame
clips, vs ~200k frames/s for whole-video reads; docs/stores.md, "Chunking and shards"), so a video's arrays are read
whole, once, into a bounded LRU cache (bytes) and every clip is cut from memory. When the features do
not fit in the cache, training order is a block shuffle: videos are shuffled, dealt into blocks that fit,
and clips are shuffled within a block, so each video is still read once per epoch.

A clip of video ``name`` starting at frame ``s`` covers frames ``s … s+K−1``; starts are ``0, stride,
2·stride, …`` up to the first clip that reaches the last frame, which is padded (``mask`` False) when it
runs past the end (and a video shorter than K is one padded clip). Every frame is covered.

A batch (``ClipDataset.batch``) is a dict of tensors:

- ``x``: encoder -> ``[B, K, D]`` float32 features (standardised when stats are set; padding is 0)
- ``present``: encoder -> ``[B, K]`` bool, False where the modality is missing (no face / no audio) or padded
- ``mask``: ``[B, K]`` bool, True on real frames (False on padding)
- ``labels``: ``au [B, K, 12]`` int64, ``expr [B, K]`` int64, ``va [B, K, 2]`` float32 with the invalid
  markers of :mod:`afwpipe.labels` on invalid and padded frames
- ``valid``: task -> ``[B, K]`` bool (valid label and real frame)
- ``video``: ``[B]`` int64 index into ``names``; ``start``: ``[B]`` int64 first frame
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from . import store
from .errors import TrainError
from .labels import TASKS

log = logging.getLogger(__name__)

#: clip length in frames (Netease Fuxi ABAW5/6 and USTC ABAW8 train on clips of about 100 frames)
DEFAULT_K = 100
#: default byte budget of the whole-video cache
DEFAULT_CACHE_BYTES = 4 << 30
#: std floor of the standardisation (constant feature channels are centred, not blown up)
STD_EPS = 1e-6
LABEL_TASKS = tuple(TASKS)
#: feature-group attributes that describe one video, not the encoder (left out of the identity)
PER_VIDEO_ATTRS = {store.COMPLETE, "video", "n_frames", "present_frames"}


def available_encoders(ws: store.Workspace) -> list[str]:
    """Names of the feature stores of workspace ``ws`` (``features/<name>.zarr``), sorted."""
    d = ws.features_dir
    return sorted(p.name[: -len(".zarr")] for p in d.glob("*.zarr") if p.is_dir()) if d.is_dir() else []


def clip_starts(n_frames: int, k: int, stride: int) -> list[int]:
    """First frames of the clips of a ``n_frames`` video: ``0, stride, …`` until a clip reaches the end."""
    if k < 1 or stride < 1:
        raise ValueError(f"clip_starts: K and stride must be ≥ 1, got K={k}, stride={stride}")
    starts, s = [], 0
    while True:
        starts.append(s)
        if s + k >= n_frames:
            return starts
        s += stride


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


class ZarrFeatures:
    """The feature stores ``features/<encoder>.zarr`` of a workspace, read whole-video at a time.

    Args:
        ws: the workspace.
        encoders: encoder names, in concatenation order.

    Attributes:
        reads: number of array reads done so far (one per video, encoder and array).

    Raises:
        TrainError: an encoder has no store (the message lists the stores that exist).
    """

    def __init__(self, ws: store.Workspace, encoders: Sequence[str]):
        if not encoders:
            raise TrainError("no encoder given: name at least one feature store (e.g. mini_xception)")
        self.ws = ws
        self.encoders = list(encoders)
        self.paths = {e: ws.features(e) for e in self.encoders}
        missing = [e for e, p in self.paths.items() if not p.is_dir()]
        if missing:
            have = available_encoders(ws)
            raise TrainError(
                f"no feature store for encoder{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                f"in {ws.features_dir}; stores that exist: {', '.join(have) or '(none)'} "
                f"(run `afwpipe extract --encoder {missing[0]}`)")
        self._groups = {e: store.open_store(p, "r") for e, p in self.paths.items()}
        self.reads = 0

    def _check(self, enc: str, name: str) -> None:
        if not store.is_complete(self.paths[enc], name):
            raise TrainError(f"{self.paths[enc]}: no complete features of video {name!r} "
                             f"(run `afwpipe extract --encoder {enc}`)")

    def shape(self, enc: str, name: str) -> tuple[int, int]:
        """``(T, D)`` of ``emb`` of video ``name`` (metadata only, no data read)."""
        self._check(enc, name)
        t, d = self._groups[enc][f"{name}/emb"].shape
        return int(t), int(d)

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
        """Whole ``emb [T, D]`` (stored dtype, float16) and ``present [T]`` bool of video ``name``."""
        self._check(enc, name)
        g = self._groups[enc][name]
        emb = g["emb"][...]
        self.reads += 1
        if "present" in g:
            present = np.asarray(g["present"][...], dtype=bool)
            self.reads += 1
        else:
            present = np.ones(len(emb), dtype=bool)
        return emb, present


class ArrayFeatures:
    """Features already in memory, with the interface of :class:`ZarrFeatures` (tests, benchmarks).

    Args:
        arrays: encoder -> video name -> ``(emb [T, D], present [T] bool)``.
        identities: encoder -> provenance attributes (default ``{"encoder": name, "dim": D}``).
    """

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

    def load(self, enc: str, name: str) -> tuple[np.ndarray, np.ndarray]:
        self.reads += 1
        return self.arrays[enc][name]


def load_labels(ws: store.Workspace, names: Sequence[str], tasks: Sequence[str] = LABEL_TASKS
                ) -> dict[str, dict[str, np.ndarray]]:
    """Whole label arrays of ``names`` from ``labels.zarr``: name -> task -> ``au [T,12] int8`` /
    ``expr [T] int8`` / ``va [T,2] float32`` (invalid markers as stored).

    Raises:
        TrainError: a video has no labels group (the index and labels.zarr disagree).
    """
    root = store.open_store(ws.labels, "r")
    out = {}
    for name in names:
        if name not in root:
            raise TrainError(f"{ws.labels}: no labels of video {name!r}; rerun `afwpipe index`")
        g = root[name]
        out[name] = {t: g[t][...] for t in tasks}
    return out


def _check_finite(emb: np.ndarray, enc: str, name: str) -> None:
    ok = np.isfinite(emb)
    if not ok.all():
        frame = int(np.flatnonzero(~ok.reshape(len(emb), -1).all(axis=1))[0])
        kind = "NaN" if np.isnan(emb[frame]).any() else "Inf"
        n_bad = int((~ok.reshape(len(emb), -1).all(axis=1)).sum())
        raise TrainError(f"encoder {enc!r}, video {name!r}: {kind} in the features at frame {frame} "
                         f"({n_bad} bad frame(s)); re-extract this video")


class ClipDataset(torch.utils.data.Dataset):
    """Clips of K frames over the videos ``names`` (see the module docstring for the batch layout).

    Args:
        features: :class:`ZarrFeatures` (or :class:`ArrayFeatures`) of the encoders to use.
        labels: name -> task -> label array (:func:`load_labels`); every video of ``names``.
        names: videos, in order (``batch["video"]`` indexes it).
        k: clip length in frames.
        stride: frames between clip starts; default ``K // 2`` when ``training`` else ``K``.
        training: only picks the default stride.
        stats: encoder -> ``(mean [D], std [D])`` for standardisation, or None (raw features).
        cache_bytes: byte budget of the whole-video cache (None: unbounded).
        tasks: label tasks carried in batches.

    Raises:
        TrainError: an encoder's features and the labels (or two encoders) differ in length for a video
            (names both lengths), or a video has no features in an encoder's store. NaN/Inf found when a
            video is first loaded also raise TrainError naming the encoder, video and frame.
    """

    def __init__(self, features, labels: Mapping[str, Mapping[str, np.ndarray]], names: Sequence[str],
                 k: int = DEFAULT_K, stride: int | None = None, training: bool = True,
                 stats: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                 cache_bytes: int | None = DEFAULT_CACHE_BYTES, tasks: Sequence[str] = LABEL_TASKS):
        self.features = features
        self.encoders = list(features.encoders)
        self.labels = labels
        self.names = list(names)
        self.tasks = tuple(tasks)
        self.k = int(k)
        self.stride = int(stride) if stride else (max(1, self.k // 2) if training else self.k)
        self.cache = LRUCache(cache_bytes)
        self.dims: dict[str, int] = {}
        self.n_frames: list[int] = []
        self.video_bytes: list[int] = []
        for name in self.names:
            t = self._labels_length(name)
            nbytes = 0
            for enc in self.encoders:
                te, d = features.shape(enc, name)
                if te != t:
                    raise TrainError(self._length_message(name, enc, te, t))
                if self.dims.setdefault(enc, d) != d:
                    raise TrainError(f"encoder {enc!r}: video {name!r} has dim {d}, other videos {self.dims[enc]}")
                nbytes += te * d * 2 + te
            self.n_frames.append(t)
            self.video_bytes.append(nbytes)
        self.clips = np.array([(v, s) for v, t in enumerate(self.n_frames) for s in clip_starts(t, self.k, self.stride)],
                              dtype=np.int64).reshape(-1, 2)
        self.stats = None
        if stats is not None:
            self.set_stats(stats)

    def _labels_length(self, name: str) -> int:
        lengths = {t: len(a) for t, a in self.labels[name].items()}
        if len(set(lengths.values())) > 1:
            raise TrainError(f"labels of video {name!r} differ in length: {lengths}")
        return next(iter(lengths.values()))

    def _length_message(self, name: str, enc: str, te: int, t: int) -> str:
        for other in self.encoders:
            if other == enc:
                break
            to = self.features.shape(other, name)[0]
            if to != te:
                return (f"video {name!r}: features of encoder {enc!r} have {te} frames but encoder {other!r} "
                        f"has {to} (labels: {t}); re-extract the shorter one")
        return f"video {name!r}: features of encoder {enc!r} have {te} frames but its labels have {t}; re-extract it"

    def __len__(self) -> int:
        return len(self.clips)

    # -- whole-video arrays -------------------------------------------------------------------------
    def video(self, i: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Encoder -> ``(emb [T, D], present [T])`` of video ``i``, whole, through the cache."""
        name = self.names[i]

        def load():
            out = {}
            for enc in self.encoders:
                emb, present = self.features.load(enc, name)
                _check_finite(emb, enc, name)
                out[enc] = (emb, present)
            return out

        return self.cache.get(name, load)

    def feature_stats(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per-encoder mean and std ``[D]`` float32 over the frames of this dataset's videos where the
        modality is present (all frames when it never is). Compute it on the training split only."""
        acc = {e: [0.0, 0.0, 0] for e in self.encoders}
        acc_all = {e: [0.0, 0.0, 0] for e in self.encoders}
        for i in range(len(self.names)):
            for enc, (emb, present) in self.video(i).items():
                x = emb.astype(np.float64)
                for a, rows in ((acc[enc], x[present]), (acc_all[enc], x)):
                    a[0] = a[0] + rows.sum(axis=0)
                    a[1] = a[1] + (rows * rows).sum(axis=0)
                    a[2] += len(rows)
        stats = {}
        for enc in self.encoders:
            s, ss, n = acc[enc] if acc[enc][2] else acc_all[enc]
            if n == 0:
                raise TrainError(f"encoder {enc!r}: no frame to compute standardisation statistics from")
            mean = np.asarray(s) / n
            std = np.sqrt(np.maximum(np.asarray(ss) / n - mean * mean, 0.0))
            stats[enc] = (mean.astype(np.float32), np.maximum(std, STD_EPS).astype(np.float32))
        return stats

    def set_stats(self, stats: Mapping[str, tuple[np.ndarray, np.ndarray]] | None) -> None:
        """Use ``stats`` (encoder -> mean, std ``[D]``) to standardise features; None turns it off."""
        if stats is None:
            self.stats = None
            return
        missing = [e for e in self.encoders if e not in stats]
        if missing:
            raise TrainError(f"standardisation statistics lack encoder(s) {', '.join(missing)}")
        self.stats = {e: (np.asarray(stats[e][0], np.float32), np.asarray(stats[e][1], np.float32))
                      for e in self.encoders}

    # -- clips and batches --------------------------------------------------------------------------
    def batch(self, indices: Sequence[int]) -> dict:
        """Stack the clips ``indices`` into one batch (layout in the module docstring)."""
        idx = np.asarray(indices, dtype=np.int64)
        b, k = len(idx), self.k
        x = {e: np.zeros((b, k, d), np.float32) for e, d in self.dims.items()}
        present = {e: np.zeros((b, k), bool) for e in self.encoders}
        mask = np.zeros((b, k), bool)
        labels = {}
        for task in self.tasks:
            _, cols, invalid = TASKS[task]
            shape = (b, k) if task == "expr" else (b, k, len(cols))
            labels[task] = np.full(shape, invalid, np.float32 if task == "va" else np.int64)
        for row, (v, s) in enumerate(self.clips[idx]):
            n = min(k, self.n_frames[v] - s)
            mask[row, :n] = True
            for enc, (emb, pres) in self.video(int(v)).items():
                x[enc][row, :n] = emb[s:s + n]
                present[enc][row, :n] = pres[s:s + n]
            for task in self.tasks:
                labels[task][row, :n] = self.labels[self.names[v]][task][s:s + n]
        if self.stats is not None:
            for enc in self.encoders:
                mean, std = self.stats[enc]
                missing = ~present[enc] & ~x[enc].any(axis=-1)  # absent modality stored as zeros stays zero
                x[enc] -= mean
                x[enc] /= std
                x[enc][missing] = 0.0
        valid = {t: _valid(labels[t], t) & mask for t in self.tasks}
        return {
            "x": {e: torch.from_numpy(a) for e, a in x.items()},
            "present": {e: torch.from_numpy(a) for e, a in present.items()},
            "mask": torch.from_numpy(mask),
            "labels": {t: torch.from_numpy(a) for t, a in labels.items()},
            "valid": {t: torch.from_numpy(a) for t, a in valid.items()},
            "video": torch.from_numpy(self.clips[idx, 0].copy()),
            "start": torch.from_numpy(self.clips[idx, 1].copy()),
        }

    def __getitem__(self, i: int) -> dict:
        """One clip: the batch layout without the leading B dimension."""
        return _unbatch(self.batch([i]))

    def order(self, shuffle: bool = False, rng: np.random.Generator | None = None) -> np.ndarray:
        """Clip indices of one epoch: in order, or shuffled; when the videos do not all fit in the cache,
        block-shuffled (videos shuffled, dealt into blocks that fit, clips shuffled within a block)."""
        if not shuffle:
            return np.arange(len(self.clips))
        rng = rng or np.random.default_rng()
        budget = self.cache.max_bytes
        if budget is None or sum(self.video_bytes) <= budget:
            return rng.permutation(len(self.clips))
        by_video = [np.flatnonzero(self.clips[:, 0] == v) for v in range(len(self.names))]
        out, block, used = [], [], 0
        for v in rng.permutation(len(self.names)):
            if block and used + self.video_bytes[v] > budget:
                out.append(rng.permutation(np.concatenate(block)))
                block, used = [], 0
            block.append(by_video[v])
            used += self.video_bytes[v]
        if block:
            out.append(rng.permutation(np.concatenate(block)))
        return np.concatenate(out)

    def batches(self, batch_size: int, shuffle: bool = False, rng: np.random.Generator | None = None):
        """Iterate over batches of ``batch_size`` clips (the last one may be smaller)."""
        order = self.order(shuffle, rng)
        for i in range(0, len(order), batch_size):
            yield self.batch(order[i:i + batch_size])


def _valid(labels: np.ndarray, task: str) -> np.ndarray:
    """``[B, K]`` valid-label mask of a batch (AU: all 12 valid; VA: both valid), as ``valid_mask`` per frame."""
    ok = labels != TASKS[task][2]
    return ok.all(axis=-1) if task != "expr" else ok


def _unbatch(batch):
    if isinstance(batch, dict):
        return {k: _unbatch(v) for k, v in batch.items()}
    return batch[0]


__all__ = ["ArrayFeatures", "ClipDataset", "DEFAULT_CACHE_BYTES", "DEFAULT_K", "LRUCache", "ZarrFeatures",
           "available_encoders", "clip_starts", "load_labels"]
