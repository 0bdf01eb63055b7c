"""``whisper`` (= base), ``whisper-<size>``: openai-whisper's own ``transcribe`` with
``word_timestamps=True`` (Radford et al. 2022, https://github.com/openai/whisper; word times from the
cross-attention alignment of ``whisper/timing.py``), the language detected by the model from the
first 30 s (``language=None``), greedy decoding at temperature 0 with whisper's fallback schedule,
each 30 s window decoded without the previous window's text as prompt (``condition_on_previous_text=False``,
which avoids repetition loops), fp32 on CPU, fp16 on CUDA. A word's confidence is whisper's
``probability`` (the mean probability of its tokens); its text is stripped of surrounding spaces.
A checkpoint loaded from a file gets whisper's alignment heads of its size (``whisper._ALIGNMENT_HEADS``,
which ``whisper.load_model`` sets only for names, not files): the word times come from those heads.

Weights are resolved exactly as for the ``whisper`` encoders (``afwpipe/encoders/whisper_encoder.py``):
``--weights FILE`` > whisper's cache ``~/.cache/whisper/<size>.pt`` (sha256 checked) > download when
online > an error saying where to put the file. ``weights="random"`` builds an untrained model (a smoke
test; its words are noise, and it is slow: an untrained decoder runs to the token limit at every fallback
temperature, more than 5 minutes for 7 s of audio with ``whisper-tiny`` on a loaded 2-core CPU).
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ..encoders.weights import resolve_weights
from ..errors import WeightsError
from ..encoders.whisper_encoder import WHISPER_DIMS, whisper_weights_source
from .base import ASR, ASRConfig, Word
from .registry import register_asr


def words_of_result(result: dict) -> list[Word]:
    """Words of a ``whisper.transcribe`` result (``segments[i]["words"]`` of dicts word / start / end /
    probability) as :class:`Word`; segments without words are skipped."""
    return [Word(w["word"].strip(), float(w["start"]), float(w["end"]), float(w["probability"]))
            for seg in result.get("segments", []) for w in seg.get("words", []) if w["word"].strip()]


class WhisperASR(ASR):
    """A whisper model's ``transcribe`` with word timestamps."""

    def __init__(self, cfg: ASRConfig, model, device: str = "cpu"):
        super().__init__(cfg)
        self.model = model.to(device).eval()
        self.fp16 = str(device).startswith("cuda")

    def words(self, wave: np.ndarray) -> list[Word]:
        result = self.model.transcribe(wave, word_timestamps=True, fp16=self.fp16, verbose=None,
                                       condition_on_previous_text=False)
        return words_of_result(result)


def create_whisper_asr(size: str, name: str, weights=None, device: str = "cpu") -> WhisperASR:
    """Whisper ``size`` as an ASR; ``weights``: None (whisper's cache), a whisper ``.pt`` file, or ``"random"``.

    Raises:
        WeightsError: not cached and not downloadable (the message says how to get the file), or the file is
            not a whisper checkpoint of ``size``.
    """
    import torch
    import whisper
    from whisper.model import ModelDimensions, Whisper

    resolved = resolve_weights(name, whisper_weights_source(size), weights)
    if resolved.random:
        n_mels, n_state, n_head, n_layer = WHISPER_DIMS[size]
        dims = ModelDimensions(n_mels=n_mels, n_audio_ctx=1500, n_audio_state=n_state, n_audio_head=n_head,
                               n_audio_layer=n_layer, n_vocab=51865 if n_mels == 80 else 51866, n_text_ctx=448,
                               n_text_state=n_state, n_text_head=n_head, n_text_layer=n_layer)
        torch.manual_seed(0)
        model = Whisper(dims)
    else:
        try:
            model = whisper.load_model(str(resolved.path), device="cpu")
        except Exception as e:  # torch / pickle / key errors of a file that is not a whisper checkpoint
            raise WeightsError(f"{name}: cannot load whisper checkpoint {resolved.path}: {type(e).__name__}: {e}") from e
        d = model.dims
        got = (d.n_mels, d.n_audio_state, d.n_audio_head, d.n_audio_layer)
        if got != WHISPER_DIMS[size]:
            raise WeightsError(f"{name}: {resolved.path} is a whisper model with dims {got}, not whisper {size}'s "
                               f"{WHISPER_DIMS[size]}")
        model.set_alignment_heads(whisper._ALIGNMENT_HEADS[size])
    return WhisperASR(_configs[name].with_(weights=resolved.identity), model, device)


_DECODING = {"word_timestamps": True, "temperature": "0.0, fallback 0.2 ... 1.0 (whisper's default)",
             "condition_on_previous_text": False}
_configs = {"whisper": ASRConfig("whisper", extra={"size": "base", **_DECODING}),
            **{f"whisper-{s}": ASRConfig(f"whisper-{s}", extra={"size": s, **_DECODING}) for s in WHISPER_DIMS}}

for _name, _cfg in _configs.items():
    register_asr(_name, default_cfg=_cfg, source=whisper_weights_source(_cfg.extra["size"]))(
        partial(create_whisper_asr, _cfg.extra["size"], _name))
