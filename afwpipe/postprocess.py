"""Post-processing of the heads' raw per-frame outputs into per-track decisions, per fold and for the fold
ensemble (composes :mod:`afwpipe.temporal` and :mod:`afwpipe.decisions`; afwpipe's order, docs/postprocess.md).

A *system* is one track (``au``, ``expr``, ``va``) of one fold (``official``, ``0``, …) or of the ``ensemble``
of those folds. The heads that feed a track are the trained heads of task ``sources[track]`` (default the
track itself; ``mtl`` heads serve all three). For a fold system, per video:

1. *scene override*: when a scene head of the same task and fold predicted the video (the video belongs to
   its scene: a validation or a test video), its output replaces the general head's; the general head's
   output goes through the same steps beside it, so evaluate can score each scene's heads against the
   general heads on the scene's videos (:mod:`afwpipe.scene_scores`);
2. *nearest-frame fill*: frames without a face take the output of the nearest frame with one
   (:func:`temporal.fill_nearest`; ``present`` of the predictions, i.e. faces.zarr);
3. *smoothing* along time per track (:func:`temporal.smooth`: ``gaussian`` σ, ``median`` / ``mean`` window;
   defaults AU σ 5 / window 10, EXPR 25 / 25, VA 25 / 50, :data:`temporal.SMOOTH_SIGMA`; ``none`` skips it).
   ``sigma: tuned`` / ``window: tuned`` chooses it per system from a grid (:func:`choose_smoothing`) on the
   same out-of-fold frames as the tuned AU thresholds, never on a video the system is scored on;
4. *decisions*: AU ``prob ≥ threshold`` with a fixed threshold or per-AU thresholds tuned on a grid
   (:func:`tune_au_thresholds`) on out-of-fold frames the system is never scored on
   (:func:`tune_thresholds`), EXPR argmax, VA values clipped to [-1, 1].

A fold system is scored on its own validation videos (its head never trained on them; with
``train.epoch_selection: val`` it chose its epoch on them). The ensemble covers the videos every fold system predicted (the ``val`` and ``test`` splits) and is
scored only on the labelled ones that no member head (general or scene) trained or early-stopped on
(:func:`seen_videos`); when there is none -- e.g. the numbered folds' heads train on every ``val``
video -- it is scored on the track's ``val`` split and flagged ``optimistic`` with a reason (systems.json,
metrics.json, summary lines).

A whole-dataset member (heads of fold ``all``, :data:`afwpipe.folds.ALL`: trained on every labelled ``train``
and ``val`` video) has a fold system of its own in ``post/`` (its chain: fill, smoothing, AU thresholds tuned
on the numbered folds' out-of-fold frames) so that it votes in the ensemble and ``afwpipe analyze`` /
``submit`` can run it, but that system has no evaluation video (``eval_videos: []``, ``unscored`` says why):
it is never scored. The ensemble it votes in is flagged ``optimistic`` on the videos it trained on
(:func:`afwpipe.honesty.whole_dataset_members`).

A system is ``optimistic`` exactly when a video it is scored on trained one of its heads, chose one of its
heads' epochs (``selected_on`` of ``models/<head>/metrics.json``, :func:`selected_on`), tuned its
thresholds or smoothing (its own or, for the ensemble, its fold systems'; :func:`flag_chosen_on_scored`) or
fine-tuned an encoder whose features its heads read (``afwpipe finetune``; :func:`flag_fitted_features`);
``optimistic_reason`` lists which. ``vote`` takes the fold decisions (AU majority per AU with ``au_vote_tie`` on a
tie, EXPR majority class with ties to the highest summed probability, VA mean), ``soft`` averages the
processed probabilities / values and then thresholds (fixed or tuned as above) or takes the argmax.

Smoothing can lower a score (it did for VA on the sample videos): the summary lines of postprocess and
evaluate give, per track, the score before and after post-processing and say ``lower after`` when it dropped.

*Before* decisions (written beside the *after* ones for :mod:`afwpipe.evaluate`) are the general heads' raw
outputs with threshold 0.5 / argmax / raw VA (the ensemble's: the same combination rule over them) -- the
numbers the train step reports as its validation score.

Output (:attr:`Workspace.post_dir`)::

    post/systems.json                        per system: track, fold, videos, eval_videos, thresholds,
                                             thresholds_from, threshold_videos (<fold>/<video> tuned on),
                                             optimistic, optimistic_reason, seen_videos (ensemble: videos
                                             a member trained or early-stopped on), selected_on (videos
                                             that chose a member head's epoch), warnings, models (the
                                             head used per video), smoothing (method and the σ / window
                                             used), tta (views the head's outputs were averaged over, or
                                             null), unscored (why fold all is never scored, else null),
                                             scenes (per scene the routed videos, and the
                                             scene_head / general_head rows' heads and honesty,
                                             :mod:`afwpipe.scene_scores`); and the settings. The
                                             per-video chain is
                                             :mod:`afwpipe.chain`, run from this entry (so ``afwpipe
                                             analyze`` runs the same one)
    post/<track>-<fold>.npz  <video>/prob    [T, C] float32 processed probabilities (AU 12, EXPR 8) or VA
                             <video>/before  decisions before post-processing
                             <video>/after   decisions after: AU [T, 12] int8 {0,1}, EXPR [T] int8 class,
                                             VA [T, 2] float32
                             <video>/general a scene head's video only: the general head's decisions after the
                                             same chain (fill, smoothing, thresholds), for the scene's score

``post/`` holds one small ``.npz`` per system (``numpy.load``): a derived, cheap layer rewritten on every run,
read whole by evaluate and submit (a Zarr group per video and system costs ~10 ms of metadata writes each).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np
from tqdm import tqdm

from . import __version__, atomic, layout, store, temporal
from .chain import SMOOTH_PARAM, EnsembleChain, FoldChain, combine, decide, fill_track, smooth_with
from .decisions import (AU_THRESHOLD_GRID, THRESHOLDS_DEFAULT, THRESHOLDS_FIXED, THRESHOLDS_OOF, THRESHOLDS_SCORED,
                        tune_au_thresholds)
from .config import FromParams
from .datasets.base import is_generic
from .errors import AfwpipeError, PostprocessError
from .folds import ALL, split_of
from .honesty import chosen_on_scored, seen_videos, selected_on, whole_dataset_members
from .labels import TRACKS
from .readers import load_labels, read_prediction, read_predictions_index
from .scene_scores import row_honesty
from .scores import KEY, before_after, headline, labelled, system_notes
from .scores import score as score_track
from .store import ENSEMBLE
from .task_post import run_postprocess_declared

log = logging.getLogger(__name__)

SMOOTH_CHOICES = temporal.SMOOTH_METHODS + ("none",)
ENSEMBLE_METHODS = ("vote", "soft")
TUNED = ("tuned", "tuned_on_scored")
#: candidate σ (gaussian) / window (median, mean) in frames of ``sigma: tuned`` / ``window: tuned`` when
#: ``smooth_grid`` is null; σ 0 and window 1 mean no smoothing, so the choice can leave a track unsmoothed.
SMOOTH_GRID = {"gaussian": (0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 16.0, 25.0, 35.0, 50.0),
               "median": (1, 3, 5, 9, 15, 25, 35, 51, 75), "mean": (1, 3, 5, 9, 15, 25, 35, 51, 75)}
#: ``smoothing["from"]`` of a system (systems.json, metrics.json)
SMOOTHING_FIXED, SMOOTHING_OOF = "fixed", "out-of-fold frames"
SMOOTHING_DEFAULT = "default (no out-of-fold frame)"


def _default_smooth() -> dict:
    return {t: {"method": "gaussian", "sigma": temporal.SMOOTH_SIGMA[t], "window": temporal.SMOOTH_WINDOW[t]} for t in TRACKS}


@dataclass
class PostConfig(FromParams):
    """Post-processing settings (params.yaml ``postprocess``; every default here equals params.yaml).

    Attributes:
        sources: track -> trained task whose heads predict it (``au``/``expr``/``va`` or ``mtl``).
        fill: nearest-frame fill of frames without a face.
        smooth: track -> ``{method: gaussian|median|mean|none, sigma: frames, window: frames}``; a missing or
            null σ / window takes :data:`temporal.SMOOTH_SIGMA` / :data:`temporal.SMOOTH_WINDOW`; ``tuned``
            for the method's parameter (σ of ``gaussian``, window of ``median`` / ``mean``) chooses it per
            system on out-of-fold frames (:func:`choose_smoothing`).
        smooth_grid: candidate σ / window (frames) of a tuned smoothing; None: :data:`SMOOTH_GRID` of the method.
        au_thresholds: ``"tuned"`` (per AU on out-of-fold frames the system is not scored on, on
            ``threshold_grid``; :func:`tune_thresholds`), ``"tuned_on_scored"`` (on the scored frames
            themselves: optimistic, flagged in metrics.json) or a number.
        threshold_grid: candidate thresholds; None: :data:`decisions.AU_THRESHOLD_GRID` (0.10 … 0.90 by 0.05).
        ensemble: ``vote`` (hard voting of the fold decisions) or ``soft`` (mean of probabilities).
        au_vote_tie: AU vote when exactly half the folds say 1 (1 or 0).
        scenes: scene heads replace the general head for their videos.
    """

    params_section: ClassVar[str] = "postprocess"
    params_error: ClassVar[type[AfwpipeError]] = PostprocessError

    sources: dict = field(default_factory=lambda: {t: t for t in TRACKS})
    fill: bool = True
    smooth: dict = field(default_factory=_default_smooth)
    au_thresholds: str | float = "tuned"
    threshold_grid: list | None = None
    ensemble: str = "vote"
    au_vote_tie: int = 1
    scenes: bool = True
    smooth_grid: list | None = None

    def __post_init__(self):
        sources = {t: t for t in TRACKS}
        sources.update(self.sources or {})
        self.sources = sources
        smooth = _default_smooth()
        for track, spec in (self.smooth or {}).items():
            if track not in TRACKS:
                raise PostprocessError(f"postprocess smooth: unknown track {track!r}; use {', '.join(TRACKS)}")
            smooth[track].update({k: v for k, v in (spec or {}).items() if v is not None})
        self.smooth = smooth
        for track, spec in self.smooth.items():
            if spec["method"] not in SMOOTH_CHOICES:
                raise PostprocessError(f"postprocess smooth.{track}.method: {spec['method']!r} is not one of "
                                   f"{', '.join(SMOOTH_CHOICES)}")
            try:
                spec["sigma"] = spec["sigma"] if spec["sigma"] == "tuned" else float(spec["sigma"])
                spec["window"] = spec["window"] if spec["window"] == "tuned" else int(spec["window"])
            except (TypeError, ValueError):
                raise PostprocessError(f"postprocess smooth.{track}: sigma {spec['sigma']!r} / window "
                                       f"{spec['window']!r} must be numbers of frames or 'tuned'") from None
            other = "window" if spec["method"] == "gaussian" else "sigma"
            if spec[other] == "tuned" and spec["method"] != "none":
                raise PostprocessError(f"postprocess smooth.{track}: {other}: tuned, but method {spec['method']} "
                                       f"has a {SMOOTH_PARAM[spec['method']]}; tune that one")
            if spec[other] == "tuned":  # unused by the method: keep the track's default
                spec[other] = float(temporal.SMOOTH_SIGMA[track]) if other == "sigma" else temporal.SMOOTH_WINDOW[track]
        if self.smooth_grid is not None:
            self.smooth_grid = [float(x) for x in self.smooth_grid]
            if not self.smooth_grid or min(self.smooth_grid) < 0:
                raise PostprocessError(f"postprocess smooth_grid: {self.smooth_grid} must be a non-empty list of "
                                       f"frames ≥ 0")
        if self.ensemble not in ENSEMBLE_METHODS:
            raise PostprocessError(f"postprocess ensemble: {self.ensemble!r} is not one of {', '.join(ENSEMBLE_METHODS)}")
        if self.au_thresholds not in TUNED:
            try:
                self.au_thresholds = float(self.au_thresholds)
            except (TypeError, ValueError):
                raise PostprocessError(f"postprocess au_thresholds: {self.au_thresholds!r} is neither "
                                   f"{' nor '.join(map(repr, TUNED))} nor a number") from None
        if self.threshold_grid is not None:
            self.threshold_grid = [float(x) for x in self.threshold_grid]
        self.au_vote_tie = int(self.au_vote_tie)

    @property
    def grid(self) -> np.ndarray:
        return AU_THRESHOLD_GRID if self.threshold_grid is None else np.asarray(self.threshold_grid)

    def tuned_smoothing(self, track: str) -> str | None:
        """``sigma`` or ``window`` when ``track``'s smoothing parameter is ``tuned``, else None."""
        spec = self.smooth[track]
        param = SMOOTH_PARAM.get(spec["method"])
        return param if param and spec[param] == "tuned" else None

    def smooth_candidates(self, track: str) -> list[float]:
        """The tuned parameter's candidates of ``track`` (``smooth_grid`` or :data:`SMOOTH_GRID`)."""
        method = self.smooth[track]["method"]
        grid = SMOOTH_GRID[method] if self.smooth_grid is None else self.smooth_grid
        if method == "gaussian":
            return [float(c) for c in grid]
        if min(grid) < 1 or any(c != int(c) for c in grid):
            raise PostprocessError(f"postprocess smooth_grid: {list(grid)} are not {method} windows (whole frames ≥ 1) "
                                   f"for track {track}")
        return [int(c) for c in grid]


