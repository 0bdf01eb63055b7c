"""Speech gate: the features of chosen audio encoders set to zero on frames where nobody speaks.

Option ``train.speech_gate: {encoders: [logmel], threshold: 0.5}`` (default null = off). A frame is speech
when its ``vad`` probability (``features/vad.zarr/<name>/emb [T, 1]``, Silero VAD; ``afwpipe extract
--encoder vad``) is ≥ ``threshold`` and it lies inside the audio track (``present``). On every other frame
the listed encoders' features are zeroed after standardisation (0 is their training mean), in training,
validation and prediction alike: the checkpoint's ``config`` records the gate and prediction rebuilds it.
Other encoders, labels and masks are untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import TrainError
from ..readers import ZarrFeatures

VAD = "vad"  #: the encoder whose store gates


def parse_speech_gate(gate, features: Sequence[str]) -> dict | None:
    """``train.speech_gate`` as ``{"encoders": [...], "threshold": float}``, or None when off.

    Args:
        gate: None, or a mapping with ``encoders`` (list or comma-separated string) and optionally
            ``threshold`` (default 0.5, silero's).
        features: the run's encoders (``train.features``).

    Raises:
        TrainError: not a mapping, unknown keys, no encoder, an encoder not in ``features`` or ``vad``
            itself, or a threshold outside [0, 1].
    """
    if gate is None:
        return None
    if not isinstance(gate, Mapping) or set(gate) - {"encoders", "threshold"}:
        raise TrainError(f"train.speech_gate must be null or {{encoders: [...], threshold: 0.5}}, got {gate!r}")
    encoders = gate.get("encoders") or []
    encoders = [e for e in encoders.split(",") if e] if isinstance(encoders, str) else list(encoders)
    if not encoders:
        raise TrainError("train.speech_gate: no encoder to gate (e.g. encoders: [logmel])")
    bad = [e for e in encoders if e not in features or e == VAD]
    if bad:
        raise TrainError(f"train.speech_gate: {', '.join(bad)} not gateable: gated encoders must be in "
                         f"train.features ({', '.join(features)}) and not {VAD} itself")
    try:
        threshold = float(gate.get("threshold", 0.5))
    except (TypeError, ValueError):
        threshold = float("nan")
    if not 0.0 <= threshold <= 1.0:
        raise TrainError(f"train.speech_gate.threshold must be in [0, 1], got {gate.get('threshold')!r}")
    return {"encoders": encoders, "threshold": threshold}


class SpeechGate:
    """Applies a parsed gate (:func:`parse_speech_gate`) to batches.

    Args:
        gate: ``{"encoders", "threshold"}``.
        vad: the ``vad`` features (:class:`~afwpipe.readers.ZarrFeatures` or ``ArrayFeatures`` of encoder
            ``vad``), read once per video.
    """

    def __init__(self, gate: Mapping, vad):
        self.encoders = list(gate["encoders"])
        self.threshold = float(gate["threshold"])
        self.vad = vad
        self._speech: dict[str, np.ndarray] = {}

    @classmethod
    def from_config(cls, ws, gate: Mapping | None, identities: Mapping[str, dict] | None = None
                    ) -> "SpeechGate | None":
        """The gate of a run (None when ``gate`` is None), reading ``features/vad.zarr`` of workspace ``ws``.

        Raises:
            TrainError: the vad store is missing (names ``afwpipe extract --encoder vad``), or a gated
                encoder's ``identities`` entry says it is not an audio encoder.
        """
        if gate is None:
            return None
        if not ws.features(VAD).is_dir():
            raise TrainError(f"train.speech_gate needs the {VAD} features: no {ws.features(VAD)}; "
                             f"run `afwpipe extract --encoder {VAD}` first")
        for enc in gate["encoders"]:
            modality = (identities or {}).get(enc, {}).get("modality", "audio")
            if modality != "audio":
                raise TrainError(f"train.speech_gate: {enc} is a {modality} encoder; only audio encoders are gated")
        return cls(gate, ZarrFeatures(ws, [VAD]))

    def speech(self, name: str, n_frames: int) -> np.ndarray:
        """``[T]`` bool: vad probability ≥ threshold inside the audio track, for video ``name``.

        Raises:
            TrainError: the video has no complete vad features, or their length is not ``n_frames``.
        """
        if name not in self._speech:
            emb, present = self.vad.load(VAD, name)
            if len(emb) != n_frames:
                raise TrainError(f"video {name!r}: {VAD} features have {len(emb)} frames, the other features "
                                 f"{n_frames}; re-extract with `afwpipe extract --encoder {VAD}`")
            self._speech[name] = (emb[:, 0].astype(np.float32) >= self.threshold) & present
        return self._speech[name]

    def apply(self, batch: dict, clips: np.ndarray, names: Sequence[str], n_frames: Sequence[int]) -> None:
        """Zero, in place, ``batch["x"][enc]`` of the gated encoders on the clips' non-speech frames.

        Args:
            batch: a collated batch (:mod:`afwpipe.clips.collate`); clips: its rows ``[B, 2]`` (video, start).
        """
        k = next(iter(batch["x"].values())).shape[1]
        keep = np.zeros((len(clips), k), bool)
        for row, (v, s) in enumerate(clips):
            n = min(k, n_frames[v] - s)
            keep[row, :n] = self.speech(names[v], n_frames[v])[s:s + n]
        for enc in self.encoders:
            batch["x"][enc].numpy()[~keep] = 0.0
