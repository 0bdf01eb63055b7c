"""Where torch runs: the ``auto`` device choice and the mixed precision used on CUDA."""

from __future__ import annotations

import contextlib


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; other values (``cpu``, ``cuda``, ``cuda:N``)
    pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def autocast(device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (the encoders' and heads' inference and training), nothing (fp32) elsewhere.

    Args:
        device: a ``torch.device`` or a device string.
    """
    import torch

    if torch.device(device).type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