# -- per-video steps (the chain itself: :mod:`afwpipe.chain`) -----------------------------------------------
def smooth_track(values: np.ndarray, present: np.ndarray | None, track: str, cfg: PostConfig) -> np.ndarray:
    """Nearest-frame fill (when ``cfg.fill`` and ``present`` is given) then smoothing per ``cfg.smooth[track]``
    (a ``tuned`` σ / window takes the track's default: provisional, until :func:`choose_smoothing`).

    Args:
        values: ``[T, C]`` raw outputs (AU / EXPR probabilities, VA values).
        present: ``[T]`` bool, a face was found.

    Returns:
        ``[T, C]`` float64.
    """
    out = fill_track(values, present, cfg.fill)
    spec = cfg.smooth[track]
    param = SMOOTH_PARAM.get(spec["method"])
    size = spec[param] if param else None
    if size == "tuned":
        size = temporal.SMOOTH_SIGMA[track] if param == "sigma" else temporal.SMOOTH_WINDOW[track]
    return smooth_with(out, spec["method"], size)


def out_of_fold_frames(track: str, folds: Sequence["System"], exclude, labels: Mapping) -> list[tuple[str, str]]:
    """``(fold, video)`` pairs whose processed outputs are out-of-sample and outside ``exclude``.

    For every numbered fold ``j`` (not ``official``, not ``all``, not the ensemble) of ``folds``, fold ``j``'s
    head never trained on its own validation videos (``eval_videos``, :func:`afwpipe.folds.split_videos`), so its
    outputs there are out-of-fold predictions. Pairs of a video in ``exclude`` (the videos the system being
    tuned is scored on) and videos without a valid ``track`` label are left out.
    """
    exclude = set(exclude)
    return [(f.fold, v) for f in folds if f.fold not in ("official", ALL, ENSEMBLE)
            for v in labelled(f.eval_videos, labels, track) if v not in exclude]


