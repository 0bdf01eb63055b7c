"""``params.yaml``: loading it, building each step's config from its section, and where a dataset's
workspace lives.

Defaults live in one place, the config dataclasses (``DetectConfig``, ``ExtractConfig``, ``TrainConfig``,
``PredictConfig``, ``PostConfig``, ``EvalConfig``, ``SubmitConfig``, ``DatasetConfig``); ``params.yaml``
repeats every one of them so DVC tracks each key, and ``tests/test_config.py`` holds the two equal. A
section or key missing from ``params.yaml`` takes the dataclass default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import yaml

from .errors import AfwpipeError, ConfigError
from .manifest import DEFAULT_MANIFEST, DatasetSpec, dataset_spec
from .store import Workspace

DEFAULT_PARAMS = Path("params.yaml")
#: derived data of dataset ``d`` lives in ``<workdir>/<d>`` (params ``workdir``)
DEFAULT_WORKDIR = "work"


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict:
    """The parameters of ``path``; ``{}`` (every default) when the file does not exist.

    Raises:
        AfwpipeError: the file exists but is not a YAML mapping.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise AfwpipeError(f"{path}: expected a YAML mapping of parameters")
    return data


class FromParams:
    """Mixin of the config dataclasses: :meth:`from_params` builds one from its ``params.yaml`` section.

    Class attributes:
        params_section: the section's name (for error messages).
        params_ignored: keys of the section that are not settings of one run (a DVC matrix's lists).
        params_error: the error class raised for an unknown key.
        params_weights_by: the field naming one run's model when the section's ``weights`` is a mapping
            model -> weights (``text``: ``encoder``; ``describe``: ``vlm``); None: ``weights`` is the value itself.
    """

    params_section: ClassVar[str] = ""
    params_ignored: ClassVar[tuple[str, ...]] = ()
    params_error: ClassVar[type[AfwpipeError]] = ConfigError
    params_weights_by: ClassVar[str | None] = None

    @classmethod
    def params_kwargs(cls, section: Mapping | None, overrides: Mapping) -> dict:
        """Keyword arguments from ``section`` with the non-None ``overrides`` laid over it.

        Raises:
            params_error: a key that is not a field (the message lists the known ones).
        """
        kw = {k: v for k, v in (section or {}).items() if k not in cls.params_ignored}
        kw.update({k: v for k, v in overrides.items() if v is not None})
        fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        bad = sorted(set(kw) - fields)
        if bad:
            raise cls.params_error(f"params {cls.params_section}: unknown key(s) {', '.join(bad)}; "
                                   f"known: {', '.join(sorted(fields))}")
        return kw

    @classmethod
    def from_params(cls, section: Mapping | None, **overrides):
        """The config of params.yaml section ``section`` (None: all defaults), then ``overrides`` (the
        command line's options; None values are skipped). With :attr:`params_weights_by` set, the section's
        ``weights`` maps model names to weights and the run's model (that field of ``overrides``) picks its own,
        unless ``overrides`` give ``weights``."""
        if cls.params_weights_by:
            section, overrides = dict(section or {}), dict(overrides)
            per_model = section.pop("weights", None) or {}
            if overrides.get("weights") is None:
                overrides["weights"] = per_model.get(overrides.get(cls.params_weights_by))
        return cls(**cls.params_kwargs(section, overrides))


@dataclass
class DatasetConfig(FromParams):
    """Which dataset (params.yaml ``dataset``).

    Attributes:
        name: a dataset of ``data_manifest.yaml`` (``sample``, ``affwild2``).
        root: overrides the manifest's root folder (e.g. ``/data/Aff-Wild2``); None: the manifest's.
        edition: annotation edition folder name or number (e.g. ``6``); None: the newest
            (docs/affwild2.md, "Editions").
    """

    params_section: ClassVar[str] = "dataset"

    name: str = "sample"
    root: str | None = None
    edition: str | int | None = None


def dataset_and_workspace(params: Mapping, manifest: str | Path = DEFAULT_MANIFEST) -> tuple[DatasetSpec, Workspace]:
    """The dataset named in ``params`` and its workspace ``<workdir>/<dataset.name>``.

    Raises:
        DatasetError: the dataset is not in the manifest (lists the known ones).
        AfwpipeError: an unknown key in params ``dataset``.
    """
    ds = DatasetConfig.from_params(params.get("dataset"))
    spec = dataset_spec(ds.name, manifest, root=ds.root, edition=ds.edition)
    return spec, Workspace(Path(params.get("workdir") or DEFAULT_WORKDIR) / spec.name)
