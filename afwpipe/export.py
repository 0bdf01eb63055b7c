"""Export a feature store to HDF5 for teams with older loaders (h5py).

Two layouts:
- ``frames`` (SituTech-style, ABAW5/6): one dataset per frame, ``/<video>/<00001>`` -> ``[D]``, frame
  numbers 1-based as the ``cropped_aligned`` image names; frames without a face are written too
  (their features come from the nearest face) and the ``present`` flag is an attribute.
- ``video``: one dataset per video, ``/<video>`` -> ``[T, D]``, with ``/<video>_present`` -> ``[T]``.
File attributes carry the encoder config (JSON) of the store.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from . import atomic, store
from .errors import AfwpipeError

LAYOUTS = ("frames", "video")


def export_h5(ws: store.Workspace, encoder: str, out: Path, layout: str = "video", progress: bool = True) -> int:
    """Write ``features/<encoder>.zarr`` (complete videos only) to HDF5 file ``out``; return videos written.

    Raises:
        AfwpipeError: no store for ``encoder`` (the message lists the stores that exist), no complete
            video in it, or an unknown layout.
    """
    if layout not in LAYOUTS:
        raise AfwpipeError(f"unknown HDF5 layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    path = ws.features(encoder)
    names = store.complete_names(path)
    if not names:
        have = sorted(p.stem for p in ws.features_dir.glob("*.zarr")) if ws.features_dir.is_dir() else []
        raise AfwpipeError(f"{path}: no complete features for encoder {encoder!r}; stores here: "
                           f"{', '.join(have) or 'none'} (run `afwpipe extract --encoder {encoder}`)")
    root = store.open_store(path, "r")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(out) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["encoder"] = encoder
        f.attrs["encoder_config"] = json.dumps(root[names[0]].attrs.get("encoder_config", {}))
        f.attrs["layout"] = layout
        for name in tqdm(names, desc=f"export {encoder}", unit="video", disable=not progress):
            emb = root[name]["emb"][...]
            present = root[name]["present"][...]
            if layout == "video":
                f.create_dataset(name, data=emb)
                f.create_dataset(f"{name}_present", data=present)
            else:
                g = f.create_group(name)
                for i in range(len(emb)):
                    d = g.create_dataset(f"{i + 1:05d}", data=emb[i])
                    d.attrs["present"] = bool(present[i])
    return len(names)


def read_h5_video(path: Path, name: str) -> np.ndarray:
    """Read one video's ``[T, D]`` features back from either layout (for tests and loaders)."""
    with h5py.File(path, "r") as f:
        obj = f[name]
        if isinstance(obj, h5py.Dataset):
            return obj[...]
        return np.stack([obj[k][...] for k in sorted(obj.keys())])