def tune_thresholds(sys_: "System", folds: Sequence["System"], labels: Mapping, cfg: PostConfig) -> None:
    """Set ``sys_.thresholds`` (``[12]`` float64; None for EXPR and VA), ``thresholds_from`` and
    ``threshold_videos`` of an AU system from ``cfg.au_thresholds``:

    - a number: that threshold for every AU (``fixed``);
    - ``tuned``: per AU on ``cfg.grid`` (:func:`tune_au_thresholds`) over the pooled out-of-fold
      frames of the numbered folds (:func:`out_of_fold_frames`), never the frames ``sys_`` is scored on.
      Each frame keeps the processed output of its own fold's system, so the thresholds of fold ``i`` come
      from the other folds' heads on their held-out videos, and those of ``official`` and of the ensemble
      from the numbered folds' held-out videos outside the scored ones. Without such a frame (e.g. only
      ``official`` was trained) every AU gets 0.5 and a warning is recorded in ``sys_.warnings``;
    - ``tuned_on_scored``: per AU on the frames ``sys_`` is scored on (its ``eval_videos``); ``sys_`` is
      flagged ``optimistic`` and :mod:`afwpipe.evaluate` writes its score as ``after_tuned_on_scored``.
    """
    if sys_.track != "au":
        return
    n = next(iter(sys_.prob.values())).shape[1] if sys_.prob else 12
    if cfg.au_thresholds not in TUNED:
        sys_.thresholds, sys_.thresholds_from = np.full(n, float(cfg.au_thresholds)), THRESHOLDS_FIXED
        return
    if cfg.au_thresholds == "tuned_on_scored":
        pairs = [(sys_.fold, v) for v in labelled(sys_.eval_videos, labels, "au")]
        source = {sys_.fold: sys_}
    else:
        pairs = out_of_fold_frames("au", folds, sys_.eval_videos, labels)
        source = {f.fold: f for f in folds}
    sys_.threshold_videos = [f"{f}/{v}" for f, v in pairs]
    if not pairs:
        sys_.thresholds, sys_.thresholds_from = np.full(n, 0.5), THRESHOLDS_DEFAULT
        sys_.warnings.append("AU thresholds 0.5: no labelled AU frame in " + (
            "the scored videos" if cfg.au_thresholds == "tuned_on_scored" else
            f"a numbered fold's own validation videos outside the ones {sys_.name} is scored on"))
        log.warning("postprocess %s: %s", sys_.name, sys_.warnings[-1])
        return
    prob = np.concatenate([source[f].prob[v] for f, v in pairs])
    true = np.concatenate([labels[v]["au"] for _, v in pairs])
    sys_.thresholds = tune_au_thresholds(prob, true, cfg.grid)
    sys_.thresholds_from = THRESHOLDS_OOF
    if cfg.au_thresholds == "tuned_on_scored":
        sys_.thresholds_from = THRESHOLDS_SCORED
        _flag(sys_, "AU thresholds tuned on the scored frames")


