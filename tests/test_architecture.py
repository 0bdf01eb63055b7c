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


# -- index.json and model.pt are read as typed records (afwpipe.records), never by string keys ------------------
#: calls that return an index (IndexFile) or a checkpoint (Checkpoint; load_model's second value)
RECORD_SOURCES = {"read_index", "load_index", "load_model"}


def _source_call(node: ast.AST) -> bool:
    """``ws.read_index()``, ``load_index(p)``, ``load_model(p)``, ``Checkpoint.load(p)``, or one of them as a branch
    of ``x if c else y``."""
    if isinstance(node, ast.IfExp):
        return _source_call(node.body) or _source_call(node.orelse)
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    return name in RECORD_SOURCES or (name == "load" and isinstance(f, ast.Attribute)
                                      and isinstance(f.value, ast.Name) and f.value.id == "Checkpoint")


def record_key_reads(source: str, filename: str = "<src>") -> list[str]:
    """``file:line: code`` of each string-key read of an index or a checkpoint: a subscript or ``.get`` of a call of
    :data:`RECORD_SOURCES` (``ws.read_index()["videos"]``) or of a name a function binds to one
    (``index = ws.read_index()``; ``head, ckpt = load_model(p)``), and ``torch.load`` of a checkpoint path
    (``torch.load(checkpoint(model))``). Names are followed within one function (or the module), not across calls:
    a record handed to another function is caught there only by its attribute reads failing at run time."""
    tree = ast.parse(source)
    lines = source.splitlines()
    found = set()
    for fn in [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))]:
        bound = set()
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and _source_call(node.value):
                for t in node.targets:
                    bound |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        for node in ast.walk(fn):
            target = None
            if isinstance(node, ast.Subscript):
                target = node.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
                target = node.func.value
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                  and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                  and "checkpoint" in ast.unparse(node.args[0] if node.args else node)):
                found.add((node.lineno, f"{filename}:{node.lineno}: {lines[node.lineno - 1].strip()}"))
                continue
            if target is not None and (_source_call(target) or (isinstance(target, ast.Name) and target.id in bound)):
                found.add((node.lineno, f"{filename}:{node.lineno}: {lines[node.lineno - 1].strip()}"))
    return [s for _, s in sorted(found)]


def test_the_record_scanner_flags_each_kind_of_string_key_read():
    src = ("def f(ws, p):\n"
           "    a = ws.read_index()['videos']\n"
           "    index = ws.read_index() if ws.index.is_file() else None\n"
           "    b = index.get('scenes')\n"
           "    head, ckpt = load_model(p)\n"
           "    c = ckpt['config']\n"
           "    d = torch.load(checkpoint(p), weights_only=True)\n"
           "    ok = (index.records, ckpt.config['k'], ckpt.encoders[0]['name'])\n")
    assert [s.split(":")[1] for s in record_key_reads(src)] == ["2", "4", "6", "7"]


def test_no_module_reads_an_index_or_a_checkpoint_by_string_keys():
    files = [p for d in ("afwpipe", "stages", "benchmarks") for p in (REPO / d).rglob("*.py") if p.name != "records.py"]
    found = [s for p in files for s in record_key_reads(p.read_text(), str(p.relative_to(REPO)))]
    assert not found, "read index.json / model.pt through afwpipe.records' attributes:\n" + "\n".join(found)
