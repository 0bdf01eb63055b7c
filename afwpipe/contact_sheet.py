"""Contact sheets: a grid of crops as one PNG, to look at what a step wrote."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from . import atomic


def contact_sheet(crops: np.ndarray, present: np.ndarray | None = None, labels: list[str] | None = None,
                  cols: int = 8, tile: int = 112) -> np.ndarray:
    """Tile crops ``uint8 [N, S, S, 3]`` RGB into one ``uint8 [rows*tile, cols*tile, 3]`` RGB image.

    Crops with ``present=False`` get a red border (filled from the nearest face); ``labels`` (e.g.
    frame numbers) are drawn in the top-left corner of each tile.
    """
    n = len(crops)
    rows = max(1, -(-n // cols))
    sheet = np.zeros((rows * tile, cols * tile, 3), np.uint8)
    for i, crop in enumerate(crops):
        t = cv2.resize(np.ascontiguousarray(crop), (tile, tile), interpolation=cv2.INTER_AREA)
        if present is not None and not present[i]:
            cv2.rectangle(t, (0, 0), (tile - 1, tile - 1), (255, 0, 0), 3)
        if labels is not None:
            cv2.putText(t, labels[i], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        r, c = divmod(i, cols)
        sheet[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = t
    return sheet


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB image as PNG (creating folders). Raises OSError when the file cannot be written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: could not encode PNG")
    return atomic.write_bytes(path, png.tobytes())