def smoothing_score(track: str, values: np.ndarray, true: np.ndarray, cfg: PostConfig) -> float:
    """Score of processed outputs ``values`` on labels ``true`` with the track's decision rule: AU mean F1 at
    ``cfg.au_thresholds`` (a number) or at per-AU thresholds tuned on these same frames (``tuned``:
    smoothing and thresholds chosen together), EXPR macro F1 of the argmax, VA mean CCC."""
    th = 0.5
    if track == "au":
        th = (tune_au_thresholds(values, true, cfg.grid) if cfg.au_thresholds in TUNED
              else float(cfg.au_thresholds))
    return float(score_track(track, decide(track, values, th), true)[KEY[track]])


def choose_smoothing(sys_: "System", folds: Sequence["System"], labels: Mapping, cfg: PostConfig) -> None:
    """Set ``sys_.smoothing`` and, for a tuned σ / window, re-smooth ``sys_.prob`` with the chosen value.

    Tuned (``smooth.<track>.sigma: tuned`` or ``window: tuned``): every candidate of
    :meth:`PostConfig.smooth_candidates` smooths the filled outputs of the out-of-fold frames that also tune
    the AU thresholds (:func:`out_of_fold_frames`: the numbered folds' own validation videos, never one
    ``sys_`` is scored on, each with its own fold's head), scored by :func:`smoothing_score` on the pooled
    frames; the best wins, the earliest candidate on a tie. Without such a frame the track's default
    (:data:`temporal.SMOOTH_SIGMA` / ``SMOOTH_WINDOW``) is kept with a warning in ``sys_.warnings``.

    ``sys_.smoothing``: ``{"method", "sigma" | "window", "from"}`` (``fixed``, ``out-of-fold frames`` or the
    default), and when tuned ``"videos"`` (``<fold>/<video>``) and ``"scores"`` (candidate -> score).
    """
    spec, param = cfg.smooth[sys_.track], cfg.tuned_smoothing(sys_.track)
    method = spec["method"]
    if param is None:
        sys_.smoothing = {"method": method, **({SMOOTH_PARAM[method]: spec[SMOOTH_PARAM[method]]}
                                                if method in SMOOTH_PARAM else {}), "from": SMOOTHING_FIXED}
        return
    pairs = out_of_fold_frames(sys_.track, folds, sys_.eval_videos, labels)
    size = temporal.SMOOTH_SIGMA[sys_.track] if param == "sigma" else temporal.SMOOTH_WINDOW[sys_.track]
    sys_.smoothing = {"method": method, param: size, "from": SMOOTHING_DEFAULT,
                      "videos": [f"{f}/{v}" for f, v in pairs], "scores": {}}
    if not pairs:
        sys_.warnings.append(f"smoothing {param} {size:g} (the default): no labelled {sys_.track.upper()} frame in "
                             f"a numbered fold's own validation videos outside the ones {sys_.name} is scored on")
        log.warning("postprocess %s: %s", sys_.name, sys_.warnings[-1])
    else:
        source = {f.fold: f for f in folds}
        true = np.concatenate([labels[v][sys_.track] for _, v in pairs])
        scores = {c: smoothing_score(sys_.track, np.concatenate(
            [smooth_with(source[f].filled[v], method, c) for f, v in pairs]), true, cfg)
            for c in cfg.smooth_candidates(sys_.track)}
        size = max(scores, key=lambda c: (scores[c], -list(scores).index(c)))
        sys_.smoothing.update({param: size, "from": SMOOTHING_OOF, "scores": {f"{c:g}": s for c, s in scores.items()}})
    for v in sys_.videos:
        sys_.prob[v] = smooth_with(sys_.filled[v], method, size)


