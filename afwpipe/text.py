"""The text step: a transcript's words through a ``text:<hf-id>`` encoder, spread over the video's frames.

For each video: ``features/<encoder>.zarr/<name>/emb [T, D] float16`` aligned to the decoded frames of
``faces.zarr`` ``times`` and ``present [T] bool``. Frame i spans ``[t_i, t_{i+1})`` (the last one median
frame duration, ``afwpipe.encoders.align.frame_spans``); a word ``[start, end)`` covers every frame whose
span it overlaps (a zero-length word: the frame holding its start). A covered frame gets the mean of
the embeddings of the words covering it and ``present=True``; a frame outside speech gets zeros and
``present=False``. Attributes: the encoder config (weights identity), ``asr`` and ``asr_config`` of the
transcript used. The store is the same kind as ``afwpipe extract``'s, so ``train.features`` can name
``text:<hf-id>``. Completeness follows ``afwpipe.store``; a video is redone when the encoder or the
transcript's ASR identity changed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import ClassVar

import numpy as np
from scipy import sparse

from . import layout, store
from .asr.transcripts import read_words
from .config import FromParams
from .device import resolve_device
from .encoders import create_encoder, frame_spans, is_encoder
from .errors import AfwpipeError, EncoderError, VideoError
from .results import RunSummary, VideoResult
from .runner import run_videos, scheduler_address

log = logging.getLogger(__name__)


@dataclass
class TextConfig(FromParams):
    """Options of one text encoder's step (``params.yaml`` section ``text``; defaults equal params.yaml).

    Attributes:
        encoder: ``text:<hf-id>`` (chosen per run: ``--encoder`` or the DVC foreach item).
        asr: whose transcripts to read (``transcripts/<asr>.zarr``, written by ``afwpipe transcribe``).
        weights: None (hub cache of ``<hf-id>``), a ``save_pretrained`` folder, or ``"random"``; in
            params.yaml ``text.weights`` maps encoder names to these values.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
    """

    params_section: ClassVar[str] = "text"
    params_ignored: ClassVar[tuple[str, ...]] = ("encoders",)  # the DVC foreach list
    params_error: ClassVar[type[AfwpipeError]] = EncoderError

    encoder: str
    asr: str = "pocketsphinx"
    weights: str | None = None
    device: str = "auto"

    @classmethod
    def from_params(cls, section, **overrides) -> "TextConfig":
        """The config of encoder ``overrides["encoder"]``: its weights from the ``weights`` mapping unless given."""
        section = dict(section or {})
        per_encoder = section.pop("weights", None) or {}
        if overrides.get("weights") is None:
            overrides["weights"] = per_encoder.get(overrides.get("encoder"))
        return cls(**cls.params_kwargs(section, overrides))


def words_to_frames(emb: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                    frame_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spread word embeddings over video frames (rule in the module docstring).

    Args:
        emb: float [W, D] word embeddings.
        starts, ends: float64 [W] seconds, ``start <= end``.
        frame_times: float64 [T] start of each frame in seconds, non-decreasing.

    Returns:
        (float32 [T, D] mean embedding of the words covering each frame, zeros elsewhere; bool [T] present).

    Raises:
        ValueError: shapes disagree, or bad frame times (``frame_spans``).
    """
    emb = np.asarray(emb, np.float32)
    starts, ends = np.asarray(starts, np.float64), np.asarray(ends, np.float64)
    if emb.ndim != 2 or starts.shape != (len(emb),) or ends.shape != (len(emb),):
        raise ValueError(f"emb [W, D] with starts, ends [W] expected; got {emb.shape}, {starts.shape}, {ends.shape}")
    fs, fe = frame_spans(frame_times) if len(frame_times) else (np.zeros(0), np.zeros(0))
    lo = np.searchsorted(fe, starts, side="right")  # first frame ending after each word starts
    # frames starting before the word ends; a zero-length word: the frame holding its start
    hi = np.where(starts < ends, np.searchsorted(fs, ends, side="left"), np.searchsorted(fs, starts, side="right"))
    hi = np.maximum(hi, lo)  # a word between two frames covers none
    # frame x word incidence matrix (ones where word w covers frame t), then one sparse product: the loop of
    # one slice per word took 0.45 s for 1,500 words, longer than a BERT-base forward's share of them
    lengths = hi - lo
    words = np.repeat(np.arange(len(emb)), lengths)
    frames = np.repeat(lo, lengths) + np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cover = sparse.csr_matrix((np.ones(len(words), np.float32), (frames, words)), shape=(len(fs), len(emb)))
    total = np.asarray(cover @ emb, dtype=np.float32)
    count = np.bincount(frames, minlength=len(fs))
    np.divide(total, np.maximum(count, 1)[:, None].astype(np.float32), out=total)  # frames without words stay 0
    return total, count > 0


