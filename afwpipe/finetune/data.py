"""The fine-tune's frames: which frames, in what order, and how their crops reach the model.

Frames: every ``frame_stride``-th frame of a video that has a face (``faces.zarr`` ``present``) and a valid
label of the task (``labels.zarr``); the others are skipped. An image of an ``image_csv`` dataset is a video of one
frame: it is kept whatever the stride (the stride thins frames within a video), it is a block of its own, and the
buffers shuffle ``buffer_blocks`` images together.

Order (one epoch, from indices only, so it is known before any crop is read and a resumed run skips to its
step without reading): the frames are cut into blocks of ``block_frames`` consecutive video frames; the
blocks are shuffled (seed, epoch), grouped ``buffer_blocks`` at a time into buffers, and the frames of a
buffer are shuffled together (the shuffle buffer of webdataset / tf.data, here over contiguous reads). The
last incomplete global batch is dropped.

Reading: one loader item is one buffer: each block is read with one contiguous zarr read of
``crops[lo:hi]`` (never one random frame at a time), only this process's frames are kept and augmented.
Items are built in ``workers`` processes of a torch ``DataLoader`` (pinned memory on CUDA). Augmentation
(timm ``create_transform``: random resized crop, flip, colour jitter, RandAugment) is seeded per frame
(seed, epoch, global position), so the result does not depend on the number of processes, of workers, or on
a restart.

Processes (DistributedDataParallel): micro-batch ``m`` of the global order is frames
``[m·B_m, (m+1)·B_m)``; process ``r`` of ``W`` takes its ``r``-th ``B_m / W`` slice. Every process reads
the blocks it needs, so reads grow with ``W`` while augmentation and the model are split.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from .. import store
from ..crop_codec import read_frames
from ..errors import TrainError
from ..readers import load_labels
from .tasks import FinetuneTask


@dataclass
class FramePlan:
    """The usable frames of a set of videos.

    Attributes:
        names: video (annotation) names.
        frames: per video, int64 ``[n_v]`` sorted frame indices (face present, task label valid, stride).
        labels: per video, the task's labels at those frames (``au [n_v, 12]`` int8, ``expr [n_v]`` int8,
            ``va [n_v, 2]`` float32; a declared task's ``[n_v]`` / ``[n_v, K]`` as ``labels.zarr`` stores them).
    """

    names: list[str]
    frames: list[np.ndarray]
    labels: list[np.ndarray]

    @property
    def n_frames(self) -> int:
        return int(sum(len(f) for f in self.frames))

    def all_labels(self) -> np.ndarray:
        """Every planned frame's label, concatenated (for class weights)."""
        return np.concatenate(self.labels) if self.labels else np.zeros(0)


def plan_frames(ws: store.Workspace, names, task: FinetuneTask | str, stride: int = 1) -> FramePlan:
    """The :class:`FramePlan` of ``names`` for ``task`` (a name: that Aff-Wild2 track).

    Raises:
        TrainError: a video has no complete ``faces.zarr`` group, its labels and frames differ in length, or no
            video has a usable frame.
    """
    names = list(names)
    task = task if isinstance(task, FinetuneTask) else FinetuneTask(task)
    labels = load_labels(ws, names, (task.name,))
    frames, lab = [], []
    for name in names:
        if not store.is_complete(ws.faces, name):
            raise TrainError(f"{ws.faces}/{name}: no complete detect output; run `afwpipe detect` first")
        present = np.asarray(store.read_array(ws.faces, name, "present"), bool)
        y = labels[name][task.name]
        if len(y) != len(present):
            raise TrainError(f"{ws.labels}/{name}: {len(y)} {task.name} labels for {len(present)} frames in "
                             f"{ws.faces}; rerun `afwpipe index` and `afwpipe detect`")
        idx = np.flatnonzero(present & task.valid(y))[::stride].astype(np.int64)
        frames.append(idx)
        lab.append(y[idx])
    plan = FramePlan(names, frames, lab)
    if plan.n_frames == 0:
        raise TrainError(f"finetune: no frame with a face and a valid {task.name} label in "
                         f"{', '.join(names[:5])}{', …' if len(names) > 5 else ''}")
    return plan


