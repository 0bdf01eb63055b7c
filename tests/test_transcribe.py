"""transcribe: the offline ASR (pocketsphinx) on tests/data/speech_clip.mp4, whose speech spans were
measured on the espeak-ng waveforms before muxing (tests/data/speech_clip.json), plus the store, the
no-audio case, restart and the registry's errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr

from afwpipe import store, transcribe
from afwpipe.asr import create_asr, list_asrs
from afwpipe.asr.transcripts import read_words
from afwpipe.asr.whisper_asr import words_of_result
from afwpipe.errors import ASRError, WeightsError

from speech_workspace import SPEECH, speech_workspace  # noqa: F401  (session fixture)

#: VAD and 10 ms frames can put a word's edge a little outside the measured span (1 % amplitude threshold)
SLACK_S = 0.1


def _spoken(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def test_words_lie_inside_the_spoken_spans_and_some_are_recognised(speech_workspace):
    ws, summary = speech_workspace
    assert not summary.failures
    words = read_words(ws.transcripts("pocketsphinx"), "speech")
    assert words, "no word recognised on the speech clip"
    spans = SPEECH["speech"]
    recognised = 0
    for span in spans:
        inside = [w for w in words if w.start >= span["start"] - SLACK_S and w.end <= span["end"] + SLACK_S]
        spoken = _spoken(span["text"])
        # bag-of-words match within the utterance (each spoken word counted once)
        left = list(spoken)
        for w in inside:
            if w.word.lower() in left:
                left.remove(w.word.lower())
        recognised += len(spoken) - len(left)
    outside = [w for w in words if not any(s["start"] - SLACK_S <= w.start and w.end <= s["end"] + SLACK_S
                                           for s in spans)]
    assert not outside, f"words outside the spoken spans: {outside}"
    # measured with pocketsphinx 5.1.1: 6 of the 12 spoken words (how are you / i see you)
    assert recognised >= 4, f"only {recognised} spoken words recognised: {[w.word for w in words]}"


def test_transcript_arrays_sorted_typed_and_readable_without_afwpipe(speech_workspace):
    ws, _ = speech_workspace
    path = ws.transcripts("pocketsphinx")
    ds = xr.open_zarr(path, group="speech", consolidated=False).load()
    start, end, conf = ds["start"].values, ds["end"].values, ds["confidence"].values
    assert start.dtype == np.float64 and end.dtype == np.float64 and conf.dtype == np.float32
    assert np.all(np.diff(start) >= 0) and np.all(end >= start) and np.all(end[:-1] <= start[1:] + 1e-9)
    assert np.all((conf >= 0) & (conf <= 1))
    assert list(ds["word"].values) == [w.word for w in read_words(path, "speech")]
    assert end[-1] <= SPEECH["duration_s"] + 0.1
    g = store.open_store(path, "r")["speech"]
    assert g.attrs["audio"] is True and g.attrs["asr_config"]["weights"].startswith("pocketsphinx==")
    assert g.attrs["n_words"] == len(start)


def test_video_without_audio_gets_an_empty_transcript(speech_workspace):
    ws, summary = speech_workspace
    assert [r.name for r in summary.results if not r.error] == ["speech", "mute"]
    path = ws.transcripts("pocketsphinx")
    assert store.is_complete(path, "mute")
    assert read_words(path, "mute") == []
    assert store.open_store(path, "r")["mute"].attrs["audio"] is False


def test_rerun_skips_complete_transcripts(speech_workspace):
    ws, _ = speech_workspace
    again = transcribe.run_transcribe(ws, transcribe.TranscribeConfig(asr="pocketsphinx"), progress=False)
    assert [r.skipped for r in again.results] == [True, True]


def test_silence_has_no_words():
    assert create_asr("pocketsphinx").transcribe(np.zeros(3 * 16000, np.float32)) == []


def test_unknown_asr_lists_the_registry(tmp_path):
    with pytest.raises(ASRError, match="unknown ASR 'nope'.*pocketsphinx"):
        create_asr("nope")
    assert {"pocketsphinx", "whisper", "whisper-tiny"} <= set(list_asrs())
    with pytest.raises(ASRError, match="unknown ASR"):
        transcribe.run_transcribe(store.Workspace(tmp_path), transcribe.TranscribeConfig(asr="nope"))


def test_whisper_without_cached_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("AFWPIPE_OFFLINE", "1")
    with pytest.raises(WeightsError, match=r"whisper-tiny.*(?s:.*)curl -L -o tiny.pt"):
        create_asr("whisper-tiny")


def test_whisper_result_to_words():
    result = {"segments": [{"words": [{"word": " Hello,", "start": 1.0, "end": 1.4, "probability": 0.9},
                                      {"word": " ", "start": 1.4, "end": 1.4, "probability": 0.1}]},
                           {"words": [{"word": " you", "start": 2.0, "end": 2.5, "probability": 0.5}]}, {}]}
    assert [(w.word, w.start, w.end, w.confidence) for w in words_of_result(result)] == [
        ("Hello,", 1.0, 1.4, 0.9), ("you", 2.0, 2.5, 0.5)]


def test_whisper_checkpoint_of_another_size_is_refused(tmp_path):
    import torch
    from whisper.model import ModelDimensions

    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=1, n_audio_layer=1,
                           n_vocab=51865, n_text_ctx=448, n_text_state=64, n_text_head=1, n_text_layer=1)
    from whisper.model import Whisper

    path = tmp_path / "small_model.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": Whisper(dims).state_dict()}, path)
    with pytest.raises(WeightsError, match=r"whisper-tiny: .* dims \(80, 64, 1, 1\), not whisper tiny's"):
        create_asr("whisper-tiny", weights=str(path))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot load whisper checkpoint"):
        create_asr("whisper-tiny", weights=str(tmp_path / "junk.pt"))