def _flag(sys_: "System", reason: str) -> None:
    """Mark ``sys_``'s scores optimistic, adding ``reason``."""
    sys_.optimistic = True
    sys_.optimistic_reason = "; ".join(filter(None, [sys_.optimistic_reason, reason]))
    log.warning("postprocess %s: optimistic scores: %s", sys_.name, reason)


# -- systems -------------------------------------------------------------------------------------------
@dataclass
class System:
    """One track of one fold (or of the ensemble) with its per-video outputs.

    ``thresholds_from`` (AU only) says where the thresholds come from (:func:`tune_thresholds`; a ``vote``
    ensemble: ``fold votes (<the folds' thresholds_from>)``), ``threshold_videos`` the ``<fold>/<video>``
    outputs they were tuned on; ``optimistic`` marks a system whose scores saw data they should not have
    (the ensemble scored on videos a member trained or early-stopped on; AU thresholds tuned on the scored
    frames), ``optimistic_reason`` says why;
    ``seen_videos`` (ensemble only) are the videos some member trained or early-stopped on, ``selected_on``
    the videos that chose a member head's epoch (:func:`flag_chosen_on_scored`); ``unscored`` says why a
    system has no evaluation video by design (the whole-dataset member, fold ``all``), else None.
    """

    track: str
    fold: str
    videos: list[str]
    eval_videos: list[str]
    models: dict[str, str]
    thresholds: np.ndarray | None = None
    prob: dict[str, np.ndarray] = field(default_factory=dict)
    before: dict[str, np.ndarray] = field(default_factory=dict)
    after: dict[str, np.ndarray] = field(default_factory=dict)
    raw: dict[str, np.ndarray] = field(default_factory=dict)  # general head's raw outputs (for "before")
    filled: dict[str, np.ndarray] = field(default_factory=dict)  # chosen head's filled outputs (tuned smoothing)
    smoothing: dict = field(default_factory=dict)  # :func:`choose_smoothing`
    heads: list[str] = field(default_factory=list)  # every head feeding the system (general and scene)
    thresholds_from: str | None = None
    threshold_videos: list[str] = field(default_factory=list)
    optimistic: bool = False
    optimistic_reason: str | None = None
    seen_videos: list[str] = field(default_factory=list)
    selected_on: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chosen: dict[str, tuple] = field(default_factory=dict)  # video -> (chosen head's raw outputs, present)
    tta: list[str] | None = None  # views the general head's outputs were averaged over (predict.tta)
    unscored: str | None = None  # why a system is never scored (fold all), else None
    # scene -> {"videos": routed videos, "scene_head" / "general_head": row honesty} (afwpipe.scene_scores)
    scenes: dict[str, dict] = field(default_factory=dict)
    general: dict[str, tuple] = field(default_factory=dict)  # routed video -> (general raw outputs, present)
    general_prob: dict[str, np.ndarray] = field(default_factory=dict)  # routed video -> general head processed
    general_after: dict[str, np.ndarray] = field(default_factory=dict)  # routed video -> general head decisions

    @property
    def name(self) -> str:
        return f"{self.track}-{self.fold}"

    def entry(self) -> dict:
        """The system's ``post/systems.json`` entry (module docstring); :mod:`afwpipe.chain` reads its choices
        (``smoothing``, ``thresholds``) and ``afwpipe analyze`` its ``tta`` views."""
        return {"track": self.track, "fold": self.fold, "videos": self.videos, "eval_videos": self.eval_videos,
                "thresholds": None if self.thresholds is None else [float(x) for x in self.thresholds],
                "thresholds_from": self.thresholds_from, "threshold_videos": self.threshold_videos,
                "optimistic": self.optimistic, "optimistic_reason": self.optimistic_reason,
                "seen_videos": self.seen_videos, "selected_on": self.selected_on, "warnings": self.warnings, "models": self.models,
                "smoothing": self.smoothing, "tta": self.tta, "unscored": self.unscored, "scenes": self.scenes}


def _records_by_fold(records: list[dict], task: str, track: str) -> dict[str, dict]:
    """fold -> {"general": record, "scenes": [records]} of the heads of ``task``.

    Raises:
        PostprocessError: a head of ``task`` has no ``track`` output.
    """
    out: dict[str, dict] = {}
    for r in records:
        if r["task"] != task:
            continue
        if track not in r.get("tasks", [track]):
            raise PostprocessError(f"postprocess: head {r['name']} has no {track.upper()} output (outputs: "
                               f"{', '.join(r.get('tasks', []))}); set postprocess.sources.{track}")
        slot = out.setdefault(str(r["fold"]), {"general": None, "scenes": []})
        if r["scene"]:
            slot["scenes"].append(r)
        else:
            slot["general"] = r
    return {f: s for f, s in out.items() if s["general"] is not None}


