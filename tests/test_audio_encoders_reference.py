"""Audio encoders against their own libraries, on small random models (no weights needed).

* whisper: afwpipe's windows against ``model.embed_audio(log_mel_spectrogram(pad_or_trim(audio)))``,
  the way openai-whisper's README feeds one 30 s window (the audio, not the Mel, padded with zeros).
* HuBERT / wav2vec2: afwpipe's chunked states against the same model run once over the whole wave.
"""

import numpy as np
import pytest
import torch

SR = 16000


# --- whisper -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def whisper_pair():
    """(afwpipe encoder, whisper.model.Whisper) sharing one randomly initialised tiny encoder."""
    import whisper.model as wm

    from afwpipe.encoders.whisper_encoder import WHISPER_DIMS, WhisperEncoder, default_cfgs
    n_mels, n_state, n_head, n_layer = WHISPER_DIMS["tiny"]
    # tiny's encoder dims; the decoder is shrunk because only the encoder is compared
    dims = wm.ModelDimensions(n_mels=n_mels, n_audio_ctx=1500, n_audio_state=n_state, n_audio_head=n_head,
                              n_audio_layer=n_layer, n_vocab=64, n_text_ctx=8, n_text_state=n_state,
                              n_text_head=n_head, n_text_layer=1)
    torch.manual_seed(0)
    model = wm.Whisper(dims).eval()
    return WhisperEncoder(default_cfgs["whisper-tiny"], model.encoder, batch_size=2), model


