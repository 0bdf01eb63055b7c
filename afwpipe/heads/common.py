"""What every fusion head shares: input checking, the frame and modality masks, the fusion block and the
per-task output layers.

Inputs of a head: ``x: dict[str, Tensor [B, K, D_i]]`` (float, one entry per encoder/modality of
``in_dims``, same B and K), ``mask: Tensor [B, K] bool`` (True = a real frame, False = padding;
None = all real) and ``present: dict[str, Tensor [B, K] bool]`` (True where the modality exists in the
frame: a face was found, the audio track covers it; the batches' ``present`` of
:mod:`afwpipe.clips.collate`, False for a modality dropped by modality dropout; None = every modality in
every real frame). Outputs: ``dict[task, Tensor]`` with ``au [B, K, 12]`` logits, ``expr [B, K, 8]``
logits and ``va [B, K, 2]`` in [-1, 1] (tanh), only for the head's tasks.

Declared tasks (a generic dataset's, :mod:`afwpipe.datasets`): ``tasks`` may instead map each task to its
output spec ``{"width": C, "level": "frame" | "video", "pool": "mean" | "attention"}`` (:func:`output_specs`). A
frame task gives ``[B, K, C]`` raw outputs (logits, or values for regression: no tanh), a video task ``[B, C]``:
the frame features pooled over the clip's real frames (:mod:`afwpipe.heads.readout`), then the output layer.

Padded frames are zeroed before a head sees them, and every head keeps them from reaching real
frames, so the outputs at real frames do not depend on what the padding holds. ``present`` reaches the
fusion block: ``concat`` ignores it (an absent modality's features are what the store holds, zeros after
standardisation), ``gated`` and ``xattn`` mask absent modalities out (:mod:`afwpipe.heads.fusion`).

Options every head built on :class:`FusionHead` takes (``train.head_kwargs``):

- ``experts: N`` (default 1): each task's output layer is a mixture of ``N`` linear experts with a
  per-frame softmax gate (:class:`MixtureOfExperts`) instead of one linear layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import AfwpipeError
from ..labels import AU_NAMES, EXPR_NAMES, VA_NAMES
from ._registry import FUSIONS
from .readout import VideoReadout

#: task -> output channels per frame
TASK_DIMS = {"au": len(AU_NAMES), "expr": len(EXPR_NAMES), "va": len(VA_NAMES)}


class MixtureOfExperts(nn.Module):
    """Mixture-of-experts output layer: ``y = Σₙ gₙ(h)·(Wₙh + bₙ)`` with ``g(h) = softmax(G·h + c)`` over
    ``experts`` linear experts, per frame (a dense, soft gate: Jacobs et al. 1991, "Adaptive mixtures of
    local experts"; the MoE output head of Shanghai Normal University, ABAW10 EXPR).

    Input ``[..., hidden]``, output ``[..., out]``; every expert is computed (no sparse routing).
    """

    def __init__(self, hidden: int, out: int, experts: int):
        super().__init__()
        self.out_dim, self.n_experts = out, experts
        self.gate = nn.Linear(hidden, experts)
        self.experts = nn.Linear(hidden, experts * out)

    def gate_weights(self, h: Tensor) -> Tensor:
        """``[..., experts]`` gate probabilities (sum 1 per frame)."""
        return self.gate(h).softmax(-1)

    def forward(self, h: Tensor) -> Tensor:
        e = self.experts(h).unflatten(-1, (self.n_experts, self.out_dim))
        return (self.gate_weights(h).unsqueeze(-1) * e).sum(-2)


def output_layer(hidden: int, out: int, experts: int = 1) -> nn.Module:
    """One ``nn.Linear(hidden, out)`` for ``experts == 1``, else a :class:`MixtureOfExperts`.

    Raises:
        AfwpipeError: ``experts < 1``.
    """
    if int(experts) < 1:
        raise AfwpipeError(f"experts must be ≥ 1 (1 = one linear output layer), got {experts}")
    return nn.Linear(hidden, out) if int(experts) == 1 else MixtureOfExperts(hidden, out, int(experts))


def output_specs(tasks) -> dict[str, dict] | None:
    """``tasks`` as the output specs of declared tasks (name -> ``{width, level, pool}``), or None for a
    sequence of built-in task names (au, expr, va).

    Raises:
        AfwpipeError: a spec without a positive ``width`` or with a ``level`` other than frame / video.
    """
    if not isinstance(tasks, Mapping):
        return None
    out = {}
    for name, spec in tasks.items():
        width, level = int(spec.get("width", 0)), spec.get("level")
        if width < 1 or level not in ("frame", "video"):
            raise AfwpipeError(f"task {name!r}: output spec needs width ≥ 1 and level frame or video, got {dict(spec)}")
        out[str(name)] = {"width": width, "level": level, "pool": str(spec.get("pool", "mean"))}
    if not out:
        raise AfwpipeError("a head needs at least one task (the output specs are empty)")
    return out


class FusionHead(nn.Module):
    """Base class: subclasses implement ``encode(x, mask, present) -> Tensor [B, K, hidden]``.

    Args:
        in_dims: encoder/modality name -> feature dim; its order is the concatenation order.
        tasks: non-empty subset of ``("au", "expr", "va")``, or declared tasks' output specs
            (:func:`output_specs`; module docstring).
        hidden: width of the features ``encode`` returns, fed to one output layer per task.
        experts: experts of each task's output layer (1: one ``nn.Linear``; module docstring).
    """

    def __init__(self, in_dims: dict[str, int], tasks: Sequence[str], hidden: int, *, experts: int = 1):
        super().__init__()
        if not in_dims:
            raise AfwpipeError("a head needs at least one input encoder (in_dims is empty)")
        self.in_dims = {str(k): int(v) for k, v in in_dims.items()}
        self.outputs = output_specs(tasks)
        if self.outputs is not None:
            self.tasks = tuple(self.outputs)
            self.task_layers = nn.ModuleDict({t: output_layer(hidden, o["width"], experts)
                                              for t, o in self.outputs.items() if o["level"] == "frame"})
            self.video_layers = nn.ModuleDict({t: VideoReadout(hidden, o["pool"], output_layer(hidden, o["width"], experts))
                                               for t, o in self.outputs.items() if o["level"] == "video"})
            return
        bad = [t for t in tasks if t not in TASK_DIMS]
        if bad or not tasks or len(set(tasks)) != len(tasks):
            raise AfwpipeError(f"tasks must be a non-empty subset of {sorted(TASK_DIMS)} without repeats, got {list(tasks)}")
        self.tasks = tuple(tasks)
        self.task_layers = nn.ModuleDict({t: output_layer(hidden, TASK_DIMS[t], experts) for t in self.tasks})

    def build_fusion(self, fusion: str, dim: int, dropout: float, fusion_kwargs: Mapping | None = None) -> int:
        """Set ``self.fusion`` to the fusion block ``fusion`` of :data:`~afwpipe.heads.FUSIONS` (``concat``,
        ``gated``, ``msf``, ``xattn``) of width ``dim``; returns its output width (``concat``: ΣD_i).

        Raises:
            AfwpipeError: unknown fusion name (the message lists the registered ones) or bad ``fusion_kwargs``.
        """
        try:
            self.fusion = FUSIONS.create(str(fusion), self.in_dims, int(dim), dropout=dropout, **dict(fusion_kwargs or {}))
        except TypeError as e:
            raise AfwpipeError(f"fusion {fusion!r}: bad fusion_kwargs {dict(fusion_kwargs or {})}: {e}") from None
        return self.fusion.out_dim

    def fuse(self, x: dict[str, Tensor], mask: Tensor, present: dict[str, Tensor]) -> Tensor:
        """The fusion block's per-frame features ``[B, K, out_dim]`` (:meth:`build_fusion`)."""
        return self.fusion(x, mask, present)

    def encode(self, x: dict[str, Tensor], mask: Tensor, present: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def forward(self, x: dict[str, Tensor], mask: Tensor | None = None,
                present: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Per-frame outputs for each task; see the module docstring for shapes."""
        mask = self.check_inputs(x, mask)
        present = self.check_present(present, mask)
        h = self.encode(x, mask, present)
        out = {t: layer(h) for t, layer in self.task_layers.items()}
        if self.outputs is not None:
            return {**out, **{t: readout(h, mask) for t, readout in self.video_layers.items()}}
        if "va" in out:
            out["va"] = torch.tanh(out["va"])
        return out

    def check_inputs(self, x: dict[str, Tensor], mask: Tensor | None) -> Tensor:
        """Validate keys and shapes; return the bool mask ``[B, K]`` (all True when None)."""
        if set(x) != set(self.in_dims):
            raise AfwpipeError(f"head expects inputs {sorted(self.in_dims)}, got {sorted(x)}")
        first = x[next(iter(self.in_dims))]
        b, k = first.shape[:2]
        for name, dim in self.in_dims.items():
            if x[name].ndim != 3 or tuple(x[name].shape) != (b, k, dim):
                raise AfwpipeError(f"input {name!r}: expected shape [{b}, {k}, {dim}], got {list(x[name].shape)}")
        if mask is None:
            return torch.ones(b, k, dtype=torch.bool, device=first.device)
        if tuple(mask.shape) != (b, k):
            raise AfwpipeError(f"mask: expected shape [{b}, {k}], got {list(mask.shape)}")
        return mask.bool()

    def check_present(self, present: Mapping[str, Tensor] | None, mask: Tensor) -> dict[str, Tensor]:
        """``present`` per modality as bool ``[B, K]`` and-ed with ``mask`` (padding is never present);
        every modality present on every real frame when None.

        Raises:
            AfwpipeError: ``present`` lacks a modality of ``in_dims`` or has the wrong shape.
        """
        if present is None:
            return {n: mask for n in self.in_dims}
        out = {}
        for n in self.in_dims:
            if n not in present:
                raise AfwpipeError(f"present: no mask for input {n!r} (has {sorted(present)})")
            if tuple(present[n].shape) != tuple(mask.shape):
                raise AfwpipeError(f"present[{n!r}]: expected shape {list(mask.shape)}, got {list(present[n].shape)}")
            out[n] = present[n].bool() & mask
        return out


def zero_frames(x: Tensor, keep: Tensor) -> Tensor:
    """``x [B, K, D]`` with the frames where ``keep [B, K]`` is False set to zero."""
    return x * keep.unsqueeze(-1).to(x.dtype)
