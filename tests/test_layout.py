"""The workspace layout (afwpipe/layout.py): model folder names built and parsed in one place, and no other
module spelling the file names a step writes."""

import ast
from pathlib import Path

import pytest

from afwpipe import layout
from afwpipe.store import Workspace
from conftest import REPO


@pytest.mark.parametrize("name, fields", [
    ("au-tmf-official", ("au", "tmf", "official", None)),
    ("mtl-tcn-all", ("mtl", "tcn", "all", None)),
    ("va-msf-3", ("va", "msf", 3, None)),
    ("expr-tmf-0-man", ("expr", "tmf", 0, "man")),
    ("va-tcn-1-reaction-videos", ("va", "tcn", 1, "reaction-videos")),  # a scene may hold '-'
])
def test_model_names_parse_into_their_fields_and_back(name, fields):
    ref = layout.parse_model_name(name, Path("/w/models") / name)
    assert (ref.task, ref.head, ref.fold, ref.scene) == fields
    assert layout.model_name(*fields) == name
    assert ref.checkpoint == Path("/w/models") / name / "model.pt"
    assert ref.record == Path("/w/models") / name / "metrics.json"


@pytest.mark.parametrize("name", ["au-tmf", "pose-tmf-0", "au-tmf-first", "notes", "au-tmf--1"])
def test_other_folder_names_are_not_models(name):
    assert layout.parse_model_name(name) is None


def test_paths_sit_in_the_workspace_folders(tmp_path):
    ws = Workspace(tmp_path / "work" / "sample")
    assert layout.model_dir(ws, "au-tmf-0") == tmp_path / "work/sample/models/au-tmf-0"
    assert layout.run_record(ws, "au-tmf-0") == tmp_path / "work/sample/models/au-tmf-0/metrics.json"
    assert layout.eval_file(ws, layout.EVAL_METRICS) == tmp_path / "work/sample/eval/metrics.json"
    assert layout.eval_plot(ws, "va_trace") == tmp_path / "work/sample/eval/plots/va_trace.csv"
    assert layout.failures_file(ws, "detect") == tmp_path / "work/sample/detect_failures.json"
    assert layout.failures_file(ws, "extract", ws.features("mae")) == tmp_path / "work/sample/extract_failures_mae.json"


def _file_name_literals(path: Path) -> list[str]:
    """String constants of ``path`` (docstrings excluded) that are a file name a step writes."""
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    names = {"model.pt", "metrics.json", "per_class.csv", "report.png", "detect_failures.json"}
    return [f"line {n.lineno}: {n.value!r}" for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
            and (n.value in names or n.value.endswith("_failures.json"))]


@pytest.mark.parametrize("path", sorted(p for d in ("afwpipe", "stages") for p in (REPO / d).rglob("*.py")
                                        if p.name != "layout.py"), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_but_layout_spells_a_written_file_name(path):
    assert _file_name_literals(path) == []
