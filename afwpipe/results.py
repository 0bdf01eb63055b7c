"""Results of the per-video steps (detect, extract): one ``VideoResult`` per video, and the run's
``RunSummary`` (its one-line summary and its failures file)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic


@dataclass
class VideoResult:
    """Summary of one video of a per-video step (detect, extract)."""

    name: str
    frames: int = 0
    present: int = 0
    seconds: float = 0.0
    skipped: bool = False
    error: str | None = None
    audio: bool = False


@dataclass
class RunSummary:
    """Per-video results of a run over many videos (detect, extract), its one-line summary and its failures file."""

    step: str = "detect"
    results: list[VideoResult] = field(default_factory=list)
    weights: str | None = None  # weights identity of the model that ran (extract)
    unit: str = "frames"  # what VideoResult.frames counts (transcribe: "words")
    failures_file: Path | None = None

    @property
    def failures(self) -> list[VideoResult]:
        return [r for r in self.results if r.error]

    def line(self) -> str:
        done = [r for r in self.results if not r.skipped and not r.error]
        frames = sum(r.frames for r in done)
        secs = sum(r.seconds for r in done)
        present = sum(r.present for r in done)
        u = self.unit
        rate = f" at {frames / secs:.1f} {u}/s" if secs else ""
        tail = f", present in {present}/{frames} {u}" if u == "frames" else ""
        return (f"{self.step}: {len(done)} videos processed, {sum(r.skipped for r in self.results)} already complete, "
                f"{len(self.failures)} failed; {frames} {u}{rate}{tail}")

    def report(self, accept_failures: bool = False) -> int:
        """Print the summary line and one ``FAILED <video>: <error>`` line per failure; return the exit
        code: 1 when a video failed (unless ``accept_failures``), else 0."""
        print(self.line())
        for r in self.failures:
            print(f"FAILED {r.name}: {r.error}")
        if self.failures and self.failures_file is not None:
            print(f"failures listed in {self.failures_file}")
        return 1 if self.failures and not accept_failures else 0

    def write_failures(self, path: Path) -> None:
        """Write ``[{name, error}]`` of the failed videos (an empty list when none failed) to ``path``
        (remembered as ``failures_file``)."""
        self.failures_file = Path(path)
        atomic.write_text(path, json.dumps([{"name": r.name, "error": r.error} for r in self.failures], indent=1) + "\n")
