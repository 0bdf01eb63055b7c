"""A workspace holding ``tests/data/speech_clip.mp4`` (two espeak-ng utterances at known times, recipe
``tests/data/make_speech_clip.py``) and a copy of it without its audio track, with just what transcribe
and extract-text read: ``index.json``, ``audio.zarr`` (as detect writes it) and ``faces.zarr`` ``times``.
Face detection is not needed by these steps, so it is skipped (it would cost a minute of CPU).

Imported by tests/test_transcribe.py and tests/test_text.py; the session fixture ``speech_workspace``
runs pocketsphinx on it once.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from synth import complete_index
from afwpipe import store
from afwpipe.labels import AUDIO_SAMPLE_RATE
from afwpipe.video import probe_video, read_audio

DATA = Path(__file__).resolve().parent / "data"
CLIP = DATA / "speech_clip.mp4"
SPEECH = json.loads((DATA / "speech_clip.json").read_text())


def strip_audio(src: Path, dst: Path) -> None:
    """Remux ``src``'s video stream alone into ``dst`` (no re-encoding)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)


def build_workspace(root: Path) -> store.Workspace:
    """Workspace with videos ``speech`` (the clip) and ``mute`` (the clip without audio)."""
    ws = store.Workspace(root)
    root.mkdir(parents=True, exist_ok=True)
    mute = root / "mute.mp4"
    strip_audio(CLIP, mute)
    videos = []
    for name, path in (("speech", CLIP), ("mute", mute)):
        info = probe_video(path)
        videos.append({"name": name, "path": str(path), "frames": len(info.times), "duration": info.duration})
        faces = store.begin_video(ws.faces, name)
        store.write_time_array(faces, "times", info.times - info.times[0], dims=("frame",))
        store.mark_complete(faces, n_frames=len(info.times))
        wave = read_audio(path, AUDIO_SAMPLE_RATE)
        present = wave is not None
        if wave is None:  # as detect writes a video without audio
            wave = np.zeros(int(round(info.duration * AUDIO_SAMPLE_RATE)), np.float32)
        audio = store.begin_video(ws.audio, name, {"sample_rate": AUDIO_SAMPLE_RATE})
        store.write_time_array(audio, "wave", wave, dims=("sample",))
        store.mark_complete(audio, present=present)
    ws.index.write_text(json.dumps(complete_index({"videos": videos})))
    return ws


@pytest.fixture(scope="session")
def speech_workspace(tmp_path_factory):
    """(workspace, RunSummary) after ``transcribe`` with pocketsphinx on ``speech`` and ``mute``."""
    from afwpipe import transcribe

    ws = build_workspace(tmp_path_factory.mktemp("speech"))
    summary = transcribe.run_transcribe(ws, transcribe.TranscribeConfig(asr="pocketsphinx"), progress=False)
    return ws, summary
