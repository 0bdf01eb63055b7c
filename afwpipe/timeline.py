"""A timeline PNG of one video's per-frame predictions (``afwpipe analyze``).

The per-frame table (one row per decoded frame, a ``pandas.DataFrame`` or any mapping of equal-length
columns) has the columns::

    frame int64 (0-based)   time float64 s (container timestamps, from 0)   present bool
    x1, y1, x2, y2 float32 px, upright frame, NaN without a face
    <AU>_prob float32, <AU> int8 0/1          for each AU of labels.AU_NAMES          (AU track)
    <Class>_prob float32, expr str, expr_index int8   for each class of labels.EXPR_NAMES  (EXPR track)
    valence, arousal float32 in [-1, 1]                                               (VA track)

A track the model does not predict has no columns; every function here draws only the tracks present.
:func:`table_tracks` says which they are (shared with :mod:`afwpipe.overlay`).

Panels, top to bottom, x axis in seconds: AU probabilities as a heat strip (AUs x time) and the AU
decisions as a second strip; EXPR class probabilities as a strip with the chosen class drawn on top as a
step line; valence and arousal curves on [-1, 1]. Spans of frames without a face (``present`` False) are
shaded grey across every panel. Frame ``i`` covers ``[time[i], time[i+1])`` (the last frame one median
frame interval), so variable-frame-rate video is drawn at its true times.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import atomic
from .errors import RenderError
from .labels import AU_NAMES, EXPR_NAMES, VA_NAMES

#: ``gid`` of the grey spans drawn where no face was found (tests and callers find them by it)
NO_FACE_GID = "no-face"


@dataclass(frozen=True)
class Tracks:
    """Which tracks a table holds: ``au`` the AU names with a ``<AU>_prob`` column (in AU_NAMES order),
    ``au_decisions`` those that also have the ``<AU>`` decision column, ``expr`` every
    ``<Class>_prob`` column or ``expr_index`` present, ``va`` the names of VA_NAMES present."""

    au: tuple[str, ...]
    au_decisions: tuple[str, ...]
    expr: bool
    va: tuple[str, ...]


def table_tracks(table) -> Tracks:
    """The tracks of ``table`` (see the module docstring for the column names)."""
    cols = set(table.columns)
    au = tuple(a for a in AU_NAMES if f"{a}_prob" in cols)
    return Tracks(au=au, au_decisions=tuple(a for a in au if a in cols),
                  expr=all(f"{c}_prob" in cols for c in EXPR_NAMES) or "expr_index" in cols,
                  va=tuple(v for v in VA_NAMES if v in cols))


def column(table, name: str, dtype=np.float32) -> np.ndarray:
    """Column ``name`` of ``table`` as a numpy array of ``dtype``."""
    return np.asarray(table[name], dtype=dtype)


def present_mask(table) -> np.ndarray:
    """bool ``[T]``: ``present`` when the table has it, else a finite ``x1`` box, else every frame."""
    if "present" in table.columns:
        return column(table, "present", bool)
    if "x1" in table.columns:
        return np.isfinite(column(table, "x1"))
    return np.ones(len(table), bool)


def time_edges(times: np.ndarray) -> np.ndarray:
    """float64 ``[T + 1]`` seconds: frame ``i`` spans ``[edges[i], edges[i+1])``; the last frame lasts the
    median frame interval (1 s for a single frame)."""
    times = np.asarray(times, np.float64)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    return np.append(times, times[-1] + step)


def missing_spans(present: np.ndarray, edges: np.ndarray) -> list[tuple[float, float]]:
    """``[(start_s, end_s), ...]`` of each run of frames with ``present`` False."""
    flip = np.diff(np.concatenate([[0], (~present).astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(flip == 1), np.flatnonzero(flip == -1)
    return [(float(edges[s]), float(edges[e])) for s, e in zip(starts, ends)]


def timeline_figure(table, title: str | None = None):
    """The timeline as a ``matplotlib.figure.Figure`` (Agg canvas, no pyplot state): one axes per panel
    (AU probabilities, AU decisions, EXPR, VA; only the tracks present; heat strips carry their colour
    bar as a child axes, so ``fig.axes`` holds exactly the panels), grey ``NO_FACE_GID`` spans where ``present`` is False.

    Raises:
        RenderError: the table has no rows, or no ``time`` column, or none of the AU / EXPR / VA columns.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    name = title or "table"
    if len(table) == 0 or "time" not in table.columns:
        raise RenderError(f"{name}: the per-frame table has no rows or no 'time' column; nothing to draw")
    tracks = table_tracks(table)
    panels = (["au"] if tracks.au else []) + (["au_decisions"] if tracks.au_decisions else []) \
        + (["expr"] if tracks.expr else []) + (["va"] if tracks.va else [])
    if not panels:
        raise RenderError(f"{name}: the per-frame table has no AU, EXPR or VA column; nothing to draw")
    edges = time_edges(column(table, "time", np.float64))
    heights = {"au": max(len(tracks.au), 3), "au_decisions": max(len(tracks.au_decisions), 3), "expr": 8, "va": 6}
    fig = Figure(figsize=(12, 1.2 + 0.22 * sum(heights[p] for p in panels)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [heights[p] for p in panels]})[:, 0]
    for ax, panel in zip(axes, panels):
        _PANELS[panel](fig, ax, table, tracks, edges)
        for start, end in missing_spans(present_mask(table), edges):
            ax.axvspan(start, end, color="0.5", alpha=0.35, lw=0, zorder=3, gid=NO_FACE_GID)
    axes[-1].set_xlim(edges[0], edges[-1])
    axes[-1].set_xlabel("time (s); grey: no face")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_timeline(table, path: str | Path, title: str | None = None) -> Path:
    """Write the timeline of ``table`` (see :func:`timeline_figure`) as a PNG to ``path`` and return it.

    Raises:
        RenderError: as :func:`timeline_figure`.
    """
    path = Path(path)
    fig = timeline_figure(table, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(path) as tmp:
        fig.savefig(tmp, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def _strip(fig, ax, values: np.ndarray, edges: np.ndarray, labels, cmap: str, label: str, ticks=None):
    """``values [rows, T]`` in [0, 1] as a heat strip with a colour bar (``ticks``: its ticks)."""
    mesh = ax.pcolormesh(edges, np.arange(len(labels) + 1) - 0.5, values, cmap=cmap, vmin=0, vmax=1,
                         shading="flat")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    cbar = fig.colorbar(mesh, cax=ax.inset_axes([1.005, 0.0, 0.012, 1.0]))  # a child axes: panels keep one width
    cbar.set_label(label, fontsize=7)
    if ticks is not None:
        cbar.set_ticks(ticks)
    cbar.ax.tick_params(labelsize=6)


def _au_panel(fig, ax, table, tracks, edges):
    probs = np.stack([column(table, f"{a}_prob") for a in tracks.au])
    _strip(fig, ax, probs, edges, tracks.au, "viridis", "probability")
    ax.set_title("AU probabilities", fontsize=9, loc="left")


def _au_decision_panel(fig, ax, table, tracks, edges):
    on = np.stack([column(table, a) for a in tracks.au_decisions])
    _strip(fig, ax, on, edges, tracks.au_decisions, "Greys", "active", ticks=[0, 1])
    ax.set_title("AU decisions (black: active)", fontsize=9, loc="left")


def _expr_panel(fig, ax, table, tracks, edges):
    if all(f"{c}_prob" in table.columns for c in EXPR_NAMES):
        probs = np.stack([column(table, f"{c}_prob") for c in EXPR_NAMES])
        _strip(fig, ax, probs, edges, EXPR_NAMES, "Blues", "probability")
    else:
        ax.set_yticks(range(len(EXPR_NAMES)), EXPR_NAMES, fontsize=7)
        ax.set_ylim(len(EXPR_NAMES) - 0.5, -0.5)
    if "expr_index" in table.columns:
        idx = column(table, "expr_index", np.float64)
        idx[(idx < 0) | (idx >= len(EXPR_NAMES))] = np.nan
        ax.stairs(idx, edges, baseline=None, color="tab:red", lw=1.5, label="class")
    ax.set_title("EXPR (red: class)", fontsize=9, loc="left")


def _va_panel(fig, ax, table, tracks, edges):
    colours = {"valence": "tab:blue", "arousal": "tab:orange"}
    centres = (edges[:-1] + edges[1:]) / 2
    for name in tracks.va:
        ax.plot(centres, column(table, name), color=colours[name], lw=1.2, label=name)
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_ylim(-1.05, 1.05)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("valence / arousal", fontsize=9, loc="left")


_PANELS = {"au": _au_panel, "au_decisions": _au_decision_panel, "expr": _expr_panel, "va": _va_panel}
