"""Which clips an epoch visits, and in what order.

A clip of video ``v`` starting at frame ``s`` covers frames ``s … s+K−1``; starts are ``0, stride,
2·stride, …`` up to the first clip that reaches the last frame, which is padded when it runs past the
end (a video shorter than K is one padded clip). Every frame is covered.

When the videos do not fit in the whole-video cache, an epoch is block-shuffled: videos are shuffled,
dealt into blocks of at most ``block`` bytes, and clips are shuffled within a block, so each video is read once
per epoch. The dataset makes a block half the cache, so the next block is read while the current one trains
(:class:`afwpipe.clips.dataset.ReadAhead`). What this costs in randomness: the clips of one batch come from
one block (a random set of videos holding half the cache's bytes; two at a block boundary) instead of from
every video, and the blocks of an epoch are visited one after the other. Which videos share a block changes
every epoch (the video permutation is redrawn), and the order is fixed by the seeded ``rng``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: clip length in frames (Netease Fuxi ABAW5/6 and USTC ABAW8 train on clips of about 100 frames)
DEFAULT_K = 100


def clip_starts(n_frames: int, k: int, stride: int) -> list[int]:
    """First frames of the clips of a ``n_frames`` video: ``0, stride, …`` until a clip reaches the end.

    Raises:
        ValueError: ``k`` or ``stride`` < 1.
    """
    if k < 1 or stride < 1:
        raise ValueError(f"clip_starts: K and stride must be ≥ 1, got K={k}, stride={stride}")
    starts, s = [], 0
    while True:
        starts.append(s)
        if s + k >= n_frames:
            return starts
        s += stride


def clip_table(n_frames: Sequence[int], k: int, stride: int) -> np.ndarray:
    """``[N, 2]`` int64 rows ``(video index, start frame)`` of every clip of videos of ``n_frames`` frames."""
    return np.array([(v, s) for v, t in enumerate(n_frames) for s in clip_starts(t, k, stride)],
                    dtype=np.int64).reshape(-1, 2)


def epoch_order(clips: np.ndarray, video_bytes: Sequence[int], budget: int | None, shuffle: bool = False,
                rng: np.random.Generator | None = None, block: int | None = None) -> np.ndarray:
    """Clip indices (rows of ``clips``) of one epoch: in order, shuffled, or block-shuffled when the videos
    (``video_bytes`` each) do not fit in ``budget`` bytes (None: unbounded), in blocks of at most ``block``
    bytes (default ``budget``; a video larger than ``block`` is a block of its own)."""
    if not shuffle:
        return np.arange(len(clips))
    rng = rng or np.random.default_rng()
    if budget is None or sum(video_bytes) <= budget:
        return rng.permutation(len(clips))
    block = budget if block is None else block
    by_video = [np.flatnonzero(clips[:, 0] == v) for v in range(len(video_bytes))]
    out, current, used = [], [], 0
    for v in rng.permutation(len(video_bytes)):
        if current and used + video_bytes[v] > block:
            out.append(rng.permutation(np.concatenate(current)))
            current, used = [], 0
        current.append(by_video[v])
        used += video_bytes[v]
    if current:
        out.append(rng.permutation(np.concatenate(current)))
    return np.concatenate(out)