def _wave_35s() -> np.ndarray:
    """35 s of noise with the same loud 440 Hz second at 1 s and at 31 s (so both 30 s windows have
    the file's Mel maximum, the floor whisper puts 8 log10 units below it) and 0.1 s of silence each
    side of 30 s (so cutting the audio there changes no STFT frame)."""
    rng = np.random.default_rng(3)
    wave = 0.05 * rng.standard_normal(35 * SR + 123)
    tone = 0.8 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)
    wave[SR:2 * SR] = tone
    wave[31 * SR:32 * SR] = tone
    wave[30 * SR - SR // 10:30 * SR + SR // 10] = 0.0
    return wave.astype(np.float32)


def _whisper_reference(model, audio: np.ndarray) -> np.ndarray:
    from whisper.audio import log_mel_spectrogram, pad_or_trim
    with torch.inference_mode():
        mel = log_mel_spectrogram(pad_or_trim(torch.from_numpy(audio)), model.dims.n_mels)
        return model.embed_audio(mel[None])[0].numpy()


def test_whisper_windows_equal_embed_audio_of_the_zero_padded_audio(whisper_pair):
    enc, model = whisper_pair
    wave = _wave_35s()
    with torch.inference_mode():
        states = enc.states(torch.from_numpy(wave)).numpy()
    assert states.shape == (1750, 384)  # 1500 + ceil((5 s + 123 samples) // 160 / 2)
    first = _whisper_reference(model, wave)  # pad_or_trim keeps the first 30 s
    second = _whisper_reference(model, wave[30 * SR:])  # the last 5 s, zero-padded to 30 s
    d1 = np.abs(states[:1500] - first).max()
    d2 = np.abs(states[1500:] - second[:250]).max()
    scale = np.abs(first).max()
    assert d1 < 1e-5 * scale, d1
    # the padded window: every kept state attends to the padding, so this checks the padding itself
    assert d2 < 1e-5 * scale, d2


def test_whisper_padding_is_the_log_of_silence_not_transcribes_zero_mel(whisper_pair):
    """whisper.transcribe pads the last Mel segment with 0 instead; that visibly changes the states."""
    from whisper.audio import N_FRAMES, log_mel_spectrogram, pad_or_trim
    enc, model = whisper_pair
    wave = _wave_35s()[30 * SR:]
    mel = log_mel_spectrogram(torch.from_numpy(wave), model.dims.n_mels, padding=N_FRAMES * 160)
    content = mel.shape[-1] - N_FRAMES
    with torch.inference_mode():
        transcribe_like = model.embed_audio(pad_or_trim(mel[:, :content], N_FRAMES)[None])[0, :250].numpy()
        ours = enc.states(torch.from_numpy(wave)).numpy()
    # past the last frame that overlaps the audio, whisper's Mel of silence is its floor, 8 log10
    # units (2 after the (x + 4) / 4 scaling) below the maximum: here far from transcribe's 0
    floor = mel.max() - 2.0
    assert torch.allclose(mel[:, content + 2:], floor) and floor < -0.4
    assert np.abs(ours - transcribe_like).max() > 1e-2 * np.abs(ours).max()


# --- HuBERT / wav2vec2 ---------------------------------------------------------------------------

CHUNK_S = 4.0  # 200 states per chunk
POS_REACH = 64  # half the positional conv's 128 taps: states each side of a border that see across it


def _small_hf(architecture: str, feat_extract_norm: str):
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model
    config_cls, model_cls = {"hubert": (HubertConfig, HubertModel),
                             "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model)}[architecture]
    # the base models' conv strides / kernels and positional conv (128 taps), few small layers
    config = config_cls(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        conv_dim=(16,) * 7, feat_extract_norm=feat_extract_norm,
                        conv_bias=feat_extract_norm == "layer")
    torch.manual_seed(0)
    return model_cls(config).eval()


def _chunked_vs_whole(architecture: str, model, layer: int, context: int | None = None):
    """Per state: max |chunked - whole| and the distance in states to the nearest chunk border
    (0 = last state of a chunk or first of the next); also max |whole|. ``context``: states computed
    and dropped each side of a chunk (None: the encoder's default)."""
    from afwpipe.encoders.hf_audio import HfAudioEncoder, default_cfgs
    base = default_cfgs[architecture]
    wave = torch.from_numpy((0.1 * np.random.default_rng(4).standard_normal(12 * SR + 77)).astype(np.float32))

    def run(chunk_s):
        extra = {**base.extra, "chunk_s": chunk_s, "layer": layer, "normalize": False}
        if context is not None:
            extra["chunk_context_states"] = context
        with torch.inference_mode():
            return HfAudioEncoder(base.with_(extra=extra), model).states(wave).numpy()

    chunked, whole = run(CHUNK_S), run(100.0)
    assert chunked.shape == whole.shape == (int(np.ceil(wave.numel() / 320)), 32)
    diff = np.abs(chunked - whole).max(axis=1)
    per_chunk = int(CHUNK_S * 50)
    borders = np.arange(per_chunk, len(diff), per_chunk)  # first state of each later chunk
    idx = np.arange(len(diff))[:, None]
    dist = np.min(np.where(idx < borders, borders - 1 - idx, idx - borders), axis=1)
    return diff, dist, np.abs(whole).max()


@pytest.mark.parametrize("architecture", ["hubert", "wav2vec2"])
def test_hf_chunk_border_reaches_the_positional_conv_and_context_removes_it(architecture):
    """Layer-norm conv extractor, hidden state 0 (conv features + positional conv). Without context
    a border changes the 64 states each side of it and no other; with the default context of 64
    states the chunked states equal the whole-wave ones everywhere."""
    model = _small_hf(architecture, "layer")
    diff, dist, scale = _chunked_vs_whole(architecture, model, layer=0, context=0)
    tol = 1e-5 * scale
    assert diff[dist >= POS_REACH].max() < tol
    assert int(dist[diff > tol].max()) == POS_REACH - 1  # the measured reach: 64 states each side
    assert diff[dist == 0].min() > 1e-2 * scale
    diff, _, scale = _chunked_vs_whole(architecture, model, layer=0)
    assert diff.max() < tol


@pytest.mark.parametrize("architecture", ["hubert", "wav2vec2"])
def test_hf_chunks_still_change_every_state_through_attention_and_group_norm(architecture):
    """With the context, what stays: Transformer layers attend over the whole chunk, and the base
    models' GroupNorm (``feat_extract_norm="group"``) normalises the first conv over the whole chunk,
    so no state equals the whole-wave one. Measured on these random models: about 1e-3 of the
    states' scale after attention, a few percent with GroupNorm."""
    diff, _, scale = _chunked_vs_whole(architecture, _small_hf(architecture, "layer"), layer=-1)
    assert 1e-5 * scale < diff.min() and diff.max() < 1e-2 * scale
    diff, _, scale = _chunked_vs_whole(architecture, _small_hf(architecture, "group"), layer=0)
    assert 1e-5 * scale < diff.min() and diff.max() < 0.1 * scale
