"""How ``faces.zarr/<name>/crops`` stores the aligned face crops (params ``detect.crop_codec``).

Two kinds of array, both plain Zarr v3 that ``zarr.open_group``, ``xarray.open_zarr`` and
``dask.array.from_zarr`` open without afwpipe:

* ``zstd`` / ``lz4`` (lossless): ``crops [T, S, S, 3] uint8`` RGB, chunks compressed by Zarr's built-in
  ``zstd`` codec (level 0) or ``blosc`` (``lz4``, no shuffle). Reading gives the pixels.
* ``jpeg<Q>`` (lossy, ``Q`` = JPEG quality 1-100, e.g. ``jpeg90``): ``crops [T]`` variable-length bytes,
  element ``t`` one baseline JPEG file (RGB, 4:2:0 chroma; libjpeg-turbo through ``imagecodecs``) of
  the ``S x S`` crop; the array's attributes say so (``image_format: jpeg``, ``quality``, ``size``).
  Any JPEG decoder reads an element (``PIL.Image.open(io.BytesIO(b))``, ``cv2.imdecode``,
  ``imagecodecs.jpeg_decode``); take elements as ``arr[t:t + 1][0]`` or ``arr[a:b]`` (zarr-python 3.1 gives
  ``arr[t]`` as nested 0-d arrays). On a GPU ``torchcodec.decoders.decode_jpeg(blobs, device="cuda")``
  decodes a batch with nvJPEG, so no CPU decodes the crops (:func:`decode`).

Why JPEG rather than an image codec inside a uint8 array: zarr-python 3 reads a numcodecs codec only
through its own fixed list of wrappers (``zarr.codecs.numcodecs``: blosc, lz4, zstd, ...;
``numcodecs.zarr3`` is a deprecated alias of it); ``imagecodecs.numcodecs`` registers its JPEG / JPEG XL /
AVIF codecs with numcodecs only, so a Zarr v3 array using them opens nowhere without a codec class of our
own. Whole JPEG files per element open everywhere and feed nvJPEG as they are.
Measured on the sample's real crops (docs/stores.md, "Crop codecs"; ``benchmarks/crop_codecs.py``).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import imagecodecs
import numpy as np
import torch
import zarr

from . import store
from .errors import ConfigError

#: the default of ``detect.crop_codec`` (DetectConfig): ~11 KB per 224x224 crop on the sample (80-105 KB with
#: zstd), features within cosine 0.99 of the raw crops' (docs/stores.md, "Crop codecs")
DEFAULT = "jpeg90"
LOSSLESS = ("zstd", "lz4")
#: crops per inner chunk of a JPEG crop array (~0.7 MiB at ~11 KB per crop; store.MIN_CHUNK_BYTES is 1 MiB)
JPEG_CHUNK = 64
#: crops per shard of a JPEG crop array (~11 MiB at ~11 KB per crop, under store.MAX_SHARD_BYTES)
JPEG_SHARD = 1024
_JPEG = re.compile(r"jpeg(\d{1,3})")


@dataclass(frozen=True)
class CropCodec:
    """One crop codec: ``name`` (``zstd``, ``lz4``, ``jpeg<Q>``) and, for JPEG, ``quality`` (1-100)."""

    name: str
    quality: int | None = None

    @property
    def is_jpeg(self) -> bool:
        return self.quality is not None

    def create(self, group: zarr.Group, n: int, size: int, name: str = "crops") -> zarr.Array:
        """Create (overwrite) array ``name`` for ``n`` frames of ``size x size`` RGB crops in ``group``: ``uint8
        [n, size, size, 3]`` (``zstd``: zarr's default zstd; ``lz4``: blosc lz4, level 5, no shuffle, which is a
        no-op on bytes) with :mod:`afwpipe.store`'s chunking, or, for JPEG, variable-length bytes ``[n]``
        (:data:`JPEG_CHUNK` per inner chunk, up to :data:`JPEG_SHARD` per shard, no compressor: JPEG files do
        not shrink further). Attributes: ``codec``; for JPEG also ``image_format``, ``quality``, ``size``."""
        if not self.is_jpeg:
            compressor = "auto" if self.name == "zstd" else \
                zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle", typesize=1)
            return store.create_time_array(group, name, (n, size, size, 3), np.uint8,
                                           attrs={"codec": self.name}, compressor=compressor)
        shard = max(1, min(JPEG_SHARD, -(-max(n, 1) // JPEG_CHUNK) * JPEG_CHUNK))
        with warnings.catch_warnings():  # VariableLengthBytes: read by zarr-python 3 and its xarray / dask
            warnings.filterwarnings("ignore", message=".*VariableLengthBytes.*")  # (zarr-extensions: vlen-bytes)
            return group.create_array(
                name, shape=(n,), dtype=zarr.dtype.VariableLengthBytes(), chunks=(min(JPEG_CHUNK, shard),),
                shards=(shard,), compressors=None, fill_value=b"", overwrite=True, dimension_names=("frame",),
                attributes={"codec": self.name, "image_format": "jpeg", "quality": self.quality, "size": size,
                            "pixels": "RGB uint8 [size, size, 3] per element (a JPEG file)"})

    def encode(self, crops: np.ndarray) -> np.ndarray:
        """``crops uint8 [B, S, S, 3]`` RGB -> what the array stores: the crops themselves (lossless) or
        ``object [B]`` of JPEG ``bytes``.

        Raises:
            ValueError: ``crops`` is not uint8 ``[B, S, S, 3]``.
        """
        crops = np.asarray(crops)
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"crops must be uint8 [B,S,S,3] RGB, got {crops.dtype} {crops.shape}")
        if not self.is_jpeg:
            return crops
        out = np.empty(len(crops), object)
        out[:] = [imagecodecs.jpeg_encode(np.ascontiguousarray(c), level=self.quality) for c in crops]  # broadcast fills
        return out


def parse_crop_codec(name: str) -> CropCodec:
    """The codec named ``name``: ``zstd``, ``lz4`` or ``jpeg<Q>`` with ``Q`` in 1..100.

    Raises:
        ConfigError: any other value (the message names it and the accepted forms).
    """
    text = str(name).strip().lower()
    if text in LOSSLESS:
        return CropCodec(text)
    m = _JPEG.fullmatch(text)
    if m and 1 <= int(m.group(1)) <= 100:
        return CropCodec(f"jpeg{int(m.group(1))}", int(m.group(1)))
    raise ConfigError(f"params detect.crop_codec: {name!r} is not a crop codec; use zstd, lz4 or jpeg<Q> "
                      f"with JPEG quality Q in 1..100 (e.g. {DEFAULT})")


def is_jpeg_array(crops: zarr.Array) -> bool:
    """True when ``crops`` holds one JPEG file per frame (``[T]`` bytes), False for ``[T, S, S, 3]`` uint8."""
    return crops.ndim == 1


def decode(blobs, device: str | torch.device = "cpu") -> torch.Tensor | np.ndarray:
    """JPEG files -> crops ``uint8 [B, S, S, 3]`` RGB.

    ``device`` ``cpu``: a numpy array, decoded by libjpeg-turbo (``imagecodecs.jpeg_decode``; ~2,400 crops of
    224x224 per CPU-second here, under load). A CUDA device: a torch tensor on that device, the batch decoded
    there by nvJPEG (``torchcodec.decoders.decode_jpeg(..., device=...)``; torchvision's ``decode_jpeg`` is
    deprecated since 0.29 in its favour), the CPU only handing over the compressed bytes.

    Raises:
        ValueError: an element is not a JPEG file or the crops differ in size.
        ImportError: a CUDA device without torchcodec installed (the message says so).
    """
    blobs = list(blobs)
    dev = torch.device(device)
    try:
        if dev.type == "cpu":
            return np.stack([imagecodecs.jpeg_decode(b) for b in blobs]) if blobs else np.zeros((0, 0, 0, 3), np.uint8)
        return decode_on_device(blobs, str(dev))
    except (imagecodecs.JpegError, RuntimeError, ValueError) as e:
        raise ValueError(f"crop JPEG decode failed: {e}") from e


def decode_on_device(blobs: list, device: str) -> torch.Tensor:
    """JPEG files -> ``uint8 [B, S, S, 3]`` RGB torch tensor on ``device``, decoded by torchcodec there (nvJPEG
    on a CUDA device; libjpeg-turbo on ``cpu``, which is how the tests check this path on a machine without a
    GPU). :func:`decode` uses it for CUDA devices.

    Raises:
        ImportError: torchcodec is not installed, or cannot load FFmpeg's shared libraries (the message says
            which).
        RuntimeError: torchcodec cannot decode an element.
    """
    try:
        from torchcodec.decoders import decode_jpeg
    except ImportError as e:
        raise ImportError(f"decoding JPEG crops on {device} needs torchcodec (pip install torchcodec): {e}") from e
    except (OSError, RuntimeError) as e:  # libtorchcodec loads FFmpeg's shared libraries on import
        raise ImportError(f"decoding JPEG crops on {device}: torchcodec cannot load FFmpeg's shared libraries "
                          f"(FFmpeg 4 to 8; e.g. apt-get install ffmpeg): {e}") from e
    return torch.stack(decode_jpeg(blobs, mode="RGB", device=device)).permute(0, 2, 3, 1)


def crop_size(crops: zarr.Array) -> int:
    """Side S in pixels of the crops of a crop array of either kind."""
    return int(crops.attrs["size"]) if is_jpeg_array(crops) else int(crops.shape[1])


def read_frames(crops: zarr.Array, frames: np.ndarray) -> np.ndarray:
    """Crops of the sorted or unsorted frame indices ``frames`` as ``uint8 [len(frames), S, S, 3]`` (numpy):
    one contiguous read of ``[min, max]``, then only the wanted frames decoded (JPEG crops)."""
    frames = np.asarray(frames, np.int64)
    if len(frames) == 0:
        size = crop_size(crops)
        return np.zeros((0, size, size, 3), np.uint8)
    lo, hi = int(frames.min()), int(frames.max()) + 1
    block = crops[lo:hi][frames - lo]
    if not is_jpeg_array(crops):
        return block
    try:
        return decode(block)
    except ValueError as e:
        raise ValueError(f"{crops.store_path}: frames {lo}-{hi}: {e}") from e


def block_rows(crops: zarr.Array, batch_size: int) -> int:
    """Frames per read of the extract stage: at least ``batch_size``; a whole shard of uint8 crops (at most
    ``store.MAX_SHARD_BYTES``), or whole inner chunks of JPEG crops holding about ``store.MAX_SHARD_BYTES``
    once decoded (a JPEG shard of 1,024 crops decodes to ~150 MiB; a block in the queue, one being encoded
    and one being read stay near 50 MiB)."""
    if not is_jpeg_array(crops):
        return max(batch_size, crops.shards[0] if crops.shards else crops.chunks[0])
    size = crop_size(crops)
    chunk = crops.chunks[0]
    rows = max(1, store.MAX_SHARD_BYTES // (size * size * 3))
    return max(batch_size, -(-rows // chunk) * chunk)


def read_crops(crops: zarr.Array, start: int = 0, stop: int | None = None,
               device: str | torch.device = "cpu") -> np.ndarray | torch.Tensor:
    """Frames ``[start, stop)`` of a crop array of either kind as ``uint8 [n, S, S, 3]`` RGB (:func:`decode`
    for JPEG crops, a torch tensor on ``device`` when that is a CUDA device; numpy otherwise).

    Raises:
        ValueError: a stored JPEG element cannot be decoded (names the frame range).
    """
    stop = crops.shape[0] if stop is None else stop
    if not is_jpeg_array(crops):
        return crops[start:stop]
    try:
        return decode(crops[start:stop], device)
    except ValueError as e:
        raise ValueError(f"{crops.store_path}: frames {start}-{stop}: {e}") from e
