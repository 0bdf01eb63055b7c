"""The on-disk layout of every derived store (Zarr v3). No other module builds a store path by hand.

Layout of a workspace (one per dataset, e.g. ``work/sample``)::

    index.json                          videos, splits, folds, probe results, failures
    labels.zarr/<name>/{au,expr,va}     au [T,12] int8, expr [T] int8, va [T,2] float32 (-1/-5 invalid)
    faces.zarr/<name>/{boxes,landmarks,score,present,crops,times}
    audio.zarr/<name>/wave              [N] float32, 16 kHz mono; attribute ``present``
    features/<encoder>.zarr/<name>/emb  [T, D] float16, aligned to the video's decoded frames
    transcripts/<asr>.zarr/<name>/{word,start,end,confidence}   [W] words of one ASR (transcribe)
    descriptions/<vlm>.zarr/<name>/{text,start,end}   [S] behaviour descriptions of one VLM per segment (describe)
    finetune/<encoder>-<task>[-<fold>]/{model.safetensors,head.safetensors,record.json}   a fine-tuned encoder
    models/<task>-<head>-<fold>[-<scene>]/{model.pt,metrics.json}
    predictions/<model>.zarr/<name>/{au,expr,va,present}   raw per-frame outputs of one head (predict)
    post/<track>-<fold|ensemble>.npz    <name>/{prob,before,after} post-processed decisions (postprocess)
    eval/                               metrics.json, per-class CSV, confusion rows, report.png (evaluate)
    submission/                         ABAW files, one per track (submit)

``<name>`` is the annotation name (``X_left`` / ``X_right`` are separate groups of video ``X``).

Chunking (docs/stores.md, "Chunking and shards"): inner chunks hold at least 1 MiB along time (per-call overhead of a
small read is ~3.5 ms), shards hold a whole video's array up to ``MAX_SHARD_BYTES`` (few files for
DVC, fast whole-array reads). zarr-python 3 needs the shard shape to be a multiple of the chunk shape,
so shards are rounded up to whole chunks.

Codecs: floating-point arrays (features, boxes, audio) are stored uncompressed: float16 embeddings
compress to only ~0.92 of their size with zstd, and decoding cost 1.7x the read time (whole-video
reads of a [1200, 768] float16 array, zarr 3.1: 234 MB/s with zstd vs 398 MB/s without). Integer
and boolean arrays (labels; masks) keep zarr's default zstd. Face crops are stored per ``detect.crop_codec``
(:mod:`afwpipe.crop_codec`: JPEG files by default, ~0.1 of the raw bytes; zstd ~0.5, lz4).

Completeness: a video group is done only when its ``complete`` attribute is True, written last
(``mark_complete``). ``begin_video`` removes a half-written group before a video is redone, so a
killed run never leaves anything that looks complete. Concurrent writers must write different videos.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from . import __version__
from .records import IndexFile, load_index

MIN_CHUNK_BYTES = 1 << 20
MAX_SHARD_BYTES = 16 << 20
COMPLETE = "complete"
#: Version of the layout of a video group (array names, chunking, shards, codecs). Bump it with any change
#: that writes a video differently: a group of another layout is not complete, so detect and extract redo it
#: (their DVC outputs persist between runs, so without this a rerun would keep old-layout videos).
#: 1: first layout (64 MiB shards, zstd floats); 2: 16 MiB shards, uncompressed floats, rows split evenly;
#: 3: ``audio.zarr`` waves on the frames' container clock (sample 0 at the first decoded frame's time; before,
#: the audio stream's first sample), so audio features and transcripts of layout 2 are redone too.
LAYOUT = 3
#: the fold name of the fold ensemble's systems (``post/<track>-ensemble.npz``)
ENSEMBLE = "ensemble"


def safe_name(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9_.-]`` replaced by ``_`` (a file name)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


@dataclass(frozen=True)
class Workspace:
    """Paths of one dataset's derived data under ``root`` (e.g. ``work/sample``)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def index(self) -> Path:
        return self.root / "index.json"

    @property
    def labels(self) -> Path:
        return self.root / "labels.zarr"

    @property
    def faces(self) -> Path:
        return self.root / "faces.zarr"

    @property
    def audio(self) -> Path:
        return self.root / "audio.zarr"

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def feature_set(self) -> Path:
        """``feature_set.json``: digests of the feature stores training reads (afwpipe.feature_set); the
        train and predict stages depend on it instead of on ``features/``."""
        return self.root / "feature_set.json"

    @property
    def models(self) -> Path:
        """``models/``: one folder per trained head, ``<task>-<head>-<fold>[-<scene>]``."""
        return self.root / "models"

    @property
    def predictions_dir(self) -> Path:
        """``predictions/``: one store per trained head (``predictions/<model>.zarr``) and ``index.json``."""
        return self.root / "predictions"

    @property
    def predictions_index(self) -> Path:
        """``predictions/index.json``: the heads that predicted and their videos."""
        return self.predictions_dir / "index.json"

    def predictions(self, model: str) -> Path:
        """``predictions/<model>.zarr``: raw per-frame outputs of head ``<task>-<head>-<fold>[-<scene>]``."""
        return self.predictions_dir / f"{model}.zarr"

    @property
    def post_dir(self) -> Path:
        """``post/``: post-processed predictions, one ``.npz`` per system (``post/<track>-<fold>.npz``)."""
        return self.root / "post"

    @property
    def post_systems(self) -> Path:
        """``post/systems.json``: per system its videos, evaluation videos, AU thresholds and heads used."""
        return self.post_dir / "systems.json"

    def post(self, system: str) -> Path:
        """``post/<system>.npz``, e.g. ``post/au-official.npz`` or ``post/va-ensemble.npz``: arrays
        ``<video>/prob``, ``<video>/before``, ``<video>/after``."""
        return self.post_dir / f"{system}.npz"

    @property
    def eval_dir(self) -> Path:
        """``eval/``: ``metrics.json``, per-class CSV files, the EXPR confusion rows and ``report.png``."""
        return self.root / "eval"

    @property
    def submission_dir(self) -> Path:
        """``submission/``: ABAW5/6-style files, one per track."""
        return self.root / "submission"

    @property
    def finetune_dir(self) -> Path:
        """``finetune/``: one folder per fine-tuned visual encoder (:mod:`afwpipe.finetune`)."""
        return self.root / "finetune"

    def finetune(self, run: str) -> Path:
        """``finetune/<run>/`` (``run`` = ``<encoder>-<task>[-<fold>]``, made safe as in :meth:`features`)."""
        return self.finetune_dir / safe_name(run)

    def features(self, encoder: str) -> Path:
        """``features/<encoder>.zarr``; characters outside ``[A-Za-z0-9_.-]`` (e.g. ``timm:x``) become ``_``."""
        return self.features_dir / (safe_name(encoder) + ".zarr")

    @property
    def transcripts_dir(self) -> Path:
        """``transcripts/``: one store per speech recogniser."""
        return self.root / "transcripts"

    def transcripts(self, asr: str) -> Path:
        """``transcripts/<asr>.zarr`` (``asr`` made safe as in :meth:`features`): the words of each video."""
        return self.transcripts_dir / (safe_name(asr) + ".zarr")

    @property
    def descriptions_dir(self) -> Path:
        """``descriptions/``: one store per vision-language model (``afwpipe describe``)."""
        return self.root / "descriptions"

    def descriptions(self, vlm: str) -> Path:
        """``descriptions/<vlm>.zarr`` (``vlm`` made safe as in :meth:`features`, e.g. ``hf_Qwen_Qwen2.5-VL-3B-Instruct``):
        the behaviour descriptions of each video's segments."""
        return self.descriptions_dir / (safe_name(vlm) + ".zarr")

    def read_index(self) -> IndexFile:
        """Load ``index.json`` (:func:`afwpipe.records.load_index`).

        Raises:
            FileNotFoundError: no index (the message says to run ``afwpipe index``).
            RecordError: a malformed index (names the file, record and field).
        """
        return load_index(self.index)


