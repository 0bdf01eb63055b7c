"""The structure stays easy to see: the library never imports the DVC stage scripts, pipeline steps never
import each other (they share modules instead), and one registry class serves detectors, encoders and heads."""

import ast
from pathlib import Path

import pytest

from conftest import REPO

#: modules that are one pipeline step each (a DVC stage or a command), with a ``main``
STEPS = ("sample", "index", "detect", "extract", "feature_set", "train", "predict", "postprocess", "evaluate",
         "submission", "summary", "transcribe", "text", "describe")


def _imports(path: Path) -> set[str]:
    """Absolute names of the afwpipe/stages modules that ``path`` imports (relative imports resolved)."""
    rel = path.relative_to(REPO).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


LIBRARY = sorted((REPO / "afwpipe").rglob("*.py"))


def test_the_library_never_imports_the_stage_scripts():
    bad = [str(p.relative_to(REPO)) for p in LIBRARY if any(m == "stages" or m.startswith("stages.") for m in _imports(p))]
    assert not bad, f"afwpipe modules importing stages/: {bad}"


@pytest.mark.parametrize("step", STEPS)
def test_a_step_imports_no_other_step(step):
    mods = _imports(REPO / "afwpipe" / f"{step}.py")
    others = sorted(o for o in STEPS if o != step and f"afwpipe.{o}" in mods)
    assert not others, f"afwpipe/{step}.py imports the steps {others}; move what they share into a shared module"


@pytest.mark.parametrize("step", STEPS)
def test_every_step_has_one_main(step):
    import importlib

    assert callable(importlib.import_module(f"afwpipe.{step}").main)


def test_stage_scripts_call_their_step_main():
    for script in sorted((REPO / "stages").glob("*.py")):
        if script.name == "__init__.py":
            continue
        text = script.read_text()
        assert ".main(" in text and "stage_main(run)" in text, f"{script.name} does not call a step's main()"


def test_one_registry_class_serves_detectors_encoders_and_heads():
    from afwpipe.encoders.registry import ENCODERS
    from afwpipe.faces.registry import DETECTORS
    from afwpipe.heads import HEADS
    from afwpipe.registry import Registry

    assert all(type(r) is Registry for r in (DETECTORS, ENCODERS, HEADS))
    assert len({id(r) for r in (DETECTORS, ENCODERS, HEADS)}) == 3


def _twice_defined(source: str) -> list[str]:
    """Names a module (or one of its classes) defines twice at the same level with ``def`` / ``class``: the later one
    silently replaces the earlier one (a merge of two branches that picked the same name)."""
    out = []
    tree = ast.parse(source)
    for scope, label in [(tree, ""), *((c, c.name + ".") for c in tree.body if isinstance(c, ast.ClassDef))]:
        seen = set()
        for node in scope.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name in seen and not any(isinstance(d, ast.Attribute) for d in node.decorator_list):
                    out.append(label + node.name)  # property setters (@x.setter) are a second def on purpose
                seen.add(node.name)
    return out


def test_the_scanner_finds_a_name_defined_twice():
    assert _twice_defined("def rows(): pass\ndef other(): pass\ndef rows(): pass\n") == ["rows"]
    assert _twice_defined("class A:\n    @property\n    def x(self): pass\n    @x.setter\n    def x(self, v): pass\n") == []


def test_no_module_defines_a_name_twice():
    files = [p for d in ("afwpipe", "stages", "benchmarks", "tests") for p in (REPO / d).rglob("*.py")]
    twice = {str(p.relative_to(REPO)): names for p in files if (names := _twice_defined(p.read_text()))}
    assert not twice, f"defined twice (the later definition replaces the earlier): {twice}"
