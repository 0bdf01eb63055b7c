"""``afwpipe analyze``: a trained model on new videos, no annotations needed, one table per video.

Runs on the given videos exactly what the pipeline runs on a dataset, reusing its steps: probing
(:func:`afwpipe.video.probe_video`, the index's record format), the face step with the detector the model's
training workspace used (:class:`afwpipe.detect.FaceWorker`; its ``faces.zarr`` identity, else params
``detect``), the encoders the heads were trained on (:class:`afwpipe.extract.EncoderWorker`; each encoder's
identity must equal the one in the checkpoint, views included; the ``vad`` store when a head was trained with
``train.speech_gate``), the heads as ``predict`` runs them (:func:`afwpipe.predict.head_outputs`: overlapping
clips averaged per frame, the checkpoint's speech gate, the mean over the system's ``tta`` views when
``predict.tta`` was on) and the same per-video chain as post-processing (:mod:`afwpipe.chain`: fill, smoothing
with each fold system's σ / window -- the tuned one under ``sigma: tuned`` --, decisions with its AU
thresholds, the fold vote for the ensemble), every choice read from ``post/systems.json`` of the training
workspace.

``--model`` is a model folder (``work/sample/models/au-tmf-official``: its tracks, with the thresholds of the
fold system that head feeds, else 0.5 with a note) or a system name (``official``, ``ensemble``, a fold
number) of the current dataset's workspace: every track of ``post/systems.json`` (heads per
``postprocess.sources``).

Workspace: ``<out>/.work/`` (``index.json``, ``faces.zarr``, ``audio.zarr``, ``features/``, ``done.json``), reused
on a rerun: complete videos are skipped by detect and extract, and a video whose table was written with the
same model and options is skipped altogether.

Table (one per video, ``<out>/<video stem>.csv``, or ``.parquet`` with ``format: parquet``), one row per
decoded frame, columns in this order:

=============================  =========  =====================================================================
column                         dtype      meaning
=============================  =========  =====================================================================
``frame``                      int64      0-based decoded frame index
``time``                       float64    seconds from the first frame (container timestamps, faces.zarr ``times``)
``present``                    bool       the target face was found in this frame
``x1``, ``y1``, ``x2``, ``y2`` float32    face box in pixels of the displayed frame (NaN without a face)
``<AU>_prob``, ``<AU>``        float32,   per AU of :data:`afwpipe.labels.AU_NAMES` (``AU1`` … ``AU26``): the
                               int8       post-processed probability, then the 0/1 decision (AU thresholds)
``<Class>_prob``               float32    per EXPR class of :data:`afwpipe.labels.EXPR_NAMES` (``Neutral`` … ``Other``)
``expr``, ``expr_index``       str, int8  the EXPR class (name, index 0..7)
``valence``, ``arousal``       float32    VA in [-1, 1]
=============================  =========  =====================================================================

Columns of a track the model does not predict are absent. Frames without a face carry the outputs of the
nearest frame with one (fill), as in post-processing; a video without any face still gets its rows (from the
placeholder crops and the audio) and a note. Beside each table: ``<stem>.timeline.png``
(:func:`afwpipe.timeline.plot_timeline`) and with ``overlay``, ``<stem>.overlay.mp4``
(:func:`afwpipe.overlay.write_overlay`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from . import atomic, store
from .config import FromParams
from .datasets.affwild2 import VIDEO_EXTENSIONS
from .detect import DetectConfig, FaceWorker
from .device import resolve_device
from .errors import AfwpipeError, ConfigError, EncoderError, VideoError, WeightsError
from .extract import EncoderWorker, ExtractConfig
from .chain import SMOOTH_PARAM, EnsembleChain, FoldChain
from .clips import DEFAULT_CACHE_BYTES
from .clips.gate import VAD
from .inference import load_model
from .labels import AU_NAMES, EXPR_NAMES, HEAD_TASKS, TRACKS, VA_NAMES
from .postprocess import PostConfig
from .layout import checkpoint, model_dir, parse_model_name
from .predict import head_outputs
from .readers import read_systems
from .records import Checkpoint, IndexFile, IndexRecord
from .results import VideoResult
from .runner import run_videos
from .store import ENSEMBLE
from .video import probe_video
from .views import FULL

log = logging.getLogger(__name__)

FORMATS = ("csv", "parquet")


@dataclass
class AnalyzeConfig(FromParams):
    """Options of ``afwpipe analyze`` (params.yaml section ``analyze``; every default here equals params.yaml).

    Attributes:
        model: a model folder (holding ``model.pt``) or a system of the dataset's ``post/systems.json``:
            ``official``, ``ensemble`` or a fold number.
        out: output folder; None: ``<workdir>/<dataset>/analyze``.
        format: ``csv`` or ``parquet`` (pyarrow).
        timeline: write ``<stem>.timeline.png``.
        overlay: write ``<stem>.overlay.mp4`` (box and EXPR / VA drawn, audio kept).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` for detector, encoders and heads.
        batch_size: clips per head forward pass.
    """

    params_section: ClassVar[str] = "analyze"

    model: str = "ensemble"
    out: str | None = None
    format: str = "csv"
    timeline: bool = True
    overlay: bool = False
    device: str = "auto"
    batch_size: int = 32

    def __post_init__(self):
        self.model, self.batch_size = str(self.model), int(self.batch_size)
        if self.format not in FORMATS:
            raise ConfigError(f"analyze format: {self.format!r} is not one of {', '.join(FORMATS)}")


# -- the model: heads, thresholds and post-processing of one system per track -----------------------------------
@dataclass
class Member:
    """One head feeding a track, with its fold system's choices: AU thresholds (None: EXPR / VA, or 0.5),
    ``smoothing`` (the system's ``post/systems.json`` entry: method and the σ / window used; None: params
    ``postprocess.smooth``, which must then give a number) and ``views`` (the TTA views its outputs are
    averaged over; None: the view it was trained on)."""

    model: Path
    fold: str
    thresholds: np.ndarray | None = None
    smoothing: dict | None = None
    views: list[str] | None = None

    def chain(self, track: str, post: PostConfig) -> FoldChain:
        """The member's per-video chain (:class:`afwpipe.chain.FoldChain`).

        Raises:
            ConfigError: no system smoothing and params give ``tuned`` (nothing was chosen for this head).
        """
        smoothing = self.smoothing
        if smoothing is None:
            spec = post.smooth[track]
            param = SMOOTH_PARAM.get(spec["method"])
            if param and spec[param] == "tuned":
                raise ConfigError(f"{self.model}: postprocess smooth.{track}.{param} is tuned but no system of "
                                  f"post/systems.json chose one for this head; run `afwpipe postprocess`")
            smoothing = {"method": spec["method"], **({param: spec[param]} if param else {})}
        return FoldChain.from_system({"track": track, "smoothing": smoothing, "thresholds": self.thresholds},
                                     post.fill, f"{track}-{self.fold}")


@dataclass
class TrackPlan:
    """How one track is predicted: one member (a fold system or a model folder) or a fold ensemble."""

    track: str
    system: str
    members: list[Member]
    ensemble: bool = False
    thresholds: np.ndarray | None = None  # soft ensemble's AU thresholds


@dataclass
class ModelPlan:
    """What ``--model`` resolves to: the training workspace, a plan per track, the post-processing settings."""

    spec: str
    source: store.Workspace
    tracks: dict[str, TrackPlan]
    post: PostConfig
    notes: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[Path]:
        """Every head folder, once, in track order."""
        return list(dict.fromkeys(m.model for p in self.tracks.values() for m in p.members))

    def fingerprint(self) -> dict:
        """What a written table depends on: heads (and their checkpoints' mtimes), thresholds, settings."""
        return {"spec": self.spec, "post": asdict(self.post),
                "models": {str(m): checkpoint(m).stat().st_mtime_ns for m in self.models},
                "tracks": {t: {"system": p.system, "ensemble": p.ensemble,
                               "thresholds": [None if m.thresholds is None else m.thresholds.tolist()
                                              for m in p.members],
                               "smoothing": [m.smoothing for m in p.members], "views": [m.views for m in p.members]}
                           for t, p in self.tracks.items()}}

    def views(self, model: Path) -> list[str] | None:
        """The TTA views of head ``model`` (None: its trained view).

        Raises:
            ConfigError: two systems fed by the head averaged it over different views.
        """
        seen = {tuple(m.views) if m.views else None for p in self.tracks.values() for m in p.members
                if m.model == model}
        if len(seen) > 1:
            raise ConfigError(f"head {model.name} was predicted with different TTA views in {self.source.post_systems}: "
                              f"{sorted(map(str, seen))}; rerun `afwpipe predict` and `afwpipe postprocess`")
        views = next(iter(seen), None)
        return list(views) if views else None


def _member(path: Path, fold: str, system: dict) -> Member:
    """A head feeding a fold system of ``post/systems.json`` with that system's choices."""
    return Member(path, fold, _thresholds(system), system.get("smoothing"), system.get("tta"))


def _thresholds(system: dict | None) -> np.ndarray | None:
    th = (system or {}).get("thresholds")
    return None if th is None else np.asarray(th, np.float64)


def _general_head(ws: store.Workspace, system: dict, name: str) -> Path:
    """The general (not scene) head of a fold system of ``post/systems.json``."""
    refs = [parse_model_name(m) for m in set(system["models"].values())]
    heads = sorted(r.name for r in refs if r is not None and r.scene is None)
    if len(heads) != 1:
        raise ConfigError(f"{ws.post_systems}: system {name} has no single general head ({heads})")
    return model_dir(ws, heads[0])


def _from_model_dir(path: Path, params: dict) -> ModelPlan:
    ref = parse_model_name(path.name, path)
    if ref is None:
        raise ConfigError(f"{path}: a model folder is named <task>-<head>-<fold>[-<scene>] (e.g. au-tmf-official)")
    source = store.Workspace(path.resolve().parent.parent)
    notes = []
    systems = {}
    if source.post_systems.is_file():
        meta = read_systems(source)
        post, systems = PostConfig(**meta["config"]), meta["systems"]
    else:
        post = PostConfig.from_params(params.get("postprocess"))
        notes.append(f"no {source.post_systems}: post-processing of params postprocess, AU thresholds 0.5")
    tracks = {}
    for track in HEAD_TASKS[ref.task]:
        system = systems.get(f"{track}-{ref.fold}")
        if system is None or path.name not in system["models"].values():
            th = np.full(len(AU_NAMES), 0.5) if track == "au" else None
            if track == "au" and systems:
                notes.append(f"{path.name} feeds no AU system of {source.post_systems}; AU thresholds 0.5")
            member = Member(path, str(ref.fold), th)
        else:
            member = _member(path, str(ref.fold), system)
        tracks[track] = TrackPlan(track, path.name, [member])
    return ModelPlan(str(path), source, tracks, post, notes)


def _from_system(name: str, ws: store.Workspace) -> ModelPlan:
    meta = read_systems(ws)
    systems = meta["systems"]
    post = PostConfig(**meta["config"])
    have = sorted({s["fold"] for s in systems.values()})
    if name not in have:
        raise ConfigError(f"--model {name}: neither a model folder (holding model.pt) nor a system of "
                          f"{ws.post_systems} (systems: {', '.join(have)})")
    tracks = {}
    for track in TRACKS:
        key = f"{track}-{name}"
        if key not in systems:
            continue
        if name != ENSEMBLE:
            tracks[track] = TrackPlan(track, key, [_member(_general_head(ws, systems[key], key), name, systems[key])])
            continue
        folds = [s["fold"] for k, s in systems.items() if s["track"] == track and s["fold"] != ENSEMBLE]
        members = [_member(_general_head(ws, systems[f"{track}-{f}"], f"{track}-{f}"), f, systems[f"{track}-{f}"])
                   for f in folds]
        tracks[track] = TrackPlan(track, key, members, ensemble=True, thresholds=_thresholds(systems[key]))
    return ModelPlan(name, ws, tracks, post)


def resolve_model(spec: str, ws: store.Workspace, params: dict | None = None) -> ModelPlan:
    """``--model``: a model folder (``…/models/<task>-<head>-<fold>``, holding ``model.pt``) or a system name
    (``official``, ``ensemble``, a fold number) of ``ws``'s ``post/systems.json``.

    Raises:
        ConfigError: neither a model folder nor a known system (the message lists the systems).
        PostprocessError: a system name but ``ws`` has no ``post/systems.json`` (run ``afwpipe postprocess``).
    """
    path = Path(spec)
    if checkpoint(path).is_file():
        return _from_model_dir(path, params or {})
    if path.is_dir() or "/" in spec:
        raise ConfigError(f"--model {spec}: no model.pt in that folder (a model folder is "
                          f"<workdir>/<dataset>/models/<task>-<head>-<fold>)")
    return _from_system(spec, ws)


def _store_identity(path: Path) -> dict | None:
    """``encoder_config`` of the first complete video of feature store ``path`` (None: no such video)."""
    names = store.complete_names(path) if Path(path).is_dir() else []
    return store.open_store(path, "r")[names[0]].attrs.get("encoder_config") if names else None


def _faces_identity(source: store.Workspace) -> dict | None:
    """The detector identity of the first complete video of ``source``'s ``faces.zarr`` (None: no video)."""
    names = store.complete_names(source.faces)
    if not names:
        return None
    return store.open_store(source.faces, "r")[names[0]].attrs.get("identity") or {}


def detector_config(source: store.Workspace, params: dict, device: str) -> DetectConfig:
    """The detect config of the training workspace: detector and crop size from its ``faces.zarr`` identity
    (the first complete video), the rest (batch size, weights) from params ``detect``. A workspace whose faces
    came from ``cropped_aligned`` images gets the params' detector at the same crop size."""
    cfg = DetectConfig.from_params(params.get("detect"), device=device)
    ident = _faces_identity(source)
    if ident is None:
        log.warning("%s: no complete video; detector of params detect (%s)", source.faces, cfg.detector)
        return cfg
    if ident.get("detector") in (None, "cropped_aligned"):
        return replace(cfg, use_cropped=False, size=int(ident.get("size", cfg.size)))
    return replace(cfg, detector=ident["detector"], size=int(ident["size"]), use_cropped=False)


def encoder_workers(ws: store.Workspace, plan: ModelPlan, params: dict, device: str,
                    progress: bool) -> dict[str, EncoderWorker]:
    """One :class:`EncoderWorker` per encoder the plan's heads were trained on (with the views the checkpoints
    record), each checked against the checkpoints, plus ``vad`` when a head was trained with
    ``train.speech_gate`` (checked against the training workspace's vad store when it has one).

    Raises:
        WeightsError: an encoder's weights are missing (names the model and says how to get them).
        EncoderError: an encoder's identity differs from the checkpoint's (names the differing keys).
    """
    wanted: dict[str, tuple[str, dict]] = {}
    gated = None
    for model in plan.models:
        ckpt = Checkpoint.load(checkpoint(model))
        if ckpt.config.get("speech_gate") and gated is None:
            gated = model.name
        for enc in ckpt.encoders:
            seen = wanted.setdefault(enc["name"], (model.name, enc["encoder_config"]))
            if seen[1] != enc["encoder_config"]:
                raise EncoderError(f"heads {seen[0]} and {model.name} were trained on different {enc['name']} "
                                   f"features; analyze one of them")
    if gated is not None and VAD not in wanted:
        want = _store_identity(plan.source.features(VAD))
        wanted[VAD] = (gated, want)
    workers = {}
    for name, (model, want) in wanted.items():
        cfg = ExtractConfig.from_params(params.get("extract"), encoder=name, device=device,
                                        views=list((want or {}).get("views", [FULL])))
        try:
            worker = EncoderWorker(ws, cfg, progress)
        except WeightsError as e:
            raise WeightsError(f"model {model} needs encoder {name}: {e}") from None
        have = worker.identity()
        if want is not None and have != want:
            keys = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            raise EncoderError(f"model {model} was trained on {name} with {', '.join(f'{k}={want.get(k)!r}' for k in keys)} "
                               f"but this {name} has {', '.join(f'{k}={have.get(k)!r}' for k in keys)}; set params "
                               f"extract.weights.{name} to the training weights")
        workers[name] = worker
    return workers


# -- videos ------------------------------------------------------------------------------------------------------
def find_inputs(inputs) -> list[Path]:
    """Video files of ``inputs`` (files as given; a folder: its ``.mp4/.avi/.mov/.mkv`` files, not recursive).

    Raises:
        VideoError: an input does not exist, or a folder holds no video.
    """
    out = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise VideoError(f"{p}: no video file ({', '.join(VIDEO_EXTENSIONS)}) in this folder")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise VideoError(f"{p}: no such file or folder")
    return out


def _stamp(path: Path) -> dict:
    """What says a video file is unchanged: path, size, mtime, inode and ctime (as git's index does: ctime
    changes on every write and cannot be set back, so a rewrite in place that keeps size and mtime, e.g.
    ``cp -p`` or ``rsync -t``, still shows; a touched but unchanged file is only probed again)."""
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino,
            "ctime_ns": st.st_ctime_ns}


def index_videos(ws: store.Workspace, paths: list[Path]) -> tuple[list[IndexRecord], list[VideoResult]]:
    """Probe ``paths`` into ``ws/index.json`` records (the index's format, no labels, split None); a video
    probed before with the same path, size, mtime, inode and ctime (:func:`_stamp`) keeps its record, another
    file under a known name (or the same file rewritten) has that name's stored faces, audio and features
    removed. Names are file stems.

    Returns:
        ``(records, failures)``: an unreadable video or a second file of an existing stem is a failure.
    """
    old = ws.read_index().by_name if ws.index.is_file() else {}
    records, failures = [], []
    for path in paths:
        name, stamp = path.stem, _stamp(path)
        if any(r.name == name for r in records):
            failures.append(VideoResult(name, error=f"{path}: a second video named {name}; rename one"))
            continue
        if name in old and old[name].stamp == stamp:
            records.append(old[name])
            continue
        if name in old:  # another file under this name (or the file changed): its stored video groups are stale
            for root in [ws.faces, ws.audio, *sorted(ws.features_dir.glob("*.zarr"))]:
                shutil.rmtree(Path(root) / name, ignore_errors=True)
        try:
            info = probe_video(path)
        except AfwpipeError as e:
            log.error("%s", e)
            failures.append(VideoResult(name, error=str(e)))
            continue
        records.append(IndexRecord(name=name, video=name, path=str(path), side=None, splits=dict.fromkeys(TRACKS),
                                   split=None, fold=-1, **{k: v for k, v in info.to_dict().items() if k != "path"},
                                   stamp=stamp))
    merged = {**old, **{r.name: r for r in records}}
    if merged != old:  # a rerun on the same files rewrites nothing
        ws.root.mkdir(parents=True, exist_ok=True)
        IndexFile(dataset="analyze", records=list(merged.values())).save(ws.index)  # atomic: IndexFile.save
    return records, failures


# -- per-video outputs -------------------------------------------------------------------------------------------
def track_outputs(plan: TrackPlan, raw: dict[Path, np.ndarray], present: np.ndarray,
                  post: PostConfig) -> tuple[np.ndarray, np.ndarray]:
    """Post-processed ``(values [T, C] float64, decisions)`` of one track of one video by the chain
    post-processing runs (:mod:`afwpipe.chain`): each member's raw outputs through its fold system's chain
    (:meth:`Member.chain`); an ensemble combined (vote or soft, with the ensemble's thresholds)."""
    chains = [m.chain(plan.track, post) for m in plan.members]
    if not plan.ensemble:
        return chains[0].run(raw[plan.members[0].model], present)
    ens = EnsembleChain(plan.track, tuple(chains), post.ensemble, post.au_vote_tie, plan.thresholds)
    return ens.run([raw[m.model] for m in plan.members], present)


def frame_table(times: np.ndarray, present: np.ndarray, boxes: np.ndarray,
                outputs: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """The table of the module docstring from per-frame arrays: ``times [T]`` s, ``present [T]``, ``boxes
    [T, 4]`` px and per track ``(values, decisions)`` of :func:`track_outputs`."""
    n = len(times)
    cols = {"frame": np.arange(n, dtype=np.int64), "time": np.asarray(times, np.float64),
            "present": np.asarray(present, bool)}
    for j, c in enumerate(("x1", "y1", "x2", "y2")):
        cols[c] = np.asarray(boxes[:, j], np.float32)
    if "au" in outputs:
        prob, dec = outputs["au"]
        for j, au in enumerate(AU_NAMES):
            cols[f"{au}_prob"] = prob[:, j].astype(np.float32)
            cols[au] = dec[:, j].astype(np.int8)
    if "expr" in outputs:
        prob, dec = outputs["expr"]
        for j, c in enumerate(EXPR_NAMES):
            cols[f"{c}_prob"] = prob[:, j].astype(np.float32)
        cols["expr"] = np.asarray(EXPR_NAMES, dtype=object)[dec]
        cols["expr_index"] = dec.astype(np.int8)
    if "va" in outputs:
        _, dec = outputs["va"]
        for j, c in enumerate(VA_NAMES):
            cols[c] = dec[:, j].astype(np.float32)
    return pd.DataFrame(cols)


def write_table(table: pd.DataFrame, path: Path) -> Path:
    """``table`` as CSV (``.csv``) or Parquet (``.parquet``, pyarrow)."""
    if path.suffix == ".parquet":
        with atomic.replacing(path) as tmp:
            table.to_parquet(tmp, index=False)
    else:
        with atomic.open_atomic(path, "w", newline="") as f:
            table.to_csv(f, index=False)
    return path


def read_table(path: Path) -> pd.DataFrame:
    """A table written by :func:`write_table` with its documented dtypes (CSV loses int8 / float32 / str)."""
    if Path(path).suffix == ".parquet":
        return pd.read_parquet(path)
    t = pd.read_csv(path, keep_default_na=False, na_values={c: ["", "NaN", "nan"] for c in ("x1", "y1", "x2", "y2")})
    dtypes = {c: (np.int8 if c in AU_NAMES or c == "expr_index" else np.float32) for c in t.columns
              if c in AU_NAMES or c == "expr_index" or c.endswith("_prob") or c in VA_NAMES + ("x1", "y1", "x2", "y2")}
    return t.astype({**dtypes, "frame": np.int64, "time": np.float64, "present": bool})


@dataclass
class VideoOutput:
    name: str
    frames: int = 0
    present: int = 0
    files: list[Path] = field(default_factory=list)
    skipped: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class AnalyzeSummary:
    """Per-video outputs of a run, its seconds and notes; :meth:`line` is the summary printed."""

    out: Path
    videos: list[VideoOutput] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[VideoOutput]:
        return [v for v in self.videos if v.error]

    def line(self) -> str:
        done = [v for v in self.videos if not v.skipped and not v.error]
        frames = sum(v.frames for v in done)
        rate = f" ({frames / self.seconds:.1f} frames/s)" if frames and self.seconds else ""
        return (f"analyze: {len(done)} videos analysed, {sum(v.skipped for v in self.videos)} already complete, "
                f"{len(self.failures)} failed; {frames} frames in {self.seconds:.1f} s{rate}; tables in {self.out}")


def _render(name: str, table: pd.DataFrame, rec: IndexRecord, out: Path, cfg: AnalyzeConfig, res: VideoOutput) -> None:
    """Timeline PNG and overlay MP4 by the render modules (``afwpipe.timeline``, ``afwpipe.overlay``)."""
    if cfg.timeline:
        try:
            from .timeline import plot_timeline
        except ImportError:
            res.notes.append("no timeline: afwpipe.timeline is not installed")
        else:
            res.files.append(Path(plot_timeline(table, out / f"{name}.timeline.png", title=name)))
    if cfg.overlay:
        try:
            from .overlay import write_overlay
        except ImportError:
            res.notes.append("no overlay: afwpipe.overlay is not installed")
            return
        path = out / f"{name}.overlay.mp4"
        try:
            write_overlay(rec.path, table, path)
        except (AfwpipeError, OSError) as e:  # the table is written; the video is reported, the others go on
            res.error = f"{path.name}: {e}"
            return
        res.files.append(path)


def _renderers() -> list[str]:
    """The render modules present (``timeline``, ``overlay``): a table written without one is redone with it."""
    return [m for m in ("timeline", "overlay") if importlib.util.find_spec(f"{__package__}.{m}") is not None]


def run_analyze(inputs, plan: ModelPlan, cfg: AnalyzeConfig, out: Path, params: dict | None = None,
                progress: bool = True) -> AnalyzeSummary:
    """Analyse the videos of ``inputs`` (files or folders) with ``plan`` (:func:`resolve_model`) into ``out``.

    Raises:
        VideoError: an input does not exist (nothing is done).
        WeightsError, EncoderError: the heads' encoders cannot be built as trained (nothing is done).
    """
    t0 = time.perf_counter()
    params = params or {}
    out = Path(out)
    ws = store.Workspace(out / ".work")
    summary = AnalyzeSummary(out, notes=list(plan.notes))
    paths = find_inputs(inputs)
    device = resolve_device(cfg.device)
    recs, failed = index_videos(ws, paths)
    summary.videos += [VideoOutput(f.name, error=f.error) for f in failed]
    done_path = ws.root / "done.json"
    done = json.loads(done_path.read_text()) if done_path.is_file() else {}
    key = {"model": plan.fingerprint(), "format": cfg.format, "timeline": cfg.timeline, "overlay": cfg.overlay,
           "renderers": _renderers()}
    todo = []
    for r in recs:
        last = dict(done.get(r.name) or {})
        files = last.pop("files", [])
        if last == {**key, "stamp": r.stamp} and files and all((out / f).is_file() for f in files):
            summary.videos.append(VideoOutput(r.name, r.n_frames, skipped=True))
        else:
            todo.append(r)
    if not todo:
        summary.seconds = time.perf_counter() - t0
        return summary
    encoders = encoder_workers(ws, plan, params, device, progress)  # before any detection: fail fast
    errors: dict[str, str] = {}
    faces = FaceWorker(ws, detector_config(plan.source, params, device), progress)
    trained_faces = _faces_identity(plan.source)
    if trained_faces is not None and trained_faces != faces.identity():
        summary.notes.append(f"detector {faces.identity()} differs from the training workspace's {trained_faces}")
    results = run_videos(lambda: faces, todo, "detect", progress)
    ok = [r for r, res in zip(todo, results) if not res.error]
    for worker in encoders.values():
        results += run_videos(lambda: worker, ok, f"extract-{worker.cfg.encoder}", progress)
    for res in results:
        if res.error:
            errors.setdefault(res.name, res.error)
    names = [r.name for r in todo if r.name not in errors]
    raw: dict[str, dict[str, dict[Path, np.ndarray]]] = {n: {} for n in names}
    for model in plan.models if names else []:
        head, ckpt = load_model(checkpoint(model), device)
        for n, outputs in head_outputs(ws, head, ckpt, names, device, cfg.batch_size, model.name, plan.views(model),
                                       DEFAULT_CACHE_BYTES):
            for track, arr in outputs.items():
                raw[n].setdefault(track, {})[model] = arr
    out.mkdir(parents=True, exist_ok=True)
    faces_root = store.open_store(ws.faces, "r") if names else None
    for r in todo:
        name = r.name
        if name in errors:
            summary.videos.append(VideoOutput(name, error=errors[name]))
            continue
        g = faces_root[name]
        present = np.asarray(g["present"][...], bool)
        outputs = {t: track_outputs(p, raw[name][t], present, plan.post) for t, p in plan.tracks.items()}
        table = frame_table(g["times"][...], present, g["boxes"][...], outputs)
        res = VideoOutput(name, len(table), int(present.sum()))
        if not present.any():
            res.notes.append("no face found in any frame: present=False everywhere, outputs from the "
                             "placeholder crops and the audio")
        res.files.append(write_table(table, out / f"{name}.{cfg.format}"))
        _render(name, table, r, out, cfg, res)
        summary.videos.append(res)
        if res.error:
            continue
        done[name] = {**key, "stamp": r.stamp, "files": [p.name for p in res.files]}
        atomic.write_text(done_path, json.dumps(done, indent=1) + "\n")
    summary.seconds = time.perf_counter() - t0
    return summary


def main(inputs, cfg: AnalyzeConfig, ws: store.Workspace, params: dict | None = None, *,
         progress: bool = True) -> int:
    """``afwpipe analyze``: resolve ``cfg.model`` in the dataset workspace ``ws``, :func:`run_analyze` into
    ``cfg.out`` (default ``<ws>/analyze``), print a line per video and the summary. Returns the exit code
    (1 when a video failed)."""
    plan = resolve_model(cfg.model, ws, params)
    out = Path(cfg.out) if cfg.out else ws.root / "analyze"
    summary = run_analyze(inputs, plan, cfg, out, params, progress)
    systems = ", ".join(f"{t.upper()} {p.system}" for t, p in plan.tracks.items())
    print(f"model {plan.spec}: {systems} (trained in {plan.source.root})")
    for note in summary.notes:
        print(f"note: {note}")
    for v in summary.videos:
        if v.error:
            print(f"FAILED {v.name}: {v.error}")
        elif v.skipped:
            print(f"{v.name}: {v.frames} frames, already complete (skipped)")
        else:
            print(f"{v.name}: {v.frames} frames, face in {v.present}; " + ", ".join(p.name for p in v.files))
        for note in v.notes:
            print(f"note: {v.name}: {note}")
    print(summary.line())
    return 1 if summary.failures else 0


__all__ = ["AnalyzeConfig", "AnalyzeSummary", "ModelPlan", "TrackPlan", "detector_config", "encoder_workers",
           "find_inputs", "frame_table", "index_videos", "main", "read_table", "resolve_model", "run_analyze",
           "track_outputs", "write_table"]
