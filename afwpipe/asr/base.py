"""What every ASR is: a config (written into the transcript store) and one ``transcribe`` method.

``ASR.transcribe(wave float32 [N] at 16 kHz) -> list[Word]``: words sorted by start time, each with
``start <= end`` inside ``[0, N / 16000]`` seconds and a confidence in [0, 1] (the recogniser's own:
a posterior word probability for pocketsphinx, the mean token probability for whisper). Silence and
filler tokens (breath, noise, sentence markers) are never words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..labels import AUDIO_SAMPLE_RATE


@dataclass(frozen=True)
class Word:
    """One recognised word: text, start and end in seconds from the start of the audio, confidence in [0, 1]."""

    word: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True)
class ASRConfig:
    """An ASR's identity, stored as the ``asr_config`` attribute of each transcript.

    Attributes:
        name: registry name (``pocketsphinx``, ``whisper-base`` ...).
        weights: weights identity (``"sha256:<hex>"``, a package version, ``"random"``).
        weights_note: where the default weights come from, for ``afwpipe encoders``.
        extra: recogniser settings (model files, language, decoding options).
    """

    name: str
    weights: str = "unset"
    weights_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> "ASRConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("weights_note")
        d.update(d.pop("extra"))
        return d


class ASR:
    """Common part: the config; subclasses implement :meth:`words`."""

    def __init__(self, cfg: ASRConfig):
        self.cfg = cfg

    @property
    def config(self) -> dict[str, Any]:
        """The config as a plain dict for the transcript store's attributes."""
        return self.cfg.to_dict()

    def words(self, wave: np.ndarray) -> list[Word]:
        """Recognise a non-empty float32 [N] wave at 16 kHz; words in any order, times in seconds."""
        raise NotImplementedError

    def transcribe(self, wave: np.ndarray) -> list[Word]:
        """Words of ``wave`` (float32 [N] mono at 16 kHz, values in [-1, 1]), sorted by start, clipped to
        the audio's span and confidence clipped to [0, 1]. An empty wave has no words.

        Raises:
            ValueError: ``wave`` is not 1-D.
        """
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"{self.cfg.name}: wave must be a 1-D float array, got shape {wave.shape}")
        if wave.size == 0:
            return []
        duration = wave.size / AUDIO_SAMPLE_RATE
        out = []
        for w in self.words(wave):
            start = float(np.clip(w.start, 0.0, duration))
            end = float(np.clip(w.end, start, duration))
            out.append(Word(w.word, start, end, float(np.clip(w.confidence, 0.0, 1.0))))
        return sorted(out, key=lambda w: (w.start, w.end))
