"""What every fusion head shares: input checking, the frame mask, and the per-task output layers.

Inputs of a head: ``x: dict[str, Tensor [B, K, D_i]]`` (float, one entry per encoder/modality of
``in_dims``, same B and K) and ``mask: Tensor [B, K] bool`` (True = a real frame, False = padding;
None = all real). Outputs: ``dict[task, Tensor]`` with ``au [B, K, 12]`` logits, ``expr [B, K, 8]``
logits and ``va [B, K, 2]`` in [-1, 1] (tanh), only for the head's tasks.

Padded frames are zeroed before a head sees them, and every head keeps them from reaching real
frames, so the outputs at real frames do not depend on what the padding holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import AfwpipeError
from ..labels import AU_NAMES, EXPR_NAMES, VA_NAMES

#: task -> output channels per frame
TASK_DIMS = {"au": len(AU_NAMES), "expr": len(EXPR_NAMES), "va": len(VA_NAMES)}


class FusionHead(nn.Module):
    """Base class: subclasses implement ``encode(x, mask) -> Tensor [B, K, hidden]``.

    Args:
        in_dims: encoder/modality name -> feature dim; its order is the concatenation order.
        tasks: non-empty subset of ``("au", "expr", "va")``.
        hidden: width of the features ``encode`` returns, fed to one ``nn.Linear`` per task.
    """

    def __init__(self, in_dims: dict[str, int], tasks: Sequence[str], hidden: int):
        super().__init__()
        if not in_dims:
            raise AfwpipeError("a head needs at least one input encoder (in_dims is empty)")
        bad = [t for t in tasks if t not in TASK_DIMS]
        if bad or not tasks or len(set(tasks)) != len(tasks):
            raise AfwpipeError(f"tasks must be a non-empty subset of {sorted(TASK_DIMS)} without repeats, got {list(tasks)}")
        self.in_dims = {str(k): int(v) for k, v in in_dims.items()}
        self.tasks = tuple(tasks)
        self.task_layers = nn.ModuleDict({t: nn.Linear(hidden, TASK_DIMS[t]) for t in self.tasks})

    def encode(self, x: dict[str, Tensor], mask: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: dict[str, Tensor], mask: Tensor | None = None) -> dict[str, Tensor]:
        """Per-frame outputs for each task; see the module docstring for shapes."""
        mask = self.check_inputs(x, mask)
        h = self.encode(x, mask)
        out = {t: layer(h) for t, layer in self.task_layers.items()}
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

    def masked(self, name: str, x: dict[str, Tensor], mask: Tensor) -> Tensor:
        """``x[name]`` with padded frames set to zero."""
        return x[name] * mask.unsqueeze(-1).to(x[name].dtype)

    def concat(self, x: dict[str, Tensor], mask: Tensor) -> Tensor:
        """Inputs concatenated along features in ``in_dims`` order, padded frames zeroed: ``[B, K, ΣD_i]``."""
        return torch.cat([self.masked(n, x, mask) for n in self.in_dims], dim=-1)
