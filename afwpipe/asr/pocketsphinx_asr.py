"""``pocketsphinx``: CMU PocketSphinx 5 (https://github.com/cmusphinx/pocketsphinx), a small HMM/GMM
recogniser that runs offline on the CPU. Its wheel ships the US-English model (``pocketsphinx/model/
en-us``: a continuous acoustic model, a 3-gram language model and CMUdict), so nothing is downloaded.

Audio is split into utterances by pocketsphinx's own voice-activity ``Segmenter`` (WebRTC-style VAD,
so memory and search stay bounded on long videos), and each utterance is decoded with the default
``Decoder``. A word's start / end are its first frame and the end of its last frame (10 ms frames,
``frate`` 100) plus the utterance's start; its confidence is pocketsphinx's posterior word probability
(``Segment.prob``). Entries of the model's filler dictionary (``noisedict``: ``<s>``, ``</s>``,
``<sil>``, noises) are dropped, and alternate pronunciations (``the(2)``) are reported as the word.
Accuracy is modest (measured on tests/data/speech_clip.mp4: docs/guide/text.md); the tests use it
because it is the offline recogniser, ``whisper`` is the one for real data.
"""

from __future__ import annotations

import io
import re
from importlib.metadata import version
from pathlib import Path

import numpy as np

from ..labels import AUDIO_SAMPLE_RATE
from .base import ASR, ASRConfig, Word
from .registry import register_asr

_ALTERNATE = re.compile(r"\(\d+\)$")

default_cfg = ASRConfig(name="pocketsphinx", weights_note="inside the pocketsphinx wheel (en-us; offline)",
                        extra={"language": "en-us", "model": "pocketsphinx/model/en-us", "vad": "Segmenter"})


def _fillers(model_dir: Path) -> set[str]:
    noisedict = model_dir / "en-us" / "noisedict"
    words = {line.split()[0] for line in noisedict.read_text().splitlines() if line.strip()}
    return words | {"<s>", "</s>", "<sil>"}


class PocketSphinxASR(ASR):
    """PocketSphinx over VAD utterances; see the module docstring."""

    def __init__(self, cfg: ASRConfig):
        import pocketsphinx

        super().__init__(cfg)
        self._ps = pocketsphinx
        self.decoder = pocketsphinx.Decoder(samprate=AUDIO_SAMPLE_RATE, loglevel="ERROR")
        self.frate = int(self.decoder.config["frate"])
        self.fillers = _fillers(Path(pocketsphinx.get_model_path()) / "en-us")

    def words(self, wave: np.ndarray) -> list[Word]:
        pcm = (np.clip(wave, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        segmenter = self._ps.Segmenter(sample_rate=AUDIO_SAMPLE_RATE)
        out = []
        for utt in segmenter.segment(io.BytesIO(pcm)):
            self.decoder.start_utt()
            self.decoder.process_raw(utt.pcm, full_utt=True)
            self.decoder.end_utt()
            for seg in self.decoder.seg():
                if seg.word in self.fillers:
                    continue
                out.append(Word(_ALTERNATE.sub("", seg.word), utt.start_time + seg.start_frame / self.frate,
                                utt.start_time + (seg.end_frame + 1) / self.frate, seg.prob))
        return out


@register_asr("pocketsphinx", default_cfg=default_cfg)
def create_pocketsphinx(weights=None, device: str = "cpu") -> PocketSphinxASR:
    """PocketSphinx with the English model inside its wheel. ``weights`` must be None (the model is the
    package's; its identity is the package version), ``device`` is ignored (CPU only).

    Raises:
        ASRError: ``weights`` given.
    """
    from ..errors import ASRError

    if weights is not None:
        raise ASRError(f"pocketsphinx uses the model inside its wheel; weights={weights!r} is not supported")
    return PocketSphinxASR(default_cfg.with_(weights=f"pocketsphinx=={version('pocketsphinx')}"))