def fold_system(ws: store.Workspace, track: str, fold: str, general: dict, scenes: list[dict],
                cfg: PostConfig) -> System:
    """Steps 1-3 of the module docstring for one fold of one track, and the *before* decisions; the AU
    thresholds (:func:`tune_thresholds`) and *after* decisions (:func:`finish`) need every fold first."""
    scene_of = {}
    if cfg.scenes:
        for r in scenes:
            for v in r["videos"]:
                scene_of.setdefault(v, r)
    sys_ = System(track, fold, list(general["videos"]), list(general["val_videos"]), {},
                  heads=[general["name"]] + [r["name"] for r in scenes if cfg.scenes], tta=general.get("tta"))
    if fold == ALL:  # trained on every labelled video: nothing is left to score it on
        sys_.eval_videos, sys_.unscored = [], (f"fold {ALL} trained on every labelled train and val video; it "
                                               f"votes in the ensemble, flagged optimistic where it trained")
    for v in sys_.videos:
        raw = read_prediction(ws, general["name"], v)
        sys_.raw[v] = raw[track]
        model = scene_of[v]["name"] if v in scene_of else general["name"]
        chosen = raw if model == general["name"] else read_prediction(ws, model, v)
        if v in scene_of:  # the general head's outputs stay beside, for the scene's score (afwpipe.scene_scores)
            sys_.general[v] = (raw[track], raw.get("present"))
            entry = sys_.scenes.setdefault(scene_of[v]["scene"], {"heads": [model], "videos": []})
            entry["videos"].append(v)
        sys_.models[v] = model
        sys_.chosen[v] = (chosen[track], chosen.get("present"))
        filled = fill_track(chosen[track], chosen.get("present"), cfg.fill)
        sys_.prob[v] = smooth_track(filled, None, track, cfg)
        if cfg.tuned_smoothing(track):
            sys_.filled[v] = filled
        sys_.before[v] = decide(track, sys_.raw[v])
    return sys_


def finish(sys_: System, folds: Sequence[System], labels: Mapping, cfg: PostConfig) -> System:
    """AU thresholds of a fold system (:func:`tune_thresholds` over ``folds``), then its processed outputs and
    *after* decisions by the chain of its own ``post/systems.json`` entry (:meth:`FoldChain.from_system`, as
    ``afwpipe analyze`` runs it)."""
    tune_thresholds(sys_, folds, labels, cfg)
    chain = FoldChain.from_system(sys_.entry(), cfg.fill, sys_.name)
    for v in sys_.videos:
        sys_.prob[v], sys_.after[v] = chain.run(*sys_.chosen[v])
    for v, (raw, present) in sys_.general.items():  # the same chain on the general head's outputs
        sys_.general_prob[v], sys_.general_after[v] = chain.run(raw, present)
    return sys_


def flag_chosen_on_scored(sys_: "System", members: Sequence["System"], selected: Mapping[str, set[str]]) -> None:
    """Flag ``sys_`` optimistic (:func:`_flag`) for each way a video it is scored on (``eval_videos``) chose
    something it uses (:func:`afwpipe.honesty.chosen_on_scored`): the epoch of one of its heads
    (``selected[head]``, :func:`afwpipe.honesty.selected_on`), or the AU thresholds / smoothing of ``sys_`` or of
    its ``members`` (the ensemble's fold systems). AU thresholds tuned on the scored frames on purpose
    (``tuned_on_scored``) are flagged by :func:`tune_thresholds` already. Sets ``sys_.selected_on`` (the union
    over its heads)."""
    tuning = tuning_videos(sys_, members, sys_.thresholds_from != THRESHOLDS_SCORED)
    heads = {h: selected.get(h, set()) for h in sys_.heads}
    sys_.selected_on = sorted(set().union(*heads.values()))
    for reason in chosen_on_scored(sys_.eval_videos, heads, tuning):
        _flag(sys_, reason)


def tuning_videos(sys_: "System", members: Sequence["System"], thresholds: bool = True) -> list[str]:
    """``<fold>/<video>`` entries whose frames tuned the AU thresholds (when ``thresholds``) or the smoothing of
    ``sys_`` or of its ``members`` (the ensemble's fold systems)."""
    tuning = [sys_.threshold_videos] if thresholds else []
    tuning += [sys_.smoothing.get("videos", [])] + [x for m in members
                                                    for x in (m.threshold_videos, m.smoothing.get("videos", []))]
    return [p for t in tuning for p in t]


def scene_honesty(ws: store.Workspace, sys_: "System", members: Sequence["System"], seen: Mapping[str, set[str]],
                  selected: Mapping[str, set[str]]) -> None:
    """Set the ``scene_head`` and ``general_head`` rows of each scene of ``sys_.scenes`` (its heads and honesty,
    :func:`afwpipe.scene_scores.row_honesty`): scored on ``sys_``'s scored videos of the scene, the scene row
    uses the scene heads, the general row the general heads (one per fold for the ensemble)."""
    general = [m.heads[0] for m in members] if members else sys_.heads[:1]
    tuning = tuning_videos(sys_, members)
    for entry in sys_.scenes.values():
        scored = [v for v in entry["videos"] if v in set(sys_.eval_videos)]
        for row, heads in (("scene_head", entry["heads"]), ("general_head", general)):
            trained = {h: seen.get(h, set()) - selected.get(h, set()) for h in heads}
            fitted = {h: features_fitted_on(ws, h) for h in heads}
            entry[row] = row_honesty(scored, heads, trained, selected, tuning, fitted)


def features_fitted_on(ws: store.Workspace, head: str) -> dict[str, list[str]]:
    """encoder -> videos whose labels fine-tuned the features head ``head`` reads (``features_trained_on`` of its
    ``models/<head>/metrics.json``, written by the train step; ``{}`` for a head without fine-tuned features or
    without that file)."""
    path = layout.run_record(ws, head)
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("features_trained_on") or {})
    except (ValueError, AttributeError) as e:
        raise PostprocessError(f"{path}: unreadable ({e}); retrain the head") from None


