"""The text step: a transcript's words, or a VLM's behaviour descriptions, through a ``text:<hf-id>`` encoder, spread
over the video's frames.

For each video: ``features/<encoder>.zarr/<name>/emb [T, D] float16`` aligned to the decoded frames of
``faces.zarr`` ``times`` and ``present [T] bool``. Frame i spans ``[t_i, t_{i+1})`` (the last one median
frame duration, ``afwpipe.encoders.align.frame_spans``); a word ``[start, end)`` covers every frame whose
span it overlaps (a zero-length word: the frame holding its start). A covered frame gets the mean of
the embeddings of the words covering it and ``present=True``; a frame outside speech gets zeros and
``present=False``. Attributes: the encoder config (weights identity), ``source`` and ``source_config`` (what
was read and its identity), ``asr`` and ``asr_config`` of the transcript used. The store is the same kind as ``afwpipe extract``'s, so ``train.features`` can name
``text:<hf-id>``. Completeness follows ``afwpipe.store``; a video is redone when the encoder or the
identity of what it read (``source_config``: the transcript's ASR, or the descriptions' VLM and options) changed.

``source: descriptions`` reads ``descriptions/<vlm>.zarr`` (``afwpipe describe``) instead: each segment's
description is one "word" spanning ``[start, end)`` of its segment, embedded as the mean of the encoder's
contextual embeddings of its whitespace-separated words (the description alone is the context; mean pooling of
token states as in Reimers & Gurevych 2019, Sentence-BERT), and a frame belongs to the segment holding its start
time (segments tile the video, so no frame mixes two; :func:`segments_to_frames`). So every frame of a segment gets
its description's embedding and ``present=True``; a segment with an empty description (no face) leaves its frames
absent. Attributes then: ``source``, ``source_config`` (the descriptions' ``describe_config``), ``vlm``.
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
from .descriptions import read_descriptions
from .device import resolve_device
from .encoders import create_encoder, frame_spans, is_encoder
from .errors import AfwpipeError, EncoderError, VideoError
from .results import RunSummary, VideoResult
from .runner import run_videos, scheduler_address
from .records import IndexRecord

log = logging.getLogger(__name__)


SOURCES = ("transcripts", "descriptions")


@dataclass
class TextConfig(FromParams):
    """Options of one text encoder's step (``params.yaml`` section ``text``; defaults equal params.yaml).

    Attributes:
        encoder: ``text:<hf-id>`` (chosen per run: ``--encoder`` or the DVC foreach item).
        source: ``transcripts`` (the words of ``afwpipe transcribe``) or ``descriptions`` (the segments'
            behaviour descriptions of ``afwpipe describe``).
        asr: whose transcripts to read (``transcripts/<asr>.zarr``) when ``source: transcripts``.
        vlm: whose descriptions to read (``descriptions/<vlm>.zarr``, ``hf:<repo_id>``) when ``source: descriptions``.
        weights: None (hub cache of ``<hf-id>``), a ``save_pretrained`` folder, or ``"random"``; in
            params.yaml ``text.weights`` maps encoder names to these values.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
    """

    params_section: ClassVar[str] = "text"
    params_ignored: ClassVar[tuple[str, ...]] = ("encoders",)  # the DVC foreach list
    params_weights_by: ClassVar[str] = "encoder"  # params weights: encoder -> weights
    params_error: ClassVar[type[AfwpipeError]] = EncoderError

    encoder: str
    source: str = "transcripts"
    asr: str = "pocketsphinx"
    vlm: str | None = None
    weights: str | None = None
    device: str = "auto"

    def __post_init__(self):
        if self.source not in SOURCES:
            raise EncoderError(f"text.source: {self.source!r} is not one of {', '.join(SOURCES)}")
        if self.source == "descriptions" and not self.vlm:
            raise EncoderError("text.source: descriptions needs text.vlm, the hf:<repo_id> of `afwpipe describe`")



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


def segments_to_frames(emb: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                       frame_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Give every frame the embedding of the segment holding its start time.

    Args:
        emb: float [S, D] one embedding per segment.
        starts, ends: float64 [S] seconds, segments ``[start, end)`` sorted and not overlapping.
        frame_times: float64 [T] start of each frame in seconds.

    Returns:
        (float32 [T, D] the segment's embedding, zeros for a frame in no segment; bool [T] present).

    Raises:
        ValueError: shapes disagree.
    """
    emb = np.asarray(emb, np.float32)
    starts, ends = np.asarray(starts, np.float64), np.asarray(ends, np.float64)
    if emb.ndim != 2 or starts.shape != (len(emb),) or ends.shape != (len(emb),):
        raise ValueError(f"emb [S, D] with starts, ends [S] expected; got {emb.shape}, {starts.shape}, {ends.shape}")
    t = np.asarray(frame_times, np.float64)
    k = np.searchsorted(starts, t, side="right") - 1
    present = (k >= 0) & (t < ends[np.maximum(k, 0)]) if len(emb) else np.zeros(len(t), bool)
    out = np.zeros((len(t), emb.shape[1]), np.float32)
    out[present] = emb[k[present]]
    return out, present


