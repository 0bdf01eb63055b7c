"""``params.yaml`` loading: one place that knows the defaults and where a dataset's workspace lives."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .errors import AfwpipeError
from .manifest import DEFAULT_MANIFEST, DatasetSpec, dataset_spec
from .store import Workspace

DEFAULT_PARAMS = Path("params.yaml")

DEFAULTS: dict = {
    "dataset": {"name": "sample", "root": None},
    "workdir": "work",
    "detect": {"detector": "mtcnn", "size": 224, "batch_size": 16, "device": "auto", "use_cropped": False},
    "extract": {"encoders": ["mini_xception", "logmel"], "batch_size": 32, "device": "auto", "weights": {}},
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict:
    """Return ``DEFAULTS`` updated with ``path`` (if it exists).

    Raises:
        AfwpipeError: the file exists but is not a YAML mapping.
    """
    path = Path(path)
    if not path.is_file():
        return copy.deepcopy(DEFAULTS)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise AfwpipeError(f"{path}: expected a YAML mapping of parameters")
    return _merge(DEFAULTS, data)


def dataset_and_workspace(params: dict, manifest: str | Path = DEFAULT_MANIFEST) -> tuple[DatasetSpec, Workspace]:
    """The dataset named in ``params`` and its workspace ``<workdir>/<dataset.name>``."""
    ds = params["dataset"]
    spec = dataset_spec(ds["name"], manifest, root=ds.get("root"), edition=ds.get("edition"))
    return spec, Workspace(Path(params["workdir"]) / spec.name)
