"""Post-processing of the heads' raw per-frame outputs into per-track decisions, per fold and for the fold
ensemble (composes :mod:`afwpipe.post`; the order of the ABAW seeds, Netease Fuxi ABAW5/6 and USTC ABAW8).

A *system* is one track (``au``, ``expr``, ``va``) of one fold (``official``, ``0``, …) or of the ``ensemble``
of those folds. The heads that feed a track are the trained heads of task ``sources[track]`` (default the
track itself; ``mtl`` heads serve all three). For a fold system, per video:

1. *scene override*: when a scene head of the same task and fold predicted the video (the video belongs to
   its scene), its output replaces the general head's;
2. *nearest-frame fill*: frames without a face take the output of the nearest frame with one
   (:func:`post.fill_nearest`; ``present`` of the predictions, i.e. faces.zarr);
3. *smoothing* along time per track (:func:`post.smooth`: ``gaussian`` σ, ``median`` / ``mean`` window;
   defaults AU σ 5 / window 10, EXPR 25 / 25, VA 25 / 50, :data:`post.SMOOTH_SIGMA`; ``none`` skips it);
4. *decisions*: AU ``prob ≥ threshold`` with 0.5 or per-AU thresholds tuned on the fold's own validation
   frames on a grid (:func:`post.tune_au_thresholds`), EXPR argmax, VA values clipped to [-1, 1].

The ensemble covers the videos every fold system predicted (the ``val`` and ``test`` splits) and is scored
on the ``val`` split: ``vote`` takes the fold decisions (AU majority per AU with ``au_vote_tie`` on a tie,
EXPR majority class with ties to the highest summed probability, VA mean), ``soft`` averages the
processed probabilities / values and then thresholds (tuned on the ensemble's validation frames when
tuning is on) or takes the argmax. Numbered folds trained on some ``val`` split videos, so the ensemble's
validation scores are optimistic; its purpose is the test submission.

*Before* decisions (written beside the *after* ones for :mod:`afwpipe.evaluate`) are the general heads' raw
outputs with threshold 0.5 / argmax / raw VA (the ensemble's: the same combination rule over them) -- the
numbers the training stage reports as its validation score.

Output (:attr:`Workspace.post_dir`)::

    post/systems.json                        per system: track, fold, videos, eval_videos, thresholds,
                                             the head used per video, the settings
    post/<track>-<fold>.npz  <video>/prob    [T, C] float32 processed probabilities (AU 12, EXPR 8) or VA
                             <video>/before  decisions before post-processing
                             <video>/after   decisions after: AU [T, 12] int8 {0,1}, EXPR [T] int8 class,
                                             VA [T, 2] float32

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

import numpy as np
from tqdm import tqdm

from . import __version__, post, store
from .readers import load_labels
from .datasets.affwild2 import valid_mask
from .errors import PredictError
from .predict import read_prediction, read_predictions_index

log = logging.getLogger(__name__)

TRACKS = ("au", "expr", "va")
ENSEMBLE = "ensemble"
SMOOTH_CHOICES = post.SMOOTH_METHODS + ("none",)
ENSEMBLE_METHODS = ("vote", "soft")


def settings(cls, name: str, section: Mapping | None, overrides: Mapping) -> dict:
    """Keyword arguments of dataclass ``cls`` from params section ``name`` updated with the non-None
    ``overrides``.

    Raises:
        PredictError: a key that is not a field of ``cls`` (lists the known ones).
    """
    kw = dict(section or {})
    kw.update({k: v for k, v in overrides.items() if v is not None})
    bad = sorted(set(kw) - set(cls.__dataclass_fields__))
    if bad:
        raise PredictError(f"params {name}: unknown key(s) {', '.join(bad)}; "
                           f"known: {', '.join(sorted(cls.__dataclass_fields__))}")
    return kw


def _default_smooth() -> dict:
    return {t: {"method": "gaussian", "sigma": post.SMOOTH_SIGMA[t], "window": post.SMOOTH_WINDOW[t]} for t in TRACKS}


@dataclass
class PostConfig:
    """Post-processing settings (params.yaml ``postprocess``).

    Attributes:
        sources: track -> trained task whose heads predict it (``au``/``expr``/``va`` or ``mtl``).
        fill: nearest-frame fill of frames without a face.
        smooth: track -> ``{method: gaussian|median|mean|none, sigma: frames, window: frames}``; a missing or
            null σ / window takes :data:`post.SMOOTH_SIGMA` / :data:`post.SMOOTH_WINDOW`.
        au_thresholds: ``"tuned"`` (per AU on validation frames, on ``threshold_grid``) or a number.
        threshold_grid: candidate thresholds; None: :data:`post.AU_THRESHOLD_GRID` (0.10 … 0.90 by 0.05).
        ensemble: ``vote`` (hard voting of the fold decisions) or ``soft`` (mean of probabilities).
        au_vote_tie: AU vote when exactly half the folds say 1 (1 or 0).
        scenes: scene heads replace the general head for their videos.
    """

    sources: dict = field(default_factory=lambda: {t: t for t in TRACKS})
    fill: bool = True
    smooth: dict = field(default_factory=_default_smooth)
    au_thresholds: str | float = "tuned"
    threshold_grid: list | None = None
    ensemble: str = "vote"
    au_vote_tie: int = 1
    scenes: bool = True

    def __post_init__(self):
        sources = {t: t for t in TRACKS}
        sources.update(self.sources or {})
        self.sources = sources
        smooth = _default_smooth()
        for track, spec in (self.smooth or {}).items():
            if track not in TRACKS:
                raise PredictError(f"postprocess smooth: unknown track {track!r}; use {', '.join(TRACKS)}")
            smooth[track].update({k: v for k, v in (spec or {}).items() if v is not None})
        self.smooth = smooth
        for track, spec in self.smooth.items():
            if spec["method"] not in SMOOTH_CHOICES:
                raise PredictError(f"postprocess smooth.{track}.method: {spec['method']!r} is not one of "
                                   f"{', '.join(SMOOTH_CHOICES)}")
            spec["sigma"], spec["window"] = float(spec["sigma"]), int(spec["window"])
        if self.ensemble not in ENSEMBLE_METHODS:
            raise PredictError(f"postprocess ensemble: {self.ensemble!r} is not one of {', '.join(ENSEMBLE_METHODS)}")
        if self.au_thresholds != "tuned":
            try:
                self.au_thresholds = float(self.au_thresholds)
            except (TypeError, ValueError):
                raise PredictError(f"postprocess au_thresholds: {self.au_thresholds!r} is neither 'tuned' "
                                   f"nor a number") from None
        if self.threshold_grid is not None:
            self.threshold_grid = [float(x) for x in self.threshold_grid]
        self.au_vote_tie = int(self.au_vote_tie)

    @classmethod
    def from_params(cls, section: Mapping | None, **overrides) -> "PostConfig":
        """From params.yaml's ``postprocess`` section (unknown keys are an error), then ``overrides``."""
        return cls(**settings(cls, "postprocess", section, overrides))

    @property
    def grid(self) -> np.ndarray:
        return post.AU_THRESHOLD_GRID if self.threshold_grid is None else np.asarray(self.threshold_grid)


