"""What the data means, in one place: label vocabularies of Aff-Wild2 (ABAW3..8), invalid markers,
valid-label masks, the task and track lists, and the audio sample rate of the stores.

Source: ABAW challenge papers (Kollias et al., ABAW3 2022 .. ABAW8 2025) and the annotation files'
headers (docs/affwild2.md). Line i (1-based, after the header) of an annotation file labels decoded
frame i-1.
"""

from __future__ import annotations

import numpy as np

AU_NAMES = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
EXPR_NAMES = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
VA_NAMES = ("valence", "arousal")

#: task -> (folder prefix, column names, invalid marker)
TASKS = {
    "au": ("AU", AU_NAMES, -1),
    "expr": ("EXPR", EXPR_NAMES, -1),
    "va": ("VA", VA_NAMES, -5),
}
AU_INVALID = -1
EXPR_INVALID = -1
VA_INVALID = -5.0

#: the face an annotation name labels (index.json ``side``): the left or right person of a two-person video
#: (``X_left`` / ``X_right``, and a bare ``X`` beside one of them), else the largest face, then tracked
SIDE_CHOICES = ("left", "right", "largest")

#: the three ABAW tracks (uni-task challenges), in the order every table and file uses
TRACKS = ("au", "expr", "va")
#: what a head can be trained on: one track's labels, or all three (multi-task)
TRAIN_TASKS = TRACKS + ("mtl",)
#: training task -> the tracks a head of that task outputs
HEAD_TASKS = {"au": ("au",), "expr": ("expr",), "va": ("va",), "mtl": TRACKS}

#: Hz; ``audio.zarr`` holds 16 kHz mono, the rate every audio encoder here takes (Whisper, HuBERT,
#: wav2vec 2.0 are trained on 16 kHz speech)
AUDIO_SAMPLE_RATE = 16_000


def valid_mask(labels: np.ndarray, task: str) -> np.ndarray:
    """Mask of valid labels along every axis but the last label axis.

    Args:
        labels: ``au [..., 12]``, ``expr [...]`` or ``va [..., 2]`` with the task's invalid marker.
        task: ``au``, ``expr`` or ``va``.

    Returns:
        bool ``[...]`` (``[T]`` for a video, ``[B, K]`` for a batch): AU needs all 12 values valid, VA both.
    """
    ok = labels != TASKS[task][2]
    return ok if task == "expr" else ok.all(axis=-1)
