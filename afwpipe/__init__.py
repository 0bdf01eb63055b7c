"""afwpipe: an offline feature-cache pipeline for affective behaviour analysis on video.

Stages: index -> detect (faces + audio) -> extract (frozen encoders) -> train (fusion heads)
-> predict -> postprocess -> evaluate. See README.md and the ``afwpipe`` command.
"""

__version__ = "0.1.0"