# -- per-video steps -----------------------------------------------------------------------------------
def smooth_track(values: np.ndarray, present: np.ndarray | None, track: str, cfg: PostConfig) -> np.ndarray:
    """Nearest-frame fill (when ``cfg.fill`` and ``present`` is given) then smoothing per ``cfg.smooth[track]``.

    Args:
        values: ``[T, C]`` raw outputs (AU / EXPR probabilities, VA values).
        present: ``[T]`` bool, a face was found.

    Returns:
        ``[T, C]`` float64.
    """
    out = np.asarray(values, dtype=np.float64)
    if cfg.fill and present is not None:
        out = post.fill_nearest(out, present)
    spec = cfg.smooth[track]
    if spec["method"] == "none":
        return out.copy()
    return post.smooth(out, spec["method"], sigma=spec["sigma"], window=spec["window"])


def decide(track: str, values: np.ndarray, thresholds: float | np.ndarray = 0.5) -> np.ndarray:
    """Decisions from probabilities / values: AU ``[T, 12]`` int8 (``prob ≥ threshold``), EXPR ``[T]`` int8
    (argmax), VA ``[T, 2]`` float32 clipped to [-1, 1]."""
    if track == "au":
        return post.binarize_au(values, thresholds).astype(np.int8)
    if track == "expr":
        return np.argmax(values, axis=1).astype(np.int8)
    return np.clip(values, -1.0, 1.0).astype(np.float32)


