"""The describe step: a vision-language model (``afwpipe.vlm``) describes the person's visible behaviour in every
segment of every video; the text lands in ``descriptions/<vlm>.zarr/<name>/{text,start,end}``
(layout: ``afwpipe.descriptions``), which ``afwpipe extract-text`` with ``text.source: descriptions`` turns into
per-frame features.

Segments: the video's time from its first decoded frame (faces.zarr ``times``) to the end of its last frame
(``afwpipe.encoders.align.frame_spans``) cut into ``segment_s``-second pieces ``[k s, (k+1) s)``, the last one
ending with the video. A frame belongs to the segment holding its start time. Frames shown: ``frames_per_segment``
of the segment's candidate frames, evenly spaced (the centre of each of that many equal parts; all of them when
there are fewer). ``input: crops``: the aligned face crops of faces.zarr, candidates the frames with a detected
face (``present``); a segment without a face gets the text ``""`` and no model call. ``input: frames``: the
video's full decoded frames (PyAV), every frame a candidate, scaled so the longer side is at most ``frame_side``
pixels (the processor then applies its own resizing).

This follows the RAS team's ABAW10 valence-arousal entry, which described the person's behaviour per video
segment with Qwen3-VL-4B-Instruct and embedded the descriptions as text (docs/describe.md). Completeness and
restart follow ``afwpipe.store``: a video complete with the same ``describe_config`` is skipped; one failing
video never stops the others and is listed in ``describe_failures_<vlm>.json``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import ClassVar

import numpy as np

from . import layout, store
from .config import FromParams
from .crop_codec import read_frames
from .descriptions import Description, write_descriptions
from .device import resolve_device
from .encoders.align import frame_spans
from .errors import AfwpipeError, DescribeError, VideoError
from .results import RunSummary, VideoResult
from .runner import run_videos, scheduler_address
from .video import iter_frames
from .vlm import VLMS, create_vlm
from .records import IndexRecord

log = logging.getLogger(__name__)

INPUTS = ("crops", "frames")
DEFAULT_PROMPT = ("These images are consecutive moments of one short video segment. Describe the visible behaviour "
                  "of the person: facial expression, gaze, head and body movement, and hand gestures. Answer in one "
                  "or two sentences.")


@dataclass
class DescribeConfig(FromParams):
    """Options of the describe step (``params.yaml`` section ``describe``; defaults equal params.yaml).

    Attributes:
        vlm: ``hf:<repo_id>`` (chosen per run: ``--vlm`` or the DVC foreach item of ``describe.vlms``).
        weights: None (hub cache of ``<repo_id>``), a ``save_pretrained`` folder, or ``"random"`` (tests); in
            params.yaml ``describe.weights`` maps VLM names to these values.
        input: ``crops`` (aligned face crops of faces.zarr) or ``frames`` (full decoded video frames).
        segment_s: segment length, seconds (> 0).
        frames_per_segment: images per segment (>= 1), evenly spaced in it.
        frame_side: ``input: frames``: longer side of a frame in pixels after scaling down (crops keep detect.size).
        prompt: the instruction after the images.
        max_new_tokens: bound on each answer's tokens (greedy decoding).
        batch_size: segments per ``generate`` call.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
    """

    params_section: ClassVar[str] = "describe"
    params_ignored: ClassVar[tuple[str, ...]] = ("vlms",)  # the DVC foreach mapping
    params_weights_by: ClassVar[str] = "vlm"  # params weights: vlm -> weights
    params_error: ClassVar[type[AfwpipeError]] = DescribeError

    vlm: str
    weights: str | None = None
    input: str = "crops"
    segment_s: float = 2.0
    frames_per_segment: int = 4
    frame_side: int = 448
    prompt: str = DEFAULT_PROMPT
    max_new_tokens: int = 64
    batch_size: int = 4
    device: str = "auto"

    def __post_init__(self):
        if self.input not in INPUTS:
            raise DescribeError(f"describe.input: {self.input!r} is not one of {', '.join(INPUTS)}")
        for key in ("segment_s", "frames_per_segment", "frame_side", "max_new_tokens", "batch_size"):
            if not getattr(self, key) > 0:
                raise DescribeError(f"describe.{key}: must be > 0, got {getattr(self, key)!r}")


    def identity(self, vlm_config: dict) -> dict:
        """What a store's video must match to be skipped: the model and every option that changes the text."""
        out = {"vlm": vlm_config, "input": self.input, "segment_s": float(self.segment_s),
               "frames_per_segment": int(self.frames_per_segment), "prompt": self.prompt,
               "max_new_tokens": int(self.max_new_tokens)}
        if self.input == "frames":
            out["frame_side"] = int(self.frame_side)
        return out


