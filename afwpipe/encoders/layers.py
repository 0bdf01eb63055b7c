"""The ``layer`` option of the ``hf:<repo_id>`` and ``timm:<model_id>`` encoders: one layer, or the mean
of a range of layers.

Accepted values (params.yaml ``extract.options``, or ``create_encoder(..., layer=...)``):

* an int: that layer; negative counts from the end (``-1`` is the last);
* a string ``"A-B"`` (e.g. ``"6-12"``, ``"-4--1"``): the mean of layers A..B, both included;
* a pair ``[A, B]``: the same range.

What a layer index means is the encoder's: for ``hf:`` audio models the hidden state (0 = the input of
the first Transformer layer, L = the output of the last of L layers: ``hidden_states`` of transformers),
for ``timm:`` models the block output (0..n_blocks-1, ``forward_intermediates`` of timm >= 1.0).
"""

from __future__ import annotations

import re

from ..errors import EncoderError

_RANGE = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+))?\s*$")


def layer_range(name: str, layer, n: int) -> tuple[int, int]:
    """Absolute indices ``(first, last)`` (inclusive, ``0 <= first <= last < n``) of ``layer`` among
    ``n`` layers.

    Args:
        name: encoder name, for messages.
        layer: int, ``"A-B"`` / ``"A"`` string, or ``[A, B]`` (see the module docstring).
        n: how many layers can be chosen (indices ``0..n-1``, or ``-n..-1``).

    Raises:
        EncoderError: malformed value, an index out of ``-n..n-1``, or a range whose first layer comes
            after its last.
    """
    if isinstance(layer, bool):
        raise EncoderError(f"{name}: layer={layer!r}: expected an int, 'A-B' or [A, B]")
    if isinstance(layer, int):
        ends = (layer, layer)
    elif isinstance(layer, str) and _RANGE.match(layer):
        a, b = _RANGE.match(layer).groups()
        ends = (int(a), int(b if b is not None else a))
    elif isinstance(layer, (list, tuple)) and len(layer) == 2 and all(isinstance(v, int) for v in layer):
        ends = (layer[0], layer[1])
    else:
        raise EncoderError(f"{name}: layer={layer!r}: expected an int, 'A-B' (mean of layers A..B) or [A, B]")
    for e in ends:
        if not -n <= e < n:
            raise EncoderError(f"{name}: layer={layer!r} out of range; the model has layers 0..{n - 1} "
                               f"(or -1..-{n})")
    first, last = (e % n for e in ends)
    if first > last:
        raise EncoderError(f"{name}: layer={layer!r}: the range's first layer ({first}) comes after its last ({last})")
    return first, last


def layer_label(layer, first: int, last: int):
    """What the store records: the int as given for one layer, ``"A-B"`` (absolute) for a range."""
    return layer if isinstance(layer, int) else (first if first == last else f"{first}-{last}")