def flag_fitted_features(ws: store.Workspace, systems: Sequence[System]) -> None:
    """Flag ``optimistic`` every system scored on a video whose labels fine-tuned an encoder its heads read
    (the features already saw that video's labels), naming the encoder and the videos."""
    for s in systems:
        for head in s.heads:
            for enc, names in features_fitted_on(ws, head).items():
                hit = sorted(set(names) & set(s.eval_videos))
                if hit:
                    _flag(s, f"features {enc} (head {head}) come from an encoder fine-tuned on {len(hit)} scored "
                             f"video(s): {', '.join(hit[:5])}{', …' if len(hit) > 5 else ''}")


def ensemble_system(track: str, folds: list[System], seen: set[str], split_val: set[str], labels: Mapping,
                    cfg: PostConfig) -> System | None:
    """Fold ensemble of a track over the videos every fold predicted.

    Scored (``eval_videos``) on the labelled videos no member head trained or early-stopped on (not in
    ``seen``). When there is none, on the labelled ``split_val`` videos (the track's official ``val``
    split) with ``optimistic`` set and ``optimistic_reason`` saying why.
    """
    common = [v for v in folds[0].videos if all(v in f.prob for f in folds[1:])]
    if not common:
        return None
    unseen = labelled([v for v in common if v not in seen], labels, track)
    ens = System(track, ENSEMBLE, common, unseen, {v: "+".join(f.models[v] for f in folds) for v in common},
                 heads=[h for f in folds for h in f.heads], seen_videos=sorted(seen & set(common)))
    if not unseen:
        val = labelled([v for v in common if v in split_val], labels, track)
        ens.eval_videos = val
        _flag(ens, f"members trained or early-stopped on every labelled video; scored on the {len(val)} "
                   f"{track.upper()} val video(s)")
    ens.smoothing = {k: x for k, x in folds[0].smoothing.items() if k not in ("videos", "scores")}
    param = cfg.tuned_smoothing(track)
    if param:  # each fold system's own choice
        ens.smoothing.update({param: {f.fold: f.smoothing[param] for f in folds}, "from": "fold systems"})
    if cfg.ensemble == "soft":
        tune_thresholds(ens, folds, labels, cfg)
    elif track == "au":
        ens.thresholds_from = f"fold votes ({'; '.join(dict.fromkeys(f.thresholds_from for f in folds))})"
    chain = ensemble_chain(track, [f.entry() for f in folds], ens.entry(), cfg)
    for v in common:
        raw = [f.raw[v] for f in folds]
        _, ens.before[v] = combine(track, raw, [decide(track, r) for r in raw], cfg.ensemble, cfg.au_vote_tie)
        ens.prob[v], ens.after[v] = chain.combine([(f.prob[v], f.after[v]) for f in folds])
        if any(v in f.general_after for f in folds):  # the general heads alone, for the scene's score
            ens.general_prob[v], ens.general_after[v] = chain.combine(
                [(f.general_prob.get(v, f.prob[v]), f.general_after.get(v, f.after[v])) for f in folds])
    for f in folds:
        for scene, e in f.scenes.items():
            mine = ens.scenes.setdefault(scene, {"heads": [], "videos": []})
            mine["heads"] += [h for h in e["heads"] if h not in mine["heads"]]
            mine["videos"] += [v for v in e["videos"] if v in ens.prob and v not in mine["videos"]]
    return ens


def ensemble_chain(track: str, members: Sequence[Mapping], ensemble: Mapping, cfg: PostConfig) -> EnsembleChain:
    """The chain of a track's fold ensemble from the ``post/systems.json`` entries of its fold systems
    (``members``, in fold order) and of the ensemble (its ``thresholds``), as postprocess and
    ``afwpipe analyze`` both run it."""
    th = ensemble.get("thresholds")
    return EnsembleChain(track, tuple(FoldChain.from_system(m, cfg.fill, f"{track}-{m['fold']}") for m in members),
                         cfg.ensemble, cfg.au_vote_tie, None if th is None else np.asarray(th, np.float64))


def _fold_key(item) -> tuple:
    """``official`` first, then numbered folds in order, then ``all``."""
    f = item[0]
    return (f != "official", f == ALL, int(f) if f.lstrip("-").isdigit() else 0, f)


def _write(ws: store.Workspace, s: System) -> None:
    arrays = {}
    for v in s.videos:
        arrays.update({f"{v}/prob": s.prob[v].astype(np.float32), f"{v}/before": s.before[v],
                       f"{v}/after": s.after[v]})
        if v in s.general_after:  # a scene head's video: the general head's decisions by the same chain
            arrays[f"{v}/general"] = s.general_after[v]
    with atomic.open_atomic(ws.post(s.name), "wb") as f:
        np.savez(f, **arrays)


def scored_frames(s: System, labels: Mapping) -> dict | None:
    """``{"before": score, "after": score}`` of system ``s`` on its labelled evaluation videos (in memory),
    or None when none has a valid label of its track."""
    names = labelled(s.eval_videos, labels, s.track)
    if not names:
        return None
    return before_after(s.track, {v: {"before": s.before[v], "after": s.after[v]} for v in names}, labels, names)