def chunk_rows(row_shape: tuple[int, ...], dtype, n_rows: int, min_bytes: int = MIN_CHUNK_BYTES) -> int:
    """Rows per inner chunk: at least ``min_bytes`` per chunk, with ``n_rows`` split as evenly as possible.

    The whole array when it holds less than ``min_bytes``. Otherwise ``n_rows`` is cut into
    ``n_rows // min_rows`` equal chunks, so the last chunk is nearly full: an uncompressed partial
    chunk is stored at full size.
    """
    row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
    min_rows = math.ceil(min_bytes / row_bytes)
    if n_rows <= min_rows:
        return max(1, n_rows)
    return math.ceil(n_rows / (n_rows // min_rows))


def shard_rows(row_shape: tuple[int, ...], dtype, n_rows: int, chunk: int,
               max_bytes: int = MAX_SHARD_BYTES) -> int:
    """Rows per shard: the whole array rounded up to whole chunks, capped near ``max_bytes``."""
    row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
    cap = max(chunk, (max_bytes // row_bytes) // chunk * chunk)
    whole = math.ceil(max(1, n_rows) / chunk) * chunk
    return min(whole, cap)


def create_time_array(group: zarr.Group, name: str, shape: tuple[int, ...], dtype, fill_value=0,
                      attrs: dict | None = None, dims: tuple[str, ...] | None = None,
                      compressor=None) -> zarr.Array:
    """Create (overwrite) a time-major array with the chunking policy of this module.

    ``dims`` are the Zarr v3 dimension names (what ``xarray.open_zarr`` reads); default
    ``("frame", "<name>_1", ...)``. ``compressor``: a Zarr v3 bytes-to-bytes codec for the chunks (e.g.
    ``zarr.codecs.BloscCodec``; the crop codecs of :mod:`afwpipe.crop_codec`); None: this module's policy
    (floats uncompressed, the rest zarr's default zstd).
    """
    n, row = shape[0], tuple(shape[1:])
    chunk = chunk_rows(row, dtype, n)
    shard = shard_rows(row, dtype, n, chunk)
    return group.create_array(
        name, shape=shape, dtype=dtype, chunks=(chunk,) + row, shards=(shard,) + row,
        compressors=compressor if compressor is not None else
        None if np.issubdtype(np.dtype(dtype), np.floating) else "auto",
        fill_value=fill_value, overwrite=True, attributes=attrs or {},
        dimension_names=dims or ("frame",) + tuple(f"{name}_{i}" for i in range(1, len(shape))),
    )


def write_time_array(group: zarr.Group, name: str, data: np.ndarray, attrs: dict | None = None,
                     dims: tuple[str, ...] | None = None) -> zarr.Array:
    """Create array ``name`` in ``group`` and write ``data`` (whole) into it."""
    arr = create_time_array(group, name, data.shape, data.dtype, attrs=attrs, dims=dims)
    if data.shape[0]:
        arr[...] = data
    return arr


class TimeWriter:
    """Append blocks of rows to a time-major array, writing whole shards at a time.

    Writing partial shards would rewrite the shard on every block; buffering to shard boundaries keeps
    writes linear and memory bounded by one shard (``MAX_SHARD_BYTES``).
    """

    def __init__(self, array: zarr.Array):
        self.array = array
        self.shard = array.shards[0] if array.shards else array.chunks[0]
        self.pos = 0
        self._buf: list[np.ndarray] = []
        self._buffered = 0

    def append(self, block: np.ndarray) -> None:
        """Append ``block`` (``[n, *row]``) after the rows written so far."""
        self._buf.append(np.asarray(block))
        self._buffered += len(block)
        if self.pos + self._buffered >= (self.pos // self.shard + 1) * self.shard:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._buffered:
            return
        data = np.concatenate(self._buf) if len(self._buf) > 1 else self._buf[0]
        end = self.pos + len(data)
        cut = end if final else (end // self.shard) * self.shard
        if cut > self.pos:
            self.array[self.pos:cut] = data[: cut - self.pos]
        rest = data[cut - self.pos:]
        self.pos = cut
        self._buf = [rest] if len(rest) else []
        self._buffered = len(rest)

    def close(self) -> int:
        """Write what is buffered; return the number of rows written."""
        self._flush(final=True)
        return self.pos


def open_store(path: Path, mode: str = "a") -> zarr.Group:
    """Open (creating with ``mode="a"``) the root group of a store."""
    if mode == "r" and not Path(path).exists():
        raise FileNotFoundError(f"{path}: store does not exist")
    return zarr.open_group(str(path), mode=mode)


def is_complete(path: Path, name: str) -> bool:
    """True when ``<path>/<name>`` exists, its ``complete`` attribute is True and it was written in the
    current :data:`LAYOUT`."""
    group_json = Path(path) / name / "zarr.json"
    if not group_json.is_file():
        return False
    attrs = json.loads(group_json.read_text()).get("attributes", {})
    return attrs.get(COMPLETE) is True and attrs.get("layout") == LAYOUT


def is_complete_with(path: Path, name: str, **attrs) -> bool:
    """:func:`is_complete` and every attribute in ``attrs`` equal to the group's (e.g. the model identity that
    wrote it), so a rerun with another model redoes the video."""
    if not is_complete(path, name):
        return False
    stored = open_store(path, "r")[name].attrs
    return all(stored.get(k) == v for k, v in attrs.items())


def complete_names(path: Path) -> list[str]:
    """Names of the complete video groups of a store (sorted)."""
    path = Path(path)
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if p.is_dir() and is_complete(path, p.name))


def begin_video(path: Path, name: str, attrs: dict | None = None) -> zarr.Group:
    """Start (or restart) writing video ``name``: remove any half-written group, create a fresh one.

    The group gets provenance attributes (``afwpipe_version`` and ``attrs``) and ``complete=False``.
    """
    root = open_store(path, "a")
    gdir = Path(path) / name
    if gdir.exists():
        shutil.rmtree(gdir)
    g = root.create_group(name, overwrite=True)
    g.update_attributes({COMPLETE: False, "afwpipe_version": __version__, **(attrs or {})})  # one metadata write
    return g


def mark_complete(group: zarr.Group, **attrs) -> None:
    """Write final attributes and the :data:`LAYOUT`, then ``complete=True`` (last, so a killed run never
    looks complete). Each call is one write of the group's ``zarr.json`` (``attrs.update`` rewrites it once per
    key: ~4 ms each, which made a one-frame item's store writes cost more than its decode)."""
    group.update_attributes({**attrs, "layout": LAYOUT})
    group.update_attributes({COMPLETE: True})


def write_columns(group: zarr.Group, columns: dict[str, np.ndarray], dim: str) -> None:
    """Write equal-length 1-D ``columns`` into ``group`` as one-chunk arrays along Zarr dimension ``dim``
    (``xarray.open_zarr`` reads them as one dataset). An object array of ``str`` becomes a Zarr v3 variable-length
    UTF-8 ``string`` array; other arrays keep their dtype. Zero rows give empty arrays.

    Raises:
        ValueError: the columns are not 1-D or differ in length.
    """
    lengths = {k: np.shape(v) for k, v in columns.items()}
    if len({s for s in lengths.values()}) > 1 or any(len(s) != 1 for s in lengths.values()):
        raise ValueError(f"columns of equal 1-D length expected; got {lengths}")
    for key, data in columns.items():
        n = len(data)
        dtype = str if data.dtype == object else data.dtype
        arr = group.create_array(key, shape=(n,), dtype=dtype, chunks=(max(n, 1),), overwrite=True,
                                 dimension_names=(dim,))
        if n:
            arr[...] = data


def read_columns(path: Path, name: str, keys: tuple[str, ...]) -> list[np.ndarray]:
    """The whole 1-D arrays ``keys`` of group ``<path>/<name>`` (as :func:`write_columns` wrote them)."""
    g = open_store(path, "r")[name]
    return [g[k][...] for k in keys]


def read_array(path: Path, name: str, array: str) -> np.ndarray:
    """Read one whole array ``<path>/<name>/<array>`` into memory."""
    return open_store(path, "r")[f"{name}/{array}"][...]
