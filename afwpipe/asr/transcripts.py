"""The transcript store: ``transcripts/<asr>.zarr/<name>/`` holds one video's words as four arrays along
dimension ``word`` (so ``xarray.open_zarr(..., group=name)`` gives a dataset indexed by the word text):

| array | shape | dtype | notes |
|---|---|---|---|
| ``word`` | ``[W]`` | variable-length UTF-8 string (Zarr v3 ``string``) | the word as recognised |
| ``start``, ``end`` | ``[W]`` | float64 | seconds from the start of the audio (= first frame) |
| ``confidence`` | ``[W]`` | float32 | in [0, 1], the recogniser's own |

Words are sorted by start. Attributes: ``asr``, ``asr_config`` (identity), ``weights``, ``audio``
(whether the video had an audio track; without one the arrays are empty), ``n_words`` and
``complete`` last (``afwpipe.store``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from .. import store
from ..errors import ASRError
from .base import Word


def write_words(group: zarr.Group, words: list[Word]) -> None:
    """Write ``words`` into ``group`` as the arrays of the module docstring (empty arrays for no words)."""
    store.write_columns(group, {"word": np.array([w.word for w in words], dtype=object),
                                "start": np.array([w.start for w in words], np.float64),
                                "end": np.array([w.end for w in words], np.float64),
                                "confidence": np.array([w.confidence for w in words], np.float32)}, dim="word")


def read_words(path: Path, name: str) -> list[Word]:
    """The words of video ``name`` in transcript store ``path``.

    Raises:
        ASRError: the store has no complete transcript of ``name`` (run ``afwpipe transcribe`` first).
    """
    if not store.is_complete(path, name):
        raise ASRError(f"{path}/{name}: no complete transcript; run `afwpipe transcribe` first")
    cols = store.read_columns(path, name, ("word", "start", "end", "confidence"))
    return [Word(str(w), float(s), float(e), float(c)) for w, s, e, c in zip(*cols)]