def combine(track: str, values: Sequence[np.ndarray], decisions: Sequence[np.ndarray], method: str = "vote",
            tie: int = 1, thresholds: float | np.ndarray = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Fold ensemble of one video.

    Args:
        values: per fold ``[T, C]`` probabilities (AU, EXPR) or VA values.
        decisions: per fold decisions (:func:`decide`), used by ``vote``.
        method: ``vote``: AU majority per AU (``tie`` when half say 1), EXPR majority class (ties to the
            highest summed probability, then the lowest index), VA mean; ``soft``: mean of ``values``, then
            ``thresholds`` (AU) / argmax (EXPR).

    Returns:
        ``(mean values [T, C] float64, decisions)``.
    """
    mean = post.soft_average(values)
    if method == "soft" or track == "va":
        return mean, decide(track, mean, thresholds)
    if track == "au":
        return mean, post.vote_au(decisions, tie=tie).astype(np.int8)
    return mean, post.vote_expr(decisions, probs=values, n_classes=mean.shape[1]).astype(np.int8)


def tune_thresholds(track: str, values: Mapping[str, np.ndarray], labels: Mapping, names, cfg: PostConfig):
    """AU thresholds for a system: ``cfg.au_thresholds`` as ``[12]``, or tuned on the frames of ``names``
    (:func:`post.tune_au_thresholds` on ``cfg.grid``). None for EXPR and VA."""
    if track != "au":
        return None
    n = next(iter(values.values())).shape[1] if values else 12
    if cfg.au_thresholds != "tuned" or not names:
        return np.full(n, 0.5 if cfg.au_thresholds == "tuned" else cfg.au_thresholds)
    prob = np.concatenate([values[v] for v in names])
    true = np.concatenate([labels[v]["au"] for v in names])
    return post.tune_au_thresholds(prob, true, cfg.grid)


# -- systems -------------------------------------------------------------------------------------------
@dataclass
class System:
    """One track of one fold (or of the ensemble) with its per-video outputs."""

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

    @property
    def name(self) -> str:
        return f"{self.track}-{self.fold}"


def _records_by_fold(records: list[dict], task: str, track: str) -> dict[str, dict]:
    """fold -> {"general": record, "scenes": [records]} of the heads of ``task``.

    Raises:
        PredictError: a head of ``task`` has no ``track`` output.
    """
    out: dict[str, dict] = {}
    for r in records:
        if r["task"] != task:
            continue
        if track not in r.get("tasks", [track]):
            raise PredictError(f"postprocess: head {r['name']} has no {track.upper()} output (outputs: "
                               f"{', '.join(r.get('tasks', []))}); set postprocess.sources.{track}")
        slot = out.setdefault(str(r["fold"]), {"general": None, "scenes": []})
        if r["scene"]:
            slot["scenes"].append(r)
        else:
            slot["general"] = r
    return {f: s for f, s in out.items() if s["general"] is not None}


def fold_system(ws: store.Workspace, track: str, fold: str, general: dict, scenes: list[dict],
                labels: Mapping, cfg: PostConfig) -> System:
    """Post-process one fold of one track (module docstring, steps 1-4)."""
    scene_of = {}
    if cfg.scenes:
        for r in scenes:
            for v in r["videos"]:
                scene_of.setdefault(v, r["name"])
    sys_ = System(track, fold, list(general["videos"]), list(general["val_videos"]), {})
    for v in sys_.videos:
        raw = read_prediction(ws, general["name"], v)
        sys_.raw[v] = raw[track]
        model = scene_of.get(v, general["name"])
        chosen = raw if model == general["name"] else read_prediction(ws, model, v)
        sys_.models[v] = model
        sys_.prob[v] = smooth_track(chosen[track], chosen.get("present"), track, cfg)
        sys_.before[v] = decide(track, sys_.raw[v])
    sys_.thresholds = tune_thresholds(track, sys_.prob, labels, _labelled(sys_.eval_videos, labels, track), cfg)
    for v in sys_.videos:
        sys_.after[v] = decide(track, sys_.prob[v], 0.5 if sys_.thresholds is None else sys_.thresholds)
    return sys_


def ensemble_system(track: str, folds: list[System], val_videos: set[str], labels: Mapping,
                    cfg: PostConfig) -> System | None:
    """Fold ensemble of a track over the videos every fold predicted; scored on ``val_videos``."""
    common = [v for v in folds[0].videos if all(v in f.prob for f in folds[1:])]
    if not common:
        return None
    ens = System(track, ENSEMBLE, common, [v for v in common if v in val_videos],
                 {v: "+".join(f.models[v] for f in folds) for v in common})
    for v in common:
        ens.prob[v] = post.soft_average([f.prob[v] for f in folds])
    if track == "au" and cfg.ensemble == "soft":
        ens.thresholds = tune_thresholds(track, ens.prob, labels, _labelled(ens.eval_videos, labels, track), cfg)
    th = 0.5 if ens.thresholds is None else ens.thresholds
    for v in common:
        raw = [f.raw[v] for f in folds]
        _, ens.before[v] = combine(track, raw, [decide(track, r) for r in raw], cfg.ensemble, cfg.au_vote_tie)
        _, ens.after[v] = combine(track, [f.prob[v] for f in folds], [f.after[v] for f in folds], cfg.ensemble,
                                  cfg.au_vote_tie, th)
    return ens


def _fold_key(item) -> tuple:
    """``official`` first, then numbered folds in order."""
    f = item[0]
    return (f != "official", int(f) if f.lstrip("-").isdigit() else 0, f)


def _labelled(names, labels: Mapping, track: str) -> list[str]:
    return [v for v in names if v in labels and valid_mask(labels[v][track], track).any()]


def _write(ws: store.Workspace, s: System) -> None:
    arrays = {}
    for v in s.videos:
        arrays.update({f"{v}/prob": s.prob[v].astype(np.float32), f"{v}/before": s.before[v],
                       f"{v}/after": s.after[v]})
    np.savez(ws.post(s.name), **arrays)


@dataclass
class PostSummary:
    systems: list[System]
    cfg: PostConfig
    seconds: float

    def line(self) -> str:
        tracks = sorted({s.track for s in self.systems}, key=TRACKS.index)
        folds = list(dict.fromkeys(s.fold for s in self.systems if s.fold != ENSEMBLE))  # official first
        sm = ", ".join(f"{t} {self.cfg.smooth[t]['method']}"
                       + {"gaussian": f" σ{self.cfg.smooth[t]['sigma']:g}", "none": ""}.get(
                           self.cfg.smooth[t]["method"], f" w{self.cfg.smooth[t]['window']}") for t in tracks)
        return (f"postprocess: {len(self.systems)} systems ({', '.join(tracks)} × folds {', '.join(folds)}"
                f" + {self.cfg.ensemble} ensemble); smoothing {sm}; AU thresholds {self.cfg.au_thresholds}"
                f" in {self.seconds:.1f} s")


def run_postprocess(ws: store.Workspace, cfg: PostConfig, progress: bool = True) -> PostSummary:
    """Post-process every track of every fold and their ensemble; write ``post/`` (module docstring).

    Raises:
        PredictError: no predictions, or no head predicts any track.
    """
    t0 = time.perf_counter()
    records = read_predictions_index(ws)
    index = ws.read_index()
    split_val = {r["name"] for r in index["videos"] if r.get("split") == "val"}
    labelled = {r["name"] for r in index["videos"] if any(r.get("labelled", {}).values())}
    all_videos = sorted({v for r in records for v in r["videos"]} & labelled)
    labels = load_labels(ws, all_videos) if all_videos else {}
    systems: list[System] = []
    for track in tqdm(TRACKS, desc="postprocess", unit="track", disable=not progress):
        by_fold = _records_by_fold(records, cfg.sources[track], track)
        if not by_fold:
            log.warning("postprocess: no %s head predicted; track %s skipped", cfg.sources[track], track)
            continue
        folds = [fold_system(ws, track, f, s["general"], s["scenes"], labels, cfg) for f, s in sorted(by_fold.items(), key=_fold_key)]
        systems += folds
        ens = ensemble_system(track, folds, split_val, labels, cfg)
        if ens is not None:
            systems.append(ens)
    if not systems:
        raise PredictError(f"{ws.predictions_index}: no head predicts any of {', '.join(TRACKS)} "
                           f"(sources {cfg.sources})")
    if ws.post_dir.exists():
        shutil.rmtree(ws.post_dir)
    ws.post_dir.mkdir(parents=True)
    meta = {}
    for s in systems:
        _write(ws, s)
        meta[s.name] = {"track": s.track, "fold": s.fold, "videos": s.videos, "eval_videos": s.eval_videos,
                        "thresholds": None if s.thresholds is None else [float(x) for x in s.thresholds],
                        "models": s.models}
    ws.post_systems.write_text(json.dumps({"afwpipe_version": __version__, "config": asdict(cfg),
                                           "systems": meta}, indent=1) + "\n")
    return PostSummary(systems, cfg, time.perf_counter() - t0)


def read_systems(ws: store.Workspace) -> dict:
    """``post/systems.json`` (``config`` and ``systems``).

    Raises:
        PredictError: there is none (run ``afwpipe postprocess``).
    """
    if not ws.post_systems.is_file():
        raise PredictError(f"{ws.post_systems}: no post-processed predictions; run `afwpipe postprocess`")
    return json.loads(ws.post_systems.read_text())


def read_post(ws: store.Workspace, system: str, name: str) -> dict[str, np.ndarray]:
    """``prob``, ``before`` and ``after`` of one video of one system.

    Raises:
        PredictError: the system or the video has no post-processed output.
    """
    path = ws.post(system)
    if not path.is_file():
        raise PredictError(f"{path}: no post-processed system {system!r}; run `afwpipe postprocess`")
    with np.load(path) as z:
        if f"{name}/after" not in z.files:
            raise PredictError(f"{path}: no post-processed predictions of video {name!r}")
        return {k: z[f"{name}/{k}"] for k in ("prob", "before", "after")}


__all__ = ["ENSEMBLE", "PostConfig", "PostSummary", "System", "TRACKS", "combine", "decide", "ensemble_system",
           "fold_system", "read_post", "read_systems", "run_postprocess", "smooth_track", "tune_thresholds"]
