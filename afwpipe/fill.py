"""Nearest-face fill of the crops of frames without a face, done on the stream before the writer.

The face stage writes crops shard by shard (``store.TimeWriter``). A frame without a face takes the crop of
the nearest frame with one (ties to the earlier; ``afwpipe.detect.fill_runs`` is the same rule on a whole
``present`` mask). :class:`NearestFill` applies that rule while the crops stream past, holding back only the
frames whose source is not known yet, so no written shard is ever rewritten.

Memory: after the first face, a faceless run holds no pixels (only a count; its first half is released at
once from the face before it). Before the first face the placeholder crops are held (a video with no face
at all keeps them) up to ``hold`` frames; beyond that only their count is kept and :meth:`NearestFill.finish`
returns False when the video ends without a face, so the caller writes the placeholders again from the video.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class NearestFill:
    """Stream crops to ``write`` in frame order with faceless frames filled from the nearest face.

    Args:
        write: called with ``uint8 [n, S, S, 3]`` blocks, in frame order, each frame exactly once.
        hold: most placeholder crops held before the first face (frames); above it only their count.
    """

    def __init__(self, write: Callable[[np.ndarray], None], hold: int):
        self.write, self.hold = write, int(hold)
        self.last: np.ndarray | None = None  # crop of the latest frame with a face
        self.released = 0  # frames of the open faceless run already written (from ``last``)
        self.waiting = 0  # frames of the open faceless run not written yet
        self.lead: list[np.ndarray] = []  # placeholders before the first face (while <= hold)
        self.dropped = False  # the placeholders before the first face outgrew ``hold``

    def push(self, crops: np.ndarray, present: np.ndarray) -> None:
        """Add the next frames: ``crops uint8 [n, S, S, 3]`` (placeholders where ``present [n] bool`` is False)."""
        present = np.asarray(present, bool)
        if len(present) != len(crops):
            raise ValueError(f"{len(crops)} crops but {len(present)} present flags")
        out: list[np.ndarray] = []
        edges = np.flatnonzero(np.diff(present.astype(np.int8))) + 1
        for a, b in zip(np.r_[0, edges], np.r_[edges, len(present)]):
            if a < b:
                (self._faces if present[a] else self._absent)(crops[a:b], out)
        self._emit(out)

    def finish(self) -> bool:
        """Write what is held. Returns False when no frame had a face and placeholders were dropped (the
        caller must then write all ``n`` placeholders itself); True otherwise."""
        out: list[np.ndarray] = []
        if self.last is not None:
            self._repeat(self.last, self.waiting, out)
        elif not self.dropped:
            out += self.lead
        self._emit(out)
        self.waiting, self.lead = 0, []
        return self.last is not None or not self.dropped

    def _repeat(self, crop: np.ndarray, k: int, out: list) -> None:
        if k > 0:
            out.append(np.broadcast_to(crop, (k,) + crop.shape))

    def _absent(self, crops: np.ndarray, out: list) -> None:
        if self.last is None:
            if not self.dropped:
                self.lead.append(crops)
                if sum(len(c) for c in self.lead) > self.hold:
                    self.lead, self.dropped = [], True
            self.waiting += len(crops)
            return
        run = self.released + self.waiting + len(crops)
        left = (run + 1) // 2  # frames of the run at least as close to the face before it, whatever follows
        self._repeat(self.last, left - self.released, out)
        self.released, self.waiting = left, run - left

    def _faces(self, crops: np.ndarray, out: list) -> None:
        if self.last is None:
            self._repeat(crops[0], self.waiting, out)
        else:
            run = self.released + self.waiting
            left = (run + 1) // 2
            self._repeat(self.last, left - self.released, out)
            self._repeat(crops[0], run - left, out)
        out.append(crops)
        self.last, self.released, self.waiting, self.lead = crops[-1].copy(), 0, 0, []

    def _emit(self, out: list) -> None:
        if out:
            self.write(np.concatenate(out) if len(out) > 1 else np.ascontiguousarray(out[0]))
