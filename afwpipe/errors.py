"""Exceptions raised by afwpipe. Every message names the file (or video) and what is wrong."""


class AfwpipeError(Exception):
    """Base class: a problem with the user's input or environment, reported without a traceback by the CLI."""


class AnnotationError(AfwpipeError):
    """An annotation file is malformed (missing header, wrong column count, non-numeric value)."""


class VideoError(AfwpipeError):
    """A video cannot be opened or decoded (corrupt, truncated, no video stream)."""


class FetchError(AfwpipeError):
    """A download failed (registry unreachable) or a file's sha256 differs from the manifest."""


class DatasetError(AfwpipeError):
    """A dataset root or folder does not exist, or the manifest is inconsistent."""


class WeightsError(AfwpipeError):
    """Model weights are missing and cannot be downloaded; the message says how to get them."""


class EncoderError(AfwpipeError):
    """An unknown encoder name (the message lists the registered ones) or an invalid encoder option."""


class TrainError(AfwpipeError):
    """Training inputs are unusable: a missing feature store, features whose length disagrees between
    encoders or with the labels, NaN/Inf in features, or a fold/task with no labelled frame."""


class ConfigError(AfwpipeError):
    """A params.yaml key or a command-line setting is unknown or invalid (the message names the key and
    lists the known ones)."""


class PredictError(AfwpipeError):
    """Prediction inputs are unusable: no trained head, a head whose feature stores changed since training,
    or predictions missing for a video."""


class PostprocessError(AfwpipeError):
    """Post-processing inputs or settings are unusable: no predictions for a track, an unknown smoothing
    method, ensemble or threshold setting, or a malformed model metrics file."""


class EvaluateError(AfwpipeError):
    """Evaluation inputs or settings are unusable: no post-processed systems, or an unknown plotted system
    or trace video."""


class SubmissionError(AfwpipeError):
    """A submission cannot be written: a malformed example file, or a video of the example file without
    predictions."""


class RenderError(AfwpipeError):
    """A per-frame table cannot be drawn: no rows, or a row count that differs from the video's decoded
    frames (the message names the video and both counts)."""


class ASRError(AfwpipeError):
    """An unknown speech recogniser (the message lists the registered ones), an invalid ASR option, or a
    transcript store that is missing or unusable."""


class DescribeError(AfwpipeError):
    """An unknown vision-language model (the message lists the registered families), an invalid describe option,
    or a descriptions store that is missing or unusable."""


class RecordError(AfwpipeError):
    """A stored record (an ``index.json`` entry, a ``model.pt`` checkpoint) lacks a field, has a field of the
    wrong type, or has a version this afwpipe does not read (:mod:`afwpipe.records`); the message names the
    file, the record and the field."""
