"""Speech activity (``vad``, Silero VAD) and the speech gate of training.

The speech clip (tests/data/speech_clip.mp4) carries two espeak-ng utterances whose spans in
speech_clip.json were measured on the synthesised waveforms, not by afwpipe. Frame times come from PyAV
(``probe_video``) and the wave from afwpipe's own audio reading; the extract step runs unchanged.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner

from synth import complete_index
from afwpipe import store
from afwpipe.cli import main
from afwpipe.clips import ClipDataset
from afwpipe.clips.gate import SpeechGate
from afwpipe.encoders import create_encoder, frame_spans
from afwpipe.encoders import vad as vad_module
from afwpipe.errors import EncoderError, TrainError, WeightsError
from afwpipe.extract import ExtractConfig, run_extract
from afwpipe.inference import checkpoint_stats, load_model, predict_frames
from afwpipe.predict import predict_model
from afwpipe.readers import ZarrFeatures, load_labels
from afwpipe.train import TrainConfig, train
from afwpipe.video import probe_video, read_audio

from conftest import REPO
from test_clips import make_workspace, write_features

CLIP = REPO / "tests" / "data" / "speech_clip.mp4"
META = json.loads((REPO / "tests" / "data" / "speech_clip.json").read_text())
MARGIN_S = 0.3  # frames at least this far from every utterance must be non-speech


@pytest.fixture(scope="module")
def encoder():
    return create_encoder("vad")


@pytest.fixture(scope="module")
def clip_ws(tmp_path_factory):
    """faces.zarr / audio.zarr as detect writes them for the speech clip (real frame times and wave) and a
    video without an audio track; then ``afwpipe extract --encoder vad``'s step."""
    ws = store.Workspace(tmp_path_factory.mktemp("vad"))
    info, wave = probe_video(CLIP), read_audio(CLIP)
    videos = {"speech_clip": (info.times, wave), "mute": (np.arange(40) / 25.0, None)}
    for name, (times, w) in videos.items():
        g = store.begin_video(ws.faces, name)
        store.write_time_array(g, "crops", np.zeros((len(times), 8, 8, 3), np.uint8))
        store.write_time_array(g, "present", np.ones(len(times), bool))
        store.write_time_array(g, "times", times)
        store.mark_complete(g)
        a = store.begin_video(ws.audio, name, {"sample_rate": 16000})
        store.write_time_array(a, "wave", w if w is not None else np.zeros(16000, np.float32))
        store.mark_complete(a, present=w is not None)
    ws.index.write_text(json.dumps(complete_index({"videos": [{"name": n, "path": f"{n}.mp4"} for n in videos]})))
    summary = run_extract(ws, ExtractConfig("vad", device="cpu"), progress=False)
    assert not summary.failures
    return ws, info.times