@dataclass
class EpochOrder:
    """One epoch's frame order: ``video [N]``, ``pos [N]`` (row in the plan's frame list) and buffer bounds
    ``[(start, end), ...]`` into those arrays."""

    video: np.ndarray
    pos: np.ndarray
    buffers: list[tuple[int, int]]


def epoch_order(plan: FramePlan, seed: int, epoch: int, block_frames: int, buffer_blocks: int) -> EpochOrder:
    """The block-shuffled, buffer-shuffled order of every planned frame for ``epoch`` (module docstring)."""
    rng = np.random.default_rng([int(seed), int(epoch)])
    units = []  # (video, rows of plan.frames[video]) per block of consecutive video frames
    for v, f in enumerate(plan.frames):
        if not len(f):
            continue
        block = f // block_frames
        cuts = np.flatnonzero(np.diff(block)) + 1
        units += [(v, rows) for rows in np.split(np.arange(len(f)), cuts)]
    order = rng.permutation(len(units))
    video, pos, buffers, start = [], [], [], 0
    for b in range(0, len(order), buffer_blocks):
        chosen = [units[i] for i in order[b:b + buffer_blocks]]
        vv = np.concatenate([np.full(len(r), v, np.int64) for v, r in chosen])
        pp = np.concatenate([r for _, r in chosen])
        perm = rng.permutation(len(vv))
        video.append(vv[perm])
        pos.append(pp[perm])
        buffers.append((start, start + len(vv)))
        start += len(vv)
    return EpochOrder(np.concatenate(video), np.concatenate(pos), buffers)


def make_augment(augment: dict | None, size: int):
    """A PIL -> PIL training transform from timm's ``create_transform`` (its geometric and colour stages,
    without ToTensor / Normalize: the encoder normalises as it does at extraction), or None for no
    augmentation. The output keeps the crop's size ``size`` (the encoder resizes as in ``extract``)."""
    if not augment:
        return None
    from timm.data import create_transform
    from torchvision import transforms

    primary, secondary, _ = create_transform(
        size, is_training=True, scale=tuple(augment["scale"]), hflip=float(augment["hflip"]),
        color_jitter=float(augment["color_jitter"]) or None, auto_augment=augment["auto_augment"],
        interpolation="bilinear", separate=True)
    return transforms.Compose([*primary.transforms, *secondary.transforms])


def augment_frames(augment, crops: np.ndarray, seed: int, epoch: int, positions: np.ndarray) -> np.ndarray:
    """``augment`` (a PIL transform) on each of ``crops`` (uint8 ``[n, S, S, 3]``), frame ``i`` drawn from the
    Python and torch RNGs seeded with ``(seed, epoch, positions[i])``: the same result for a frame whatever
    the process, worker or restart that handles it. The callers' RNG states are left as they were."""
    from PIL import Image

    state = random.getstate()
    out = np.empty_like(crops)
    try:
        with torch.random.fork_rng(devices=[]):
            for i, (c, g) in enumerate(zip(crops, positions.tolist())):
                s = hash((int(seed), int(epoch), int(g))) & 0xFFFFFFFF
                random.seed(s)
                torch.random.default_generator.manual_seed(s)  # CPU only (torch.manual_seed queues CUDA seeding)
                out[i] = np.asarray(augment(Image.fromarray(c)), np.uint8)
    finally:
        random.setstate(state)
    return out


