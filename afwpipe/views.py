"""Cached views of a face crop: the extract step encodes each block of crops once per view and stores one
feature array per view beside ``emb`` in the same video group.

View names:

* ``full``: the crop as detected (stored as ``emb``, so every reader that knows nothing of views is unchanged).
* ``flip``: the horizontal mirror of the crop (stored as ``emb_flip``).
* ``crop<X>`` with 0 < X < 1, e.g. ``crop0.8``: the centre square of side ``round(X * S)`` of an ``S x S``
  crop, resized back to ``S x S`` (bilinear with antialias, torchvision's ``center_crop`` and ``resize``;
  stored as ``emb_crop0.8``).

Audio encoders that read a log-Mel spectrogram take the audio views of :mod:`afwpipe.audio_views` (``fcrop<X>``,
``tcrop<X>``, ``tfcrop<X>``, ``fmask<W>``), stored the same way.

Global plus local face views follow USTC's ABAW8 AU entry; averaging features over several crop scales
follows an ABAW10 EXPR entry. ``train.view`` picks one stored view or ``mean`` (average of
the stored views), or a list starting with ``full`` (the global view and local views as separate feature
blocks: :class:`afwpipe.readers.ZarrFeatures`); ``predict.tta`` averages a head's outputs over the stored views.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from .audio_views import AUDIO_VIEW_HELP, is_audio_view
from .errors import AfwpipeError, TrainError

FULL = "full"
#: the array of the ``full`` view; other views are ``emb_<view>``
EMB = "emb"
_CROP = re.compile(r"^crop(0?\.\d+)$")
VIEW_HELP = ("views: full (the crop, or the whole audio), flip (horizontal mirror), crop<X> (centre crop of X*S, "
             "0<X<1, resized back to S, e.g. crop0.8); " + AUDIO_VIEW_HELP)


def parse_view(name: str, error: type[AfwpipeError] = AfwpipeError) -> str:
    """A checked view name (``full``, ``flip``, ``crop<X>`` with 0 < X < 1, or an audio view of
    :mod:`afwpipe.audio_views`), stripped.

    Raises:
        ``error`` (an AfwpipeError subclass): an unknown name or a crop scale outside (0, 1).
    """
    name = str(name).strip()
    if name in (FULL, "flip") or is_audio_view(name):
        return name
    m = _CROP.match(name)
    if m and 0.0 < float(m.group(1)) < 1.0:
        return name
    raise error(f"unknown view {name!r}; {VIEW_HELP}")


def view_modality(view: str) -> str | None:
    """``"audio"`` for an audio view, ``"visual"`` for a view of face crops, None for ``full`` (both)."""
    return None if view == FULL else "audio" if is_audio_view(view) else "visual"


def parse_views(names: str | Iterable[str] | None, error: type[AfwpipeError] = AfwpipeError) -> list[str]:
    """Checked view list from a comma-separated string or a list; ``full`` always first (it is ``emb``),
    duplicates dropped. None or empty: ``[full]``.

    Raises:
        ``error``: an unknown view name (see :func:`parse_view`).
    """
    if names is None:
        names = []
    elif isinstance(names, str):
        names = names.split(",")
    out = [FULL]
    for n in names:
        if str(n).strip():
            v = parse_view(n, error)
            if v not in out:
                out.append(v)
    return out


def parse_train_view(view, error: type[AfwpipeError] = TrainError) -> str | list[str]:
    """``train.view`` checked: ``mean``, one view name, or a list (or comma-separated string) of two or more
    views starting with ``full`` (the global view, then local views read as separate feature blocks); a
    one-element list is that view.

    Raises:
        ``error``: an unknown view, ``mean`` in a list, a list not starting with ``full``, or a view twice.
    """
    if isinstance(view, str) and "," in view:
        view = view.split(",")
    if isinstance(view, str):
        return "mean" if view.strip() == "mean" else parse_view(view, error)
    views = [parse_view(v, error) for v in view]
    if len(views) == 1:
        return views[0]
    if views[0] != FULL or len(set(views)) != len(views):
        raise error(f"train.view {views}: a list is the global view 'full' then local views, each once "
                    f"(e.g. [full, tfcrop0.8]); 'mean' is a single view")
    return views


def array_name(view: str) -> str:
    """The feature array of ``view`` in a video group: ``emb`` for ``full``, else ``emb_<view>``."""
    return EMB if view == FULL else f"{EMB}_{view}"


def apply_view(crops: np.ndarray, view: str) -> np.ndarray:
    """The crops seen through ``view``.

    Args:
        crops: ``[B, S, S, 3]`` uint8 RGB face crops.
        view: a name accepted by :func:`parse_view`.

    Returns:
        ``[B, S, S, 3]`` uint8: the same array for ``full``, the mirror for ``flip``, the centre crop of side
        ``round(X * S)`` resized back to ``S`` (torchvision, bilinear, antialias) for ``crop<X>``.
    """
    view = parse_view(view)
    if view == FULL:
        return crops
    if view == "flip":
        return np.ascontiguousarray(crops[:, :, ::-1])
    import torch
    from torchvision.transforms.v2 import functional as TF

    scale = float(view[len("crop"):])
    h, w = crops.shape[1:3]
    side = max(1, int(round(scale * min(h, w))))
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2)
    x = TF.resize(TF.center_crop(x, [side, side]), [h, w], interpolation=TF.InterpolationMode.BILINEAR,
                  antialias=True)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


__all__ = ["EMB", "FULL", "VIEW_HELP", "apply_view", "array_name", "parse_train_view", "parse_view", "parse_views",
           "view_modality"]
