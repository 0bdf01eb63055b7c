"""The clip dataset: clips of K frames over cached per-frame features, with labels and masks, for training
and evaluating fusion heads. Like timm's data package, its jobs live in their own modules: reading
(:mod:`afwpipe.readers`), the whole-video cache (:mod:`.cache`), which clips and in what order
(:mod:`.sampler`), batching (:mod:`.collate`, where the batch layout is documented) and standardisation
(:mod:`.stats`).

Reading: Zarr costs ~3.5 ms of per-call overhead for a small read (about 28k frames/s for 100-frame
clips, against ~200k frames/s for whole-video reads; docs/stores.md), so a video's arrays are read
whole, once, into a bounded LRU cache (bytes) and every clip is cut from memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..errors import TrainError
from ..labels import TASKS
from .cache import DEFAULT_CACHE_BYTES, LRUCache
from .collate import collate, unbatch
from .sampler import DEFAULT_K, clip_table, epoch_order
from .stats import checked_stats, feature_stats


def _check_finite(emb: np.ndarray, enc: str, name: str) -> None:
    ok = np.isfinite(emb)
    if not ok.all():
        frame = int(np.flatnonzero(~ok.reshape(len(emb), -1).all(axis=1))[0])
        kind = "NaN" if np.isnan(emb[frame]).any() else "Inf"
        n_bad = int((~ok.reshape(len(emb), -1).all(axis=1)).sum())
        raise TrainError(f"encoder {enc!r}, video {name!r}: {kind} in the features at frame {frame} "
                         f"({n_bad} bad frame(s)); re-extract this video")


class ClipDataset(torch.utils.data.Dataset):
    """Clips of K frames over the videos ``names`` (see :mod:`afwpipe.clips.collate` for the batch layout).

    Args:
        features: :class:`~afwpipe.readers.ZarrFeatures` (or ``ArrayFeatures``) of the encoders to use.
        labels: name -> task -> label array (:func:`afwpipe.readers.load_labels`); every video of ``names``.
        names: videos, in order (``batch["video"]`` indexes it).
        k: clip length in frames.
        stride: frames between clip starts; default ``K // 2`` when ``training`` else ``K``.
        training: only picks the default stride.
        stats: encoder -> ``(mean [D], std [D])`` for standardisation, or None (raw features).
        cache_bytes: byte budget of the whole-video cache (None: unbounded).
        tasks: label tasks carried in batches.
        gate: a :class:`~afwpipe.clips.gate.SpeechGate` zeroing audio features outside speech, or None.

    Raises:
        TrainError: an encoder's features and the labels (or two encoders) differ in length for a video
            (names both lengths), or a video has no features in an encoder's store. NaN/Inf found when a
            video is first loaded also raise TrainError naming the encoder, video and frame.
    """

    def __init__(self, features, labels: Mapping[str, Mapping[str, np.ndarray]], names: Sequence[str],
                 k: int = DEFAULT_K, stride: int | None = None, training: bool = True,
                 stats: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                 cache_bytes: int | None = DEFAULT_CACHE_BYTES, tasks: Sequence[str] = tuple(TASKS),
                 gate=None):
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
        self.clips = clip_table(self.n_frames, self.k, self.stride)
        self.stats = None
        self.gate = gate
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
        """Per-encoder mean and std ``[D]`` float32 over this dataset's videos (:func:`.stats.feature_stats`).
        Compute it on the training split only."""
        return feature_stats((self.video(i) for i in range(len(self.names))), self.encoders)

    def set_stats(self, stats: Mapping[str, tuple[np.ndarray, np.ndarray]] | None) -> None:
        """Use ``stats`` (encoder -> mean, std ``[D]``) to standardise features; None turns it off."""
        self.stats = None if stats is None else checked_stats(stats, self.encoders)

    # -- clips and batches --------------------------------------------------------------------------
    def batch(self, indices: Sequence[int]) -> dict:
        """Stack the clips ``indices`` into one batch (layout in :mod:`afwpipe.clips.collate`)."""
        rows = self.clips[np.asarray(indices, dtype=np.int64)]
        batch = collate(rows, self.k, self.dims, self.n_frames, self.video,
                        lambda v: self.labels[self.names[v]], self.tasks, self.stats)
        if self.gate is not None:
            self.gate.apply(batch, rows, self.names, self.n_frames)
        return batch

    def __getitem__(self, i: int) -> dict:
        """One clip: the batch layout without the leading B dimension."""
        return unbatch(self.batch([i]))

    def order(self, shuffle: bool = False, rng: np.random.Generator | None = None) -> np.ndarray:
        """Clip indices of one epoch (:func:`.sampler.epoch_order` with this dataset's cache budget)."""
        return epoch_order(self.clips, self.video_bytes, self.cache.max_bytes, shuffle, rng)

    def batches(self, batch_size: int, shuffle: bool = False, rng: np.random.Generator | None = None):
        """Iterate over batches of ``batch_size`` clips (the last one may be smaller)."""
        order = self.order(shuffle, rng)
        for i in range(0, len(order), batch_size):
            yield self.batch(order[i:i + batch_size])
