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


class PredictError(AfwpipeError):
    """Prediction, post-processing or evaluation inputs are unusable: no trained head, a head whose feature
    stores changed since training, predictions missing for a video, or unknown post-processing settings."""


class SubmissionError(AfwpipeError):
    """A submission cannot be written: a malformed example file, or a video of the example file without
    predictions."""


def stage_main(run, *args, **kwargs) -> None:
    """Entry point of a DVC stage script (``python -m stages.<name>``): warnings go to stderr as
    ``afwpipe: WARNING: ...``, an AfwpipeError becomes one ``afwpipe: error: ...`` line and exit code 2
    (no traceback), an int returned by ``run`` is the exit code."""
    import logging
    import sys

    logging.basicConfig(level=logging.WARNING, format="afwpipe: %(levelname)s: %(message)s")
    try:
        code = run(*args, **kwargs)
    except AfwpipeError as e:
        print(f"afwpipe: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
