"""extract-text: text:<hf-id> word embeddings of the speech clip's transcript spread over its frames.

A tiny BERT (2 layers, a WordPiece vocabulary of the clip's words built with ``tokenizers``) is saved
with ``save_pretrained`` and loaded from that folder. References: frame spans from PyAV's own frame
times, word embeddings from the model run by hand on [CLS] + each word's word pieces + [SEP].
"""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch

from afwpipe import store, text
from afwpipe.asr.transcripts import read_words
from afwpipe.encoders import create_encoder
from afwpipe.errors import EncoderError, WeightsError

from speech_workspace import CLIP, speech_workspace  # noqa: F401  (session fixture)

WORDS = "hello how are you today i am very happy to see let so do recall".split()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-bert")
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", *WORDS, "##s", "##l"])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                             ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]", model_max_length=64).save_pretrained(out)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(out)
    return out


def _pyav_spans(path):
    """[t_i, t_{i+1}) of every decoded frame from PyAV's frame times; the last frame one median duration."""
    with av.open(str(path)) as c:
        t = np.array([f.time for f in c.decode(video=0)], np.float64)
    t -= t[0]
    return t, np.append(t[1:], t[-1] + np.median(np.diff(t)))


def _reference_word_embeddings(folder, words):
    from tokenizers import Tokenizer
    from transformers import BertModel

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    pieces = [tok.encode(w, add_special_tokens=False).ids for w in words]
    ids = [2] + [i for p in pieces for i in p] + [3]
    with torch.no_grad():
        states = BertModel.from_pretrained(folder).eval()(torch.tensor([ids])).last_hidden_state[0].numpy()
    out, pos = [], 1
    for p in pieces:
        out.append(states[pos:pos + len(p)].mean(0))
        pos += len(p)
    return np.array(out)


@pytest.fixture(scope="session")
def text_features(speech_workspace, tiny_bert):
    ws, _ = speech_workspace
    cfg = text.TextConfig(encoder="text:tiny-bert", weights=str(tiny_bert))
    return ws, text.run_text(ws, cfg, progress=False), cfg


def test_present_exactly_on_word_frames_with_the_mean_word_embedding(text_features, tiny_bert):
    ws, summary, _ = text_features
    assert not summary.failures
    words = read_words(ws.transcripts("pocketsphinx"), "speech")
    g = store.open_store(ws.features("text:tiny-bert"), "r")["speech"]
    emb, present = g["emb"][...], g["present"][...]
    fs, fe = _pyav_spans(CLIP)
    assert emb.dtype == np.float16 and emb.shape == (len(fs), 32)
    ref_words = _reference_word_embeddings(tiny_bert, [w.word for w in words])
    ref = np.zeros((len(fs), 32))
    ref_present = np.zeros(len(fs), bool)
    for i in range(len(fs)):
        over = [k for k, w in enumerate(words) if w.start < fe[i] and w.end > fs[i]]
        if over:
            ref_present[i] = True
            ref[i] = ref_words[over].mean(0)
    assert ref_present.sum() > 20
    np.testing.assert_array_equal(present, ref_present)
    np.testing.assert_allclose(emb.astype(np.float32), ref, atol=2e-2, rtol=1e-2)
    assert not emb[~present].any()


def test_no_audio_video_is_all_absent_and_identity_is_recorded(text_features, tiny_bert):
    ws, _, _ = text_features
    root = store.open_store(ws.features("text:tiny-bert"), "r")
    assert not root["mute"]["present"][...].any() and not root["mute"]["emb"][...].any()
    attrs = root["speech"].attrs
    assert attrs["weights"].startswith("sha256:") and attrs["encoder_config"]["model_type"] == "bert"
    assert attrs["asr_config"]["name"] == "pocketsphinx" and attrs["modality"] == "text"
    assert json.dumps(dict(attrs))  # plain JSON