def _span_masks(times: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Frames wholly inside an utterance, frames ≥ MARGIN_S from every utterance, and per utterance."""
    start, end = frame_spans(times)
    per_span = [(start >= s["start"]) & (end <= s["end"]) for s in META["speech"]]
    near = np.zeros(len(times), bool)
    for s in META["speech"]:
        near |= (end > s["start"] - MARGIN_S) & (start < s["end"] + MARGIN_S)
    return np.any(per_span, axis=0), ~near, per_span


def test_vad_marks_the_spoken_spans_of_the_speech_clip(clip_ws):
    ws, times = clip_ws
    g = zarr.open_group(str(ws.features("vad")), mode="r")["speech_clip"]
    prob, speech = g["emb"][...], g["speech"][...]
    assert prob.shape == (len(times), 1) and prob.dtype == np.float16 and speech.dtype == bool
    assert g["present"][...].all() and g.attrs["weights"].startswith("sha256:")
    inside, far, per_span = _span_masks(times)
    assert inside.sum() > 60 and far.sum() > 40  # both sets are large enough to mean something
    assert speech[inside].mean() >= 0.9  # measured 0.915 (75 of 82 frames)
    assert (~speech[far]).mean() >= 0.9  # measured 1.0 (53 of 53 frames)
    for span in per_span:  # the comma pause of "hello, how are you today" is silence inside its span
        assert speech[span].mean() >= 0.8  # measured 0.83 and 1.0
    np.testing.assert_array_equal(speech, prob[:, 0] >= 0.5)


def test_video_without_audio_gets_zeros_not_present_and_no_speech(clip_ws):
    ws, _ = clip_ws
    g = zarr.open_group(str(ws.features("vad")), mode="r")["mute"]
    assert g["emb"].shape == (40, 1)
    assert not g["emb"][...].any() and not g["present"][...].any() and not g["speech"][...].any()


def test_batched_states_equal_silero_own_audio_forward(encoder, monkeypatch):
    """The batched encoder + stepped LSTM against the library's window-by-window ``audio_forward``, across
    block borders (BLOCK made small) and with a last window that needs padding."""
    monkeypatch.setattr(vad_module, "BLOCK", 37)
    wave = torch.from_numpy(read_audio(CLIP)[:-300])
    assert wave.numel() % vad_module.WINDOW != 0
    with torch.inference_mode():
        ours = encoder.states(wave)[:, 0].numpy()
        ref = encoder.model.audio_forward(wave[None], 16000)[0].numpy()
    assert ours.shape == ref.shape == (-(-wave.numel() // 512),)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert ref.max() > 0.9 and ref.min() < 0.1  # the clip holds both speech and silence


def test_encoders_command_lists_vad_available_offline(monkeypatch):
    monkeypatch.setenv("AFWPIPE_OFFLINE", "1")
    res = CliRunner().invoke(main, ["encoders"])
    assert res.exit_code == 0, res.output
    encoder_table = res.output.split("\n\n")[0]  # the encoder table; the speech recognisers follow a blank line
    rows = {line.split()[0]: line.split() for line in encoder_table.splitlines()[1:]}
    assert rows["vad"][1:3] == ["audio", "1"] and "silero-vad" in res.output and "yes" in rows["vad"]


def test_random_weights_and_a_foreign_file_are_clear_errors(tmp_path):
    with pytest.raises(EncoderError, match="random"):
        create_encoder("vad", weights="random")
    bad = tmp_path / "not_a_model.jit"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(WeightsError, match="not a Silero VAD TorchScript model"):
        create_encoder("vad", weights=str(bad))


# -- the speech gate --------------------------------------------------------------------------------------

GATE = {"encoders": ["aud"], "threshold": 0.5}
TCN = dict(channels=16, mlp_dim=32, dilations=(1, 2), dropout=0.1)


def _write_vad(ws, rng) -> dict[str, np.ndarray]:
    """A vad store whose probabilities are 0.2, 0.5 or 0.8 per frame; returns the hand-made speech masks
    (0.5 counts as speech: probability ≥ threshold; frames 0..2 lie outside the audio track)."""
    speech = {}
    for rec in ws.read_index().records:
        t = rec.n_frames
        prob = rng.choice([0.2, 0.5, 0.8], size=t)
        present = np.ones(t, bool)
        present[:3] = False
        prob[:3] = 0.0
        write_features(ws, "vad", rec.name, prob[:, None], present)
        speech[rec.name] = prob >= 0.5
    return speech


@pytest.fixture(scope="module")
def gate_ws(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("gate"), n_videos=4, n_frames=[50, 61, 40, 45], n_val=1)
    return ws, _write_vad(ws, np.random.default_rng(3))


def test_gate_zeroes_exactly_the_non_speech_frames_of_the_chosen_encoder(gate_ws):
    ws, speech = gate_ws
    names = ["v0", "v1", "v2", "v3"]
    features, labels = ZarrFeatures(ws, ["vis", "aud"]), load_labels(ws, names)
    plain = ClipDataset(features, labels, names, k=16, stride=8)
    stats = plain.feature_stats()
    plain.set_stats(stats)
    gated = ClipDataset(features, labels, names, k=16, stride=8, stats=stats,
                        gate=SpeechGate.from_config(ws, GATE))
    n_zeroed = 0
    for bp, bg in zip(plain.batches(5), gated.batches(5)):
        expect = np.zeros(bp["mask"].shape, bool)  # True: speech frame of a real (unpadded) frame
        for row, (v, s) in enumerate(zip(bp["video"].tolist(), bp["start"].tolist())):
            n = int(bp["mask"][row].sum())
            expect[row, :n] = speech[names[v]][s:s + n]
        aud_p, aud_g = bp["x"]["aud"].numpy(), bg["x"]["aud"].numpy()
        np.testing.assert_array_equal(aud_g[expect], aud_p[expect])
        assert not aud_g[~expect].any()
        n_zeroed += int((aud_p[~expect & bp["mask"].numpy()] != 0).any(axis=-1).sum())
        np.testing.assert_array_equal(bg["x"]["vis"].numpy(), bp["x"]["vis"].numpy())
        for key in ("mask", "video", "start"):
            assert torch.equal(bg[key], bp[key])
        for enc in ("vis", "aud"):
            assert torch.equal(bg["present"][enc], bp["present"][enc])
        for task in bp["labels"]:
            assert torch.equal(bg["labels"][task], bp["labels"][task])
    assert n_zeroed > 50  # the gate had non-zero standardised features to remove


def test_gated_head_records_the_gate_and_prediction_applies_it(gate_ws, tmp_path):
    ws, _ = gate_ws
    cfg = TrainConfig(task="va", head="tcn", features=["vis", "aud"], k=16, epochs=1, patience=0, lr=3e-3,
                      batch_size=4, head_kwargs=TCN, device="cpu", speech_gate=GATE)
    run = train(ws, cfg, progress=False, out_dir=tmp_path / "m")
    head, ckpt = load_model(run.model_dir / "model.pt")
    assert ckpt.config["speech_gate"] == GATE
    names = ["v3"]
    features, labels = ZarrFeatures(ws, ["vis", "aud"]), load_labels(ws, names)

    def by_hand(gate):
        ds = ClipDataset(features, labels, names, 16, 8, training=False, stats=checkpoint_stats(ckpt),
                         cache_bytes=None, gate=gate)
        return predict_frames(head, ds)["v3"]["va"]

    got = predict_model(ws, head, ckpt, names)["v3"]["va"]
    np.testing.assert_allclose(got, by_hand(SpeechGate.from_config(ws, GATE)), rtol=0, atol=1e-6)
    assert np.abs(got - by_hand(None)).max() > 1e-4  # without the gate the outputs differ


def test_gate_without_vad_store_names_the_extract_command(tmp_path):
    ws = make_workspace(tmp_path / "w", n_videos=3, n_frames=40, n_val=1)
    cfg = TrainConfig(task="va", head="tcn", features=["vis", "aud"], k=16, epochs=1, head_kwargs=TCN,
                      device="cpu", speech_gate=GATE)
    with pytest.raises(TrainError, match="afwpipe extract --encoder vad"):
        train(ws, cfg, progress=False)


@pytest.mark.parametrize("gate, message", [
    ({"encoders": ["whisper"]}, "not gateable"),
    ({"encoders": []}, "no encoder"),
    ({"encoders": ["aud"], "threshold": 1.5}, r"in \[0, 1\]"),
    ({"encoders": ["aud"], "thresh": 0.5}, "must be null or"),
])
def test_bad_gate_settings_are_clear_errors(gate, message):
    with pytest.raises(TrainError, match=message):
        TrainConfig(features=["vis", "aud"], speech_gate=gate)


def test_a_visual_encoder_is_not_gated(gate_ws):
    ws, _ = gate_ws
    identities = {"vis": {"modality": "visual"}}
    with pytest.raises(TrainError, match="vis is a visual encoder"):
        SpeechGate.from_config(ws, {"encoders": ["vis"], "threshold": 0.5}, identities)
