"""Defaults live in one place: every params.yaml key is a field of its step's config dataclass with the same
default, and every field a user can set is in params.yaml (so DVC tracks it)."""

import dataclasses

import pytest
import yaml

from afwpipe.analyze import AnalyzeConfig
from afwpipe.config import DEFAULT_WORKDIR, DatasetConfig, FromParams, load_params
from afwpipe.describe import DescribeConfig
from afwpipe.detect import DetectConfig
from afwpipe.errors import ConfigError, EncoderError, TrainError
from afwpipe.evaluate import EvalConfig
from afwpipe.extract import ExtractConfig
from afwpipe.finetune import FinetuneConfig
from afwpipe.postprocess import PostConfig
from afwpipe.predict import PredictConfig
from afwpipe.submission import SubmitConfig
from afwpipe.text import TextConfig
from afwpipe.train import TrainConfig
from afwpipe.transcribe import TranscribeConfig

from conftest import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
SECTIONS = {"dataset": DatasetConfig, "detect": DetectConfig, "extract": ExtractConfig, "train": TrainConfig,
            "predict": PredictConfig, "postprocess": PostConfig, "evaluate": EvalConfig, "submit": SubmitConfig,
            "analyze": AnalyzeConfig, "transcribe": TranscribeConfig, "text": TextConfig, "finetune": FinetuneConfig,
            "describe": DescribeConfig}
#: fields chosen per run (a command-line option or a DVC matrix item), not params.yaml keys
PER_RUN = {ExtractConfig: {"encoder"}, TextConfig: {"encoder"}, DescribeConfig: {"vlm"}, TrainConfig: {"scene"},
           PredictConfig: {"head", "tasks", "folds", "scenes"},
           FinetuneConfig: {"encoder", "task", "fold", "weights", "options"}}  # run item; extract.weights/options


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_params_yaml_equals_the_dataclass_defaults(name):
    cls = SECTIONS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    section = PARAMS[name]
    for key, value in section.items():
        if key in cls.params_ignored:
            continue
        assert key in fields, f"params.yaml {name}.{key} is not a field of {cls.__name__}"
        if cls in (ExtractConfig, TextConfig, DescribeConfig) and key == "weights":  # per-model mapping of the value
            assert value == {} and _default(fields[key]) is None
            continue
        assert _default(fields[key]) == value, f"{cls.__name__}.{key} defaults to {_default(fields[key])!r}, " \
                                               f"params.yaml {name}.{key} is {value!r}"
    missing = set(fields) - set(section) - PER_RUN.get(cls, set())
    assert not missing, f"{cls.__name__} fields missing from params.yaml {name}: {sorted(missing)}"


def test_workdir_default_and_every_section_has_a_config():
    assert PARAMS["workdir"] == DEFAULT_WORKDIR
    assert set(PARAMS) - {"workdir"} == set(SECTIONS), "a params.yaml section without a config"


def test_missing_params_file_gives_the_same_configs_as_params_yaml(tmp_path):
    assert load_params(tmp_path / "none.yaml") == {}
    for name, cls in SECTIONS.items():
        extra = {"encoder": "logmel"} if cls is ExtractConfig else {"encoder": "text:x"} if cls is TextConfig else \
            {"vlm": "hf:x/y"} if cls is DescribeConfig else {}
        assert cls.from_params(None, **extra) == cls.from_params(PARAMS[name], **extra), name


@pytest.mark.parametrize("cls, error", [(DetectConfig, ConfigError), (TrainConfig, TrainError),
                                        (DatasetConfig, ConfigError)])
def test_unknown_key_names_the_section_and_lists_the_fields(cls, error):
    with pytest.raises(error, match=rf"params {cls.params_section}: unknown key\(s\) bogus; known: .*batch_size|"
                                    rf"params {cls.params_section}: unknown key\(s\) bogus; known: edition, name, root"):
        cls.from_params({"bogus": 1})


def test_overrides_lay_over_the_section_and_none_keeps_it():
    cfg = DetectConfig.from_params({"size": 112, "batch_size": 4}, batch_size=8, device=None)
    assert (cfg.size, cfg.batch_size, cfg.device) == (112, 8, "auto")
    ext = ExtractConfig.from_params({"weights": {"mae": "m.pth"}, "encoders": ["mae"]}, encoder="mae")
    assert ext.weights == "m.pth" and ExtractConfig.from_params({}, encoder="mae", weights="random").weights == "random"
    with pytest.raises(EncoderError, match="unknown key"):
        ExtractConfig.from_params({"bogus": 1}, encoder="mae")
    assert issubclass(ExtractConfig, FromParams)


#: dvc.yaml stages that list single keys of their own params section, with the keys that are not settings
#: of one run (a DVC foreach / matrix list or item)
KEYED_STAGES = {"train": ("train", {"tasks", "folds", "scenes", "task", "fold"}),
                "train_scene": ("train", {"tasks", "folds", "scenes", "task", "fold"}), "extract": ("extract", {"encoders"})}


@pytest.mark.parametrize("stage", sorted(KEYED_STAGES))
def test_every_setting_of_a_keyed_stage_is_a_dvc_param(stage):
    """A stage that lists keys one by one must list every key of its section, else changing that key (e.g.
    ``dvc exp run -S train.focal_gamma=2``) would not rerun the stage."""
    section, not_settings = KEYED_STAGES[stage]
    listed = set((yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage].get("do")
                  or yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage])["params"])
    if section in listed:
        return
    missing = sorted(f"{section}.{k}" for k in PARAMS[section] if k not in not_settings
                     and f"{section}.{k}" not in listed)
    assert not missing, f"dvc.yaml stage {stage} does not track params {missing}"