def test_rerun_skips_and_a_new_transcript_identity_redoes(text_features):
    ws, _, cfg = text_features
    assert all(r.skipped for r in text.run_text(ws, cfg, progress=False).results)
    transcript = store.open_store(ws.transcripts("pocketsphinx"), "a")["speech"]
    asr_config = dict(transcript.attrs["asr_config"])
    transcript.attrs["asr_config"] = {**asr_config, "weights": "another"}
    try:
        again = text.run_text(ws, cfg, progress=False)
    finally:
        transcript.attrs["asr_config"] = asr_config
    assert [(r.name, r.skipped) for r in again.results] == [("speech", False), ("mute", True)]


def test_words_to_frames_hand_worked():
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [4.0, 4.0], [9.0, 9.0]])
    frame_times = np.array([0.0, 1.0, 2.0, 3.0])  # spans [0,1) [1,2) [2,3) [3,4)
    # word 0 [0.5, 1.5): frames 0, 1; word 1 [1.0, 2.0): frame 1 only; word 2 zero-length at 2.5: frame 2;
    # word 3 after the last frame's end: nothing
    out, present = text.words_to_frames(emb, np.array([0.5, 1.0, 2.5, 4.0]), np.array([1.5, 2.0, 2.5, 4.5]),
                                        frame_times)
    np.testing.assert_array_equal(present, [True, True, True, False])
    np.testing.assert_allclose(out, [[1, 0], [0.5, 0.5], [4, 4], [0, 0]])


def test_chunks_cover_the_words_within_the_token_limit(tiny_bert):
    enc = create_encoder("text:tiny-bert", weights=str(tiny_bert))
    enc.max_tokens = 5
    words = ["hello,", "how", "are", "you", "today", "i", "am", "very"]
    chunks = enc.chunks(words)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(words)
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    for lo, hi in chunks:
        assert 0 < len(enc.tokenizer(words[lo:hi], is_split_into_words=True, add_special_tokens=False).input_ids) <= 5
    assert enc.encode_words(words).shape == (8, 32) and enc.encode_words([]).shape == (0, 32)


def test_a_word_of_several_pieces_gets_the_mean_of_their_states(tiny_bert):
    words = ["hellos", "you", "today,"]  # hello + ##s, you, today + ","
    got = create_encoder("text:tiny-bert", weights=str(tiny_bert)).encode_words(words)
    np.testing.assert_allclose(got, _reference_word_embeddings(tiny_bert, words), atol=1e-5)


def test_unknown_or_unavailable_text_encoder_errors(tmp_path, monkeypatch):
    with pytest.raises(EncoderError, match="unknown encoder 'txt:x'.*text:<hf-id>"):
        text.run_text(store.Workspace(tmp_path), text.TextConfig(encoder="txt:x"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("AFWPIPE_OFFLINE", "1")
    with pytest.raises(WeightsError, match=r"text:bert-base-uncased.*(?s:.*)hf download bert-base-uncased"):
        create_encoder("text:bert-base-uncased")
    with pytest.raises(EncoderError, match="logmel is not a text encoder"):
        text.TextWorker(store.Workspace(tmp_path), text.TextConfig(encoder="logmel"))


def test_dvc_stage_refuses_a_store_name_that_is_not_the_encoders():
    from afwpipe.errors import ConfigError
    from stages import text as stage

    with pytest.raises(ConfigError, match="key 'bert' of 'text:bert-base-uncased' must be its store name "
                                          "'text_bert-base-uncased'"):
        stage.run({}, encoder="text:bert-base-uncased", store="bert")


def test_zero_length_words_on_frame_starts_cover_that_frame():
    # whisper's word times lie on a 0.02 s grid: at 25 fps every other grid point is a frame start, and a
    # zero-length word there must cover the frame it starts (reference: integer centiseconds, frame k
    # starts at 4k cs)
    frame_times = np.arange(10) / 25
    cs = np.array([0, 4, 8, 20, 36, 6, 10])  # 0.00 … 0.36 s on frame starts; 0.06, 0.10 s inside frames
    emb = np.eye(len(cs))
    out, present = text.words_to_frames(emb, cs / 100, cs / 100, frame_times)
    ref = np.zeros((10, len(cs)))
    for w, c in enumerate(cs):
        ref[c // 4, w] = 1.0
    ref /= np.maximum(ref.sum(1, keepdims=True), 1)
    np.testing.assert_array_equal(present, ref.sum(1) > 0)
    np.testing.assert_allclose(out, ref)