class CropBuffers(torch.utils.data.Dataset):
    """Loader item ``i`` = buffer ``i`` of an :class:`EpochOrder`: this process's frames of it, as
    ``{"x": uint8 [n, S, S, 3], "y": labels [n, ...], "g": int64 [n] global positions}``.

    Args:
        ws: workspace (``faces.zarr``).
        plan, order: the frames and their order.
        rank, world: this process and the number of processes.
        micro: global micro-batch size ``B_m`` (a multiple of ``world``).
        first, limit: global positions kept: ``first <= g < limit`` (resume start; whole batches only).
        augment: a PIL transform (:func:`make_augment`) or None.
        seed, epoch: seed the augmentation (:func:`augment_frames`).
    """

    def __init__(self, ws: store.Workspace, plan: FramePlan, order: EpochOrder, rank: int, world: int, micro: int,
                 first: int, limit: int, augment=None, seed: int = 0, epoch: int = 0):
        self.ws, self.plan, self.order = ws, plan, order
        self.rank, self.world, self.micro = rank, world, micro
        self.first, self.limit = first, limit
        self.augment, self.seed, self.epoch = augment, seed, epoch
        self._crops: dict[int, object] = {}
        self.items = [i for i, (s, e) in enumerate(order.buffers) if e > first and s < limit]

    def __len__(self) -> int:
        return len(self.items)

    def _array(self, v: int):
        if v not in self._crops:  # opened lazily: a worker process opens its own handles
            self._crops[v] = store.open_store(self.ws.faces, "r")[self.plan.names[v]]["crops"]
        return self._crops[v]

    def __getitem__(self, i: int) -> dict:
        start, end = self.order.buffers[self.items[i]]
        g = np.arange(start, end)
        share = self.micro // self.world
        keep = (g >= self.first) & (g < self.limit) & ((g % self.micro) // share == self.rank)
        g = g[keep]
        vids, rows = self.order.video[start:end][keep], self.order.pos[start:end][keep]
        out = None
        for v in np.unique(vids):
            sel = np.flatnonzero(vids == v)
            f = self.plan.frames[v][rows[sel]]
            block = read_frames(self._array(int(v)), f)  # one contiguous read, the wanted crops decoded
            if out is None:
                out = np.empty((len(g),) + block.shape[1:], np.uint8)
            out[sel] = block
        if out is None:
            return {"x": torch.zeros((0, 1, 1, 3), dtype=torch.uint8), "y": torch.zeros(0), "g": torch.zeros(0, dtype=torch.long)}
        if self.augment is not None:
            out = augment_frames(self.augment, out, self.seed, self.epoch, g)
        y = np.stack([self.plan.labels[v][r] for v, r in zip(vids, rows)]) if len(g) else np.zeros(0)
        return {"x": torch.from_numpy(out), "y": torch.from_numpy(np.asarray(y)), "g": torch.from_numpy(g)}


def local_batches(loader, size: int):
    """Re-cut the loader's buffers into this process's micro-batches of ``size`` frames (in global order)."""
    pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (x, y) pieces not yet in a batch, in order
    n = 0
    for item in loader:
        if not len(item["g"]):
            continue
        pending.append((item["x"], item["y"]))
        n += len(item["g"])
        while n >= size:  # take the first ``size`` rows; copy only those rows (never the whole buffer again)
            take, xs, ys = size, [], []
            while take:
                x, y = pending[0]
                k = min(take, len(x))
                xs.append(x[:k])
                ys.append(y[:k])
                if k == len(x):
                    pending.pop(0)
                else:
                    pending[0] = (x[k:], y[k:])
                take -= k
            n -= size
            yield (xs[0], ys[0]) if len(xs) == 1 else (torch.cat(xs), torch.cat(ys))


def sequential_batches(ws: store.Workspace, plan: FramePlan, size: int):
    """Every planned frame in video order, ``(video index, frame rows, uint8 [n, S, S, 3])`` per batch of at
    most ``size`` frames, read one contiguous span per batch (for choosing the epoch; no augmentation)."""
    root = store.open_store(ws.faces, "r")
    for v, f in enumerate(plan.frames):
        crops = root[plan.names[v]]["crops"]
        for i in range(0, len(f), size):
            part = f[i:i + size]
            yield v, np.arange(i, i + len(part)), read_frames(crops, part)


__all__ = ["CropBuffers", "augment_frames", "EpochOrder", "FramePlan", "epoch_order", "local_batches", "make_augment",
           "plan_frames", "sequential_batches"]