class TextWorker:
    """Runs one text encoder over the transcripts of a workspace (the model is built once)."""

    def __init__(self, ws: store.Workspace, cfg: TextConfig):
        self.ws, self.cfg = ws, replace(cfg, device=resolve_device(cfg.device))
        self.encoder = create_encoder(cfg.encoder, weights=cfg.weights, device=self.cfg.device)
        if self.encoder.cfg.modality != "text":
            raise EncoderError(f"{cfg.encoder} is not a text encoder (modality {self.encoder.cfg.modality}); "
                              f"use `afwpipe extract`")
        self.out = ws.features(cfg.encoder)
        self.source = ws.transcripts(cfg.asr) if cfg.source == "transcripts" else ws.descriptions(cfg.vlm)
        self.identity_key = "asr_config" if cfg.source == "transcripts" else "describe_config"

    def _source_config(self, name: str):
        """The identity of what video ``name``'s features are made of (None when it is not complete)."""
        if not store.is_complete(self.source, name):
            return None
        return store.open_store(self.source, "r")[name].attrs.get(self.identity_key)

    def _spans(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(float32 [W, D] embeddings, float64 [W] starts, [W] ends) of the source's words or descriptions."""
        if self.cfg.source == "transcripts":
            words = read_words(self.source, name)
            return (self.encoder.encode_words([w.word for w in words]), np.array([w.start for w in words]),
                    np.array([w.end for w in words]))
        said = [d for d in read_descriptions(self.source, name) if d.text.split()]
        emb = np.stack([self.encoder.encode_words(d.text.split()).mean(0) for d in said]) if said else \
            np.zeros((0, self.encoder.dim), np.float32)
        return emb, np.array([d.start for d in said]), np.array([d.end for d in said])

    def run_video(self, rec: IndexRecord) -> VideoResult:
        name = rec.name
        source_config = self._source_config(name)
        if store.is_complete_with(self.out, name, encoder_config=self.encoder.config, source=self.cfg.source,
                                  source_config=source_config):
            return VideoResult(name, skipped=True)
        res = VideoResult(name)
        if not store.is_complete(self.ws.faces, name):
            raise VideoError(f"{self.ws.faces}/{name}: no complete detect output; run `afwpipe detect` first")
        t0 = time.perf_counter()
        times = store.read_array(self.ws.faces, name, "times")
        wemb, starts, ends = self._spans(name)
        if not np.isfinite(wemb).all():
            raise AfwpipeError(f"{self.cfg.encoder} on {name}: NaN/Inf embeddings of its {self.cfg.source}")
        spread = words_to_frames if self.cfg.source == "transcripts" else segments_to_frames
        emb, present = spread(wemb, starts, ends, times)
        cfg = self.encoder.config
        of = ({"asr": self.cfg.asr, "asr_config": source_config} if self.cfg.source == "transcripts"
              else {"vlm": self.cfg.vlm, "describe_config": source_config})
        g = store.begin_video(self.out, name, {"encoder": self.cfg.encoder, "encoder_config": cfg,
                                                "modality": "text", "dim": cfg["dim"], "weights": cfg["weights"],
                                                "source": self.cfg.source, "source_config": source_config, **of,
                                                "video": rec.path})
        store.write_time_array(g, "emb", emb.astype(np.float16), dims=("frame", "feature"))
        store.write_time_array(g, "present", present, dims=("frame",))
        store.mark_complete(g, n_frames=len(times), n_words=len(wemb))
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
    recs = [r for r in ws.read_index().records if names is None or r.name in names]
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
    read = ws.transcripts(cfg.asr) if cfg.source == "transcripts" else ws.descriptions(cfg.vlm)
    print(f"text features in {ws.features(cfg.encoder)} ({cfg.source} {read}; the weights "
          f"identity is each video's attribute `weights`)")
    return summary.report(accept_failures)
