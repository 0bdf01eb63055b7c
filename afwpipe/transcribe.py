"""The transcribe step: the 16 kHz wave of the detect step in, each video's words with start / end
times and confidence out, in ``transcripts/<asr>.zarr/<name>/`` (layout: ``afwpipe.asr.transcripts``).

A video without an audio track gets an empty transcript (``audio=False``), not an error. Completeness
and restart follow ``afwpipe.store``: ``complete`` last, complete videos with the same ASR identity
skipped, anything else redone; one failing video never stops the others.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import ClassVar

import numpy as np

from . import layout, store
from .asr import create_asr, is_asr
from .asr.transcripts import write_words
from .config import FromParams
from .device import resolve_device
from .errors import AfwpipeError, ASRError, VideoError
from .labels import AUDIO_SAMPLE_RATE
from .results import RunSummary, VideoResult
from .runner import run_videos, scheduler_address
from .records import IndexRecord

log = logging.getLogger(__name__)


@dataclass
class TranscribeConfig(FromParams):
    """Options of the transcribe step (``params.yaml`` section ``transcribe``; defaults equal params.yaml).

    Attributes:
        asr: speech recogniser (``pocketsphinx``, ``whisper``, ``whisper-<size>``; ``afwpipe encoders`` lists them).
        weights: None (the ASR's default weights), a checkpoint file, or ``"random"`` (whisper smoke test).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (whisper; pocketsphinx is CPU only).
    """

    params_section: ClassVar[str] = "transcribe"
    params_error: ClassVar[type[AfwpipeError]] = ASRError

    asr: str = "pocketsphinx"
    weights: str | None = None
    device: str = "auto"


class TranscribeWorker:
    """Runs one ASR over the videos of a workspace (the recogniser is built once)."""

    def __init__(self, ws: store.Workspace, cfg: TranscribeConfig):
        self.ws, self.cfg = ws, replace(cfg, device=resolve_device(cfg.device))
        self.asr = create_asr(cfg.asr, weights=cfg.weights, device=self.cfg.device)
        self.out = ws.transcripts(cfg.asr)

    def run_video(self, rec: IndexRecord) -> VideoResult:
        name = rec.name
        if store.is_complete_with(self.out, name, asr_config=self.asr.config):
            return VideoResult(name, skipped=True)
        res = VideoResult(name)
        if not store.is_complete(self.ws.audio, name):
            raise VideoError(f"{self.ws.audio}/{name}: no complete audio; run `afwpipe detect` first")
        t0 = time.perf_counter()
        audio = store.open_store(self.ws.audio, "r")[name]
        has_audio = bool(audio.attrs.get("present", False))
        wave = audio["wave"][...] if has_audio else np.zeros(0, np.float32)
        if not has_audio:
            log.warning("%s: no audio track; empty transcript", name)
        words = self.asr.transcribe(wave)
        g = store.begin_video(self.out, name, {"asr": self.cfg.asr, "asr_config": self.asr.config,
                                               "weights": self.asr.cfg.weights, "video": rec.path,
                                               "audio": has_audio})
        write_words(g, words)
        seconds = wave.size / audio.attrs.get("sample_rate", AUDIO_SAMPLE_RATE)
        store.mark_complete(g, n_words=len(words), seconds=seconds)
        res.frames, res.present, res.audio = len(words), len(words), has_audio
        res.seconds = time.perf_counter() - t0
        log.info("%s: %d words in %.1f s of audio (%.2f x real time)", name, len(words), seconds,
                 res.seconds / seconds if seconds else 0.0)
        return res


def run_transcribe(ws: store.Workspace, cfg: TranscribeConfig, names: list[str] | None = None,
                   progress: bool = True, scheduler: str | None = None) -> RunSummary:
    """Transcribe every indexed video (or ``names``); one failing video never stops the others.

    Raises:
        ASRError: unknown ASR (the message lists the registry).
        WeightsError: weights missing and not downloadable (the message says how to get them).
    """
    if not is_asr(cfg.asr):
        create_asr(cfg.asr)  # raises ASRError listing the registry
    recs = [r for r in ws.read_index().records if names is None or r.name in names]
    if scheduler_address(scheduler):
        store.open_store(ws.transcripts(cfg.asr), "a")  # create the root once, before concurrent writers
    summary = RunSummary(step=f"transcribe {cfg.asr}", unit="words")
    summary.results = run_videos(partial(TranscribeWorker, ws, cfg), recs, f"transcribe-{cfg.asr}", progress,
                                 scheduler, gpu=resolve_device(cfg.device).startswith("cuda"))
    summary.write_failures(layout.failures_file(ws, "transcribe", ws.transcripts(cfg.asr)))
    return summary


def main(ws: store.Workspace, cfg: TranscribeConfig, *, names: list[str] | None = None,
         accept_failures: bool = False, scheduler: str | None = None, progress: bool = True) -> int:
    """The transcribe step as ``afwpipe transcribe`` and ``python -m stages.transcribe`` run it; returns the
    exit code (1 when a video failed, unless ``accept_failures``)."""
    summary = run_transcribe(ws, cfg, names=names, progress=progress, scheduler=scheduler)
    print(f"transcripts in {ws.transcripts(cfg.asr)}")
    return summary.report(accept_failures)
