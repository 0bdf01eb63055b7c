"""ASR registry: :data:`ASRS`, an :class:`afwpipe.registry.Registry` like the encoders' and detectors'.

A factory is ``fn(weights=None, device="cpu") -> ASR``, registered with its default
:class:`~afwpipe.asr.base.ASRConfig` and the source of its default weights (None: inside the package).
"""

from __future__ import annotations

from ..errors import ASRError
from ..registry import Registry

ASRS = Registry("ASR", ASRError)
register_asr = ASRS.register
list_asrs = ASRS.list  #: sorted names, optionally matching a shell-style pattern
is_asr = ASRS.is_registered  #: whether a name is registered


def create_asr(name: str, weights: str | None = None, device: str = "cpu"):
    """Build ASR ``name``.

    Args:
        name: a registered name (see :func:`list_asrs`): ``pocketsphinx``, ``whisper``, ``whisper-<size>``.
        weights: None (default weights: inside the package for pocketsphinx, whisper's cache for whisper),
            a checkpoint file, or ``"random"`` (whisper only; a smoke test).
        device: torch device string (whisper; pocketsphinx runs on the CPU).

    Raises:
        ASRError: ``name`` is not registered; the message lists what is.
        WeightsError: weights missing and not downloadable (the message says how to get them).
    """
    return ASRS.create(name, weights=weights, device=device)


def describe_asrs() -> list[dict]:
    """One dict per ASR: name, weights (where they come from), offline (usable here without a download)."""
    from ..encoders.registry import _describe_source, _offline

    return [{"name": e.name, "weights": e.default_cfg.weights_note if e.source is None else _describe_source(e.source),
             "offline": _offline(e.source)} for e in ASRS.entries()]