@dataclass
class PostSummary:
    systems: list[System]
    cfg: PostConfig
    seconds: float
    scores: dict = field(default_factory=dict)  # track -> fold -> {"before", "after"} (:func:`scored_frames`)

    def line(self) -> str:
        tracks = sorted({s.track for s in self.systems}, key=TRACKS.index)
        folds = list(dict.fromkeys(s.fold for s in self.systems if s.fold != ENSEMBLE))  # official first
        sm = ", ".join(self._smoothing(t) for t in tracks)
        notes: dict = {}
        for s in self.systems:
            notes.setdefault(s.track, {})[s.fold] = system_notes(
                {"optimistic": s.optimistic, "optimistic_reason": s.optimistic_reason,
                 "thresholds_from": s.thresholds_from})
        return (f"postprocess: {len(self.systems)} systems ({', '.join(tracks)} × folds {', '.join(folds)}"
                f" + {self.cfg.ensemble} ensemble); smoothing {sm}; AU thresholds {self.cfg.au_thresholds};"
                f" before -> after: {headline(self.scores, notes)} in {self.seconds:.1f} s")


    def _smoothing(self, track: str) -> str:
        """``va gaussian σ25``, ``au median w10``, ``expr none`` or, tuned, ``va gaussian σ tuned (official 3,
        0 8, 1 5)`` (the value each fold system chose)."""
        spec, param = self.cfg.smooth[track], SMOOTH_PARAM.get(self.cfg.smooth[track]["method"])
        if param is None:
            return f"{track} {spec['method']}"
        mark = "σ" if param == "sigma" else "w"
        if spec[param] != "tuned":
            return f"{track} {spec['method']} {mark}{spec[param]:g}"
        chosen = ", ".join(f"{s.fold} {s.smoothing[param]:g}" for s in self.systems
                           if s.track == track and s.fold != ENSEMBLE)
        return f"{track} {spec['method']} {mark} tuned ({chosen})"


def run_postprocess(ws: store.Workspace, cfg: PostConfig, progress: bool = True) -> PostSummary:
    """Post-process every track of every fold and their ensemble; write ``post/`` (module docstring).

    Raises:
        PostprocessError: no predictions, no head predicts any track, or a head's training videos are unknown
            (:func:`seen_videos`).
    """
    index = ws.read_index()
    if is_generic(index):  # a dataset's declared tasks pass through unchanged (afwpipe.task_post)
        return run_postprocess_declared(ws, index)
    t0 = time.perf_counter()
    records = read_predictions_index(ws)
    labelled = {r.name for r in index.records if any(r.labelled.values())}
    all_videos = sorted({v for r in records for v in r["videos"]} & labelled)
    labels = load_labels(ws, all_videos) if all_videos else {}
    seen_of = {r["name"]: seen_videos(ws, index, r) for r in records}
    selected_of = {r["name"]: selected_on(ws, index, r) for r in records}
    systems: list[System] = []
    for track in tqdm(TRACKS, desc="postprocess", unit="track", disable=not progress):
        by_fold = _records_by_fold(records, cfg.sources[track], track)
        if not by_fold:
            log.warning("postprocess: no %s head predicted; track %s skipped", cfg.sources[track], track)
            continue
        folds = [fold_system(ws, track, f, s["general"], s["scenes"], cfg)
                 for f, s in sorted(by_fold.items(), key=_fold_key)]
        for f in folds:
            choose_smoothing(f, folds, labels, cfg)
        for f in folds:
            finish(f, folds, labels, cfg)
        systems += folds
        split_val = {r.name for r in index.records if split_of(r, track) == "val"}
        seen = set().union(*(seen_of[h] for f in folds for h in f.heads))
        ens = ensemble_system(track, folds, seen, split_val, labels, cfg)
        for f in folds:
            flag_chosen_on_scored(f, [], selected_of)
            scene_honesty(ws, f, [], seen_of, selected_of)
        if ens is not None:
            flag_chosen_on_scored(ens, folds, selected_of)
            scene_honesty(ws, ens, folds, seen_of, selected_of)
            members = {h: seen_of[h] for f in folds if f.fold == ALL for h in f.heads}
            for reason in whole_dataset_members(ens.eval_videos, members):
                _flag(ens, reason)
            systems.append(ens)
    flag_fitted_features(ws, systems)
    if not systems:
        raise PostprocessError(f"{ws.predictions_index}: no head predicts any of {', '.join(TRACKS)} "
                           f"(sources {cfg.sources})")
    if ws.post_dir.exists():
        shutil.rmtree(ws.post_dir)
    ws.post_dir.mkdir(parents=True)
    meta, scores = {}, {}
    for s in systems:
        _write(ws, s)
        meta[s.name] = s.entry()
        r = scored_frames(s, labels)
        if r is not None:
            scores.setdefault(s.track, {})[s.fold] = r
    atomic.write_text(ws.post_systems, json.dumps({"afwpipe_version": __version__, "config": asdict(cfg),
                                           "systems": meta}, indent=1) + "\n")
    return PostSummary(systems, cfg, time.perf_counter() - t0, scores)


def main(ws: store.Workspace, cfg: PostConfig, *, progress: bool = True) -> PostSummary:
    """The postprocess step as ``afwpipe postprocess`` and ``python -m stages.postprocess`` run it:
    :func:`run_postprocess`, then its summary line (before -> after per track) printed."""
    summary = run_postprocess(ws, cfg, progress=progress)
    print(summary.line())
    print(f"post-processed predictions in {ws.post_dir}")
    return summary


__all__ = ["PostConfig", "PostSummary", "System", "combine", "decide", "ensemble_system", "flag_chosen_on_scored",
           "fold_system", "main", "run_postprocess", "selected_on", "smooth_track", "tune_thresholds"]