class TextWorker:
    """Runs one text encoder over the transcripts of a workspace (the model is built once)."""

    def __init__(self, ws: store.Workspace, cfg: TextConfig):
        self.ws, self.cfg = ws, replace(cfg, device=resolve_device(cfg.device))
        self.encoder = create_encoder(cfg.encoder, weights=cfg.weights, device=self.cfg.device)
        if self.encoder.cfg.modality != "text":
            raise EncoderError(f"{cfg.encoder} is not a text encoder (modality {self.encoder.cfg.modality}); "
                              f"use `afwpipe extract`")
        self.out = ws.features(cfg.encoder)
        self.transcripts = ws.transcripts(cfg.asr)

    def _asr_config(self, name: str):
        if not store.is_complete(self.transcripts, name):
            return None
        return store.open_store(self.transcripts, "r")[name].attrs.get("asr_config")

    def run_video(self, rec: dict) -> VideoResult:
        name = rec["name"]
        if store.is_complete_with(self.out, name, encoder_config=self.encoder.config,
                                  asr_config=self._asr_config(name)):
            return VideoResult(name, skipped=True)
        res = VideoResult(name)
        if not store.is_complete(self.ws.faces, name):
            raise VideoError(f"{self.ws.faces}/{name}: no complete detect output; run `afwpipe detect` first")
        t0 = time.perf_counter()
        words = read_words(self.transcripts, name)
        times = store.read_array(self.ws.faces, name, "times")
        wemb = self.encoder.encode_words([w.word for w in words])
        if not np.isfinite(wemb).all():
            raise AfwpipeError(f"{self.cfg.encoder} on {name}: NaN/Inf word embeddings")
        emb, present = words_to_frames(wemb, np.array([w.start for w in words]), np.array([w.end for w in words]),
                                       times)
        cfg = self.encoder.config
        g = store.begin_video(self.out, name, {"encoder": self.cfg.encoder, "encoder_config": cfg,
                                                "modality": "text", "dim": cfg["dim"], "weights": cfg["weights"],
                                                "asr": self.cfg.asr, "asr_config": self._asr_config(name),
                                                "video": rec.get("path")})
        store.write_time_array(g, "emb", emb.astype(np.float16), dims=("frame", "feature"))
        store.write_time_array(g, "present", present, dims=("frame",))
        store.mark_complete(g, n_frames=len(times), n_words=len(words))
        res.frames, res.present = len(times), int(present.sum())
        res.seconds = time.perf_counter() - t0
        return res


def run_text(ws: store.Workspace, cfg: TextConfig, names: list[str] | None = None, progress: bool = True,
             scheduler: str | None = None) -> RunSummary:
    """Run one text encoder on every indexed video (or ``names``); one failing video never stops the others.

    Raises:
        EncoderError: unknown encoder (the message lists the registry) or not a text encoder.
        WeightsError: weights missing and not downloadable (the message says how to get them).
    """
    if not is_encoder(cfg.encoder):
        create_encoder(cfg.encoder)  # raises EncoderError listing the registry
    recs = [r for r in ws.read_index()["videos"] if names is None or r["name"] in names]
    if scheduler_address(scheduler):
        store.open_store(ws.features(cfg.encoder), "a")  # create the root once, before concurrent writers
    summary = RunSummary(step=f"extract-text {cfg.encoder}")
    summary.results = run_videos(partial(TextWorker, ws, cfg), recs, f"text-{cfg.encoder}", progress, scheduler,
                                 gpu=resolve_device(cfg.device).startswith("cuda"))
    summary.write_failures(layout.failures_file(ws, "text", ws.features(cfg.encoder)))
    return summary


def main(ws: store.Workspace, cfg: TextConfig, *, names: list[str] | None = None, accept_failures: bool = False,
         scheduler: str | None = None, progress: bool = True) -> int:
    """One text encoder's step as ``afwpipe extract-text`` and ``python -m stages.text`` run it; returns the
    exit code (1 when a video failed, unless ``accept_failures``)."""
    summary = run_text(ws, cfg, names=names, progress=progress, scheduler=scheduler)
    print(f"text features in {ws.features(cfg.encoder)} (transcripts {ws.transcripts(cfg.asr)}; the weights "
          f"identity is each video's attribute `weights`)")
    return summary.report(accept_failures)