def segment_bounds(frame_times: np.ndarray, segment_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut a video into segments (module docstring).

    Args:
        frame_times: float64 [T] start of each decoded frame, seconds from the first (non-decreasing).
        segment_s: segment length, seconds.

    Returns:
        (float64 [S] starts, float64 [S] ends, int64 [S + 1] frame offsets: segment k holds frames
        ``offsets[k]:offsets[k+1]``); S = 0 for a video without frames.
    """
    if len(frame_times) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(1, np.int64)
    _, fe = frame_spans(np.asarray(frame_times, np.float64))
    video_end = float(fe[-1])
    n = max(1, math.ceil(video_end / segment_s - 1e-9))
    starts = np.arange(n) * float(segment_s)
    ends = np.minimum(starts + segment_s, video_end)
    offsets = np.searchsorted(frame_times, np.append(starts, np.inf), side="left")
    offsets[-1] = len(frame_times)
    return starts, ends, offsets.astype(np.int64)


def evenly_spaced(candidates: np.ndarray, k: int) -> np.ndarray:
    """``k`` of the frame indices ``candidates``: the one at the centre of each of ``k`` equal parts (all when
    there are at most ``k``)."""
    candidates = np.asarray(candidates, np.int64)
    if len(candidates) <= k:
        return candidates
    return candidates[((np.arange(k) + 0.5) * len(candidates) / k).astype(np.int64)]


def _scale_down(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb`` resized (PIL bicubic) so its longer side is at most ``side`` pixels."""
    h, w = rgb.shape[:2]
    if max(h, w) <= side:
        return rgb
    from PIL import Image

    f = side / max(h, w)
    return np.array(Image.fromarray(rgb).resize((max(1, round(w * f)), max(1, round(h * f))), Image.BICUBIC))


class DescribeWorker:
    """Runs one VLM over the videos of a workspace (the model is built once)."""

    def __init__(self, ws: store.Workspace, cfg: DescribeConfig):
        self.ws, self.cfg = ws, replace(cfg, device=resolve_device(cfg.device))
        self.vlm = create_vlm(cfg.vlm, weights=cfg.weights, device=self.cfg.device)
        self.identity = self.cfg.identity(self.vlm.config)
        self.out = ws.descriptions(cfg.vlm)

    def shown_frames(self, name: str, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """(starts, ends, frame indices shown per segment) of video ``name`` (module docstring)."""
        starts, ends, offsets = segment_bounds(times, self.cfg.segment_s)
        present = (store.read_array(self.ws.faces, name, "present").astype(bool) if self.cfg.input == "crops"
                   else np.ones(len(times), bool))
        shown = []
        for a, b in zip(offsets[:-1], offsets[1:]):
            idx = np.arange(a, b)
            shown.append(evenly_spaced(idx[present[a:b]], self.cfg.frames_per_segment))
        return starts, ends, shown

    def images(self, rec: IndexRecord, wanted: np.ndarray) -> dict[int, np.ndarray]:
        """Frame index -> ``uint8 [H, W, 3]`` RGB image of every index in ``wanted``.

        Raises:
            VideoError: the video cannot be decoded, or decodes fewer frames than detect found (names the file).
        """
        if self.cfg.input == "crops":
            crops = store.open_store(self.ws.faces, "r")[rec.name]["crops"]
            try:
                return dict(zip(wanted.tolist(), read_frames(crops, wanted)))
            except ValueError as e:
                raise VideoError(f"{rec.name}: face crops cannot be read ({e})") from e
        want, out = set(wanted.tolist()), {}
        last = max(want, default=-1)
        for i, _, rgb in iter_frames(rec.path):
            if i in want:
                out[i] = _scale_down(rgb, self.cfg.frame_side)
            if i >= last:
                break
        if len(out) < len(want):
            raise VideoError(f"{rec.path}: decoded {len(out)} of the {len(want)} frames to describe; the file "
                             f"ends before frame {last} that detect found")
        return out

    def run_video(self, rec: IndexRecord) -> VideoResult:
        name = rec.name
        if store.is_complete_with(self.out, name, describe_config=self.identity):
            return VideoResult(name, skipped=True)
        res = VideoResult(name)
        if not store.is_complete(self.ws.faces, name):
            raise VideoError(f"{self.ws.faces}/{name}: no complete detect output; run `afwpipe detect` first")
        t0 = time.perf_counter()
        times = store.read_array(self.ws.faces, name, "times")
        starts, ends, shown = self.shown_frames(name, times)
        images = self.images(rec, np.concatenate(shown) if shown else np.zeros(0, np.int64))
        texts = [""] * len(shown)
        todo = [k for k, s in enumerate(shown) if len(s)]
        for b in range(0, len(todo), self.cfg.batch_size):
            batch = todo[b:b + self.cfg.batch_size]
            answers = self.vlm.describe([[images[i] for i in shown[k]] for k in batch], self.cfg.prompt,
                                        self.cfg.max_new_tokens)
            for k, text in zip(batch, answers):
                texts[k] = text
        g = store.begin_video(self.out, name, {"vlm": self.cfg.vlm, "describe_config": self.identity,
                                               "weights": self.vlm.weights, "video": rec.path})
        write_descriptions(g, [Description(t, float(s), float(e)) for t, s, e in zip(texts, starts, ends)])
        store.mark_complete(g, n_segments=len(texts), frames=[s.tolist() for s in shown])
        res.frames, res.present = len(texts), len(todo)
        res.seconds = time.perf_counter() - t0
        log.info("%s: %d segments described (%d without a face) in %.1f s", name, len(todo), len(texts) - len(todo),
                 res.seconds)
        return res


def run_describe(ws: store.Workspace, cfg: DescribeConfig, names: list[str] | None = None, progress: bool = True,
                 scheduler: str | None = None) -> RunSummary:
    """Describe every indexed video (or ``names``); one failing video never stops the others.

    Raises:
        DescribeError: the VLM name is of no registered family (the message lists them).
        WeightsError: weights missing and not downloadable (the message names the model and where it looked).
    """
    VLMS.entry(cfg.vlm)  # raises DescribeError listing the families
    recs = [r for r in ws.read_index().records if names is None or r.name in names]
    if scheduler_address(scheduler):
        store.open_store(ws.descriptions(cfg.vlm), "a")  # create the root once, before concurrent writers
    summary = RunSummary(step=f"describe {cfg.vlm}", unit="segments")
    summary.results = run_videos(partial(DescribeWorker, ws, cfg), recs, f"describe-{cfg.vlm}", progress, scheduler,
                                 gpu=resolve_device(cfg.device).startswith("cuda"))
    summary.write_failures(layout.failures_file(ws, "describe", ws.descriptions(cfg.vlm)))
    return summary


def main(ws: store.Workspace, cfg: DescribeConfig, *, names: list[str] | None = None, accept_failures: bool = False,
         scheduler: str | None = None, progress: bool = True) -> int:
    """The describe step as ``afwpipe describe`` and ``python -m stages.describe`` run it; returns the exit code
    (1 when a video failed, unless ``accept_failures``)."""
    summary = run_describe(ws, cfg, names=names, progress=progress, scheduler=scheduler)
    print(f"descriptions in {ws.descriptions(cfg.vlm)}")
    return summary.report(accept_failures)
