"""Contact sheets: a grid of crops as one PNG, to look at what a step wrote (and which frames are excluded)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from . import atomic, store

#: RGB colours of the tile marks: a frame without a face (filled from the nearest face) and an excluded frame
NO_FACE_RGB = (255, 0, 0)
EXCLUDED_RGB = (255, 200, 0)


def contact_sheet(crops: np.ndarray, present: np.ndarray | None = None, labels: list[str] | None = None,
                  cols: int = 8, tile: int = 112, excluded: np.ndarray | None = None) -> np.ndarray:
    """Tile crops ``uint8 [N, S, S, 3]`` RGB into one ``uint8 [rows*tile, cols*tile, 3]`` RGB image.

    Crops with ``present=False`` get a red border (filled from the nearest face); crops with ``excluded=True``
    (frames invalid for training and evaluation, :mod:`afwpipe.exclusions`) get an amber border inside it and an
    amber cross; ``labels`` (e.g. frame numbers) are drawn in the top-left corner of each tile.
    """
    n = len(crops)
    rows = max(1, -(-n // cols))
    sheet = np.zeros((rows * tile, cols * tile, 3), np.uint8)
    for i, crop in enumerate(crops):
        t = cv2.resize(np.ascontiguousarray(crop), (tile, tile), interpolation=cv2.INTER_AREA)
        if present is not None and not present[i]:
            cv2.rectangle(t, (0, 0), (tile - 1, tile - 1), NO_FACE_RGB, 3)
        if excluded is not None and excluded[i]:
            cv2.rectangle(t, (4, 4), (tile - 5, tile - 5), EXCLUDED_RGB, 3)
            cv2.line(t, (4, 4), (tile - 5, tile - 5), EXCLUDED_RGB, 2)
            cv2.line(t, (4, tile - 5), (tile - 5, 4), EXCLUDED_RGB, 2)
        if labels is not None:
            cv2.putText(t, labels[i], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        r, c = divmod(i, cols)
        sheet[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = t
    return sheet


def video_sheet(ws: store.Workspace, name: str, every: int = 10, cols: int = 8, tile: int = 112) -> np.ndarray:
    """The contact sheet of every ``every``-th frame of index name ``name`` from ``faces.zarr`` (crops,
    ``present``), labelled with the 0-based frame index the manifest's ``exclude.frames`` uses, excluded frames
    (:func:`afwpipe.exclusions.frame_mask`) marked.

    Raises:
        TrainError: no complete faces of ``name`` (run detect), or as :func:`afwpipe.exclusions.frame_mask`.
    """
    from .crop_codec import read_frames
    from .errors import TrainError
    from .exclusions import frame_mask

    if not store.is_complete(ws.faces, name):
        raise TrainError(f"{ws.faces}: no complete faces of {name}; run `afwpipe detect` first")
    group = store.open_store(ws.faces, "r")[name]
    present = np.asarray(group["present"][...], bool)
    frames = np.arange(0, len(present), max(1, int(every)))
    mask = frame_mask(ws, ws.read_index(), name, len(present))
    return contact_sheet(read_frames(group["crops"], frames), present[frames], [str(int(f)) for f in frames],
                         cols=cols, tile=tile, excluded=None if mask is None else mask[frames])


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB image as PNG (creating folders). Raises OSError when the file cannot be written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: could not encode PNG")
    return atomic.write_bytes(path, png.tobytes())
