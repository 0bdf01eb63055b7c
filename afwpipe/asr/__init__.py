"""Automatic speech recognition (ASR): a 16 kHz mono wave in, words with start / end times (s) and a
confidence out.

``create_asr(name, weights=None, device="cpu")`` is the one door; ``list_asrs()`` says what exists:

* ``pocketsphinx``: CMU PocketSphinx 5 with the US-English acoustic model, language model and
  dictionary shipped inside its wheel (works offline, CPU only);
* ``whisper`` (= base), ``whisper-<size>``: openai-whisper's ``transcribe(word_timestamps=True)``,
  weights from whisper's cache ``~/.cache/whisper`` as for the whisper encoders.

Importing this package registers every ASR below.
"""

from . import pocketsphinx_asr, whisper_asr  # noqa: F401  (register)
from .base import ASR, ASRConfig, Word
from .registry import ASRS, create_asr, describe_asrs, is_asr, list_asrs, register_asr

__all__ = ["ASR", "ASRConfig", "ASRS", "Word", "create_asr", "describe_asrs", "is_asr", "list_asrs", "register_asr"]
