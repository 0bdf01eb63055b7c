"""The descriptions store: ``descriptions/<vlm>.zarr/<name>/`` holds one video's behaviour descriptions, one per
segment of ``describe.segment_s`` seconds, as three arrays along dimension ``segment`` (the transcripts store's
shape, written by the same :func:`afwpipe.store.write_columns`):

| array | shape | dtype | notes |
|---|---|---|---|
| ``text`` | ``[S]`` | variable-length UTF-8 string (Zarr v3 ``string``) | the model's answer; ``""`` when the segment had no face (``input: crops``) |
| ``start``, ``end`` | ``[S]`` | float64 | seconds from the first decoded frame (faces.zarr ``times``), ``[start, end)`` |

Segments are in time order and tile the video: ``start[0] = 0``, ``start[k+1] = end[k]``, the last one ends where
the last frame ends. Attributes: ``vlm``, ``describe_config`` (identity: model, weights, prompt, input, segment
length, frames per segment, token bound), ``frames`` (the frame indices shown per segment, a list of lists),
``n_segments`` and ``complete`` last (``afwpipe.store``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from . import store
from .errors import DescribeError


@dataclass(frozen=True)
class Description:
    """One segment's description: ``text`` for ``[start, end)`` seconds."""

    text: str
    start: float
    end: float


def write_descriptions(group: zarr.Group, descriptions: list[Description]) -> None:
    """Write ``descriptions`` into ``group`` as the arrays of the module docstring."""
    store.write_columns(group, {"text": np.array([d.text for d in descriptions], dtype=object),
                                "start": np.array([d.start for d in descriptions], np.float64),
                                "end": np.array([d.end for d in descriptions], np.float64)}, dim="segment")


def read_descriptions(path: Path, name: str) -> list[Description]:
    """The descriptions of video ``name`` in descriptions store ``path``.

    Raises:
        DescribeError: the store has no complete descriptions of ``name`` (run ``afwpipe describe`` first).
    """
    if not store.is_complete(path, name):
        raise DescribeError(f"{path}/{name}: no complete descriptions; run `afwpipe describe` first")
    cols = store.read_columns(path, name, ("text", "start", "end"))
    return [Description(str(t), float(s), float(e)) for t, s, e in zip(*cols)]
