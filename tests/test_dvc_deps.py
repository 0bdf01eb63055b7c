"""DVC reruns a stage only when one of its ``deps`` changes, so every module file a stage's command
imports must be covered by its deps (a directory dep covers the files below it).

The import closure is computed statically with ``ast`` from the tree as it is on disk: from the module
of ``python -m stages.<name>`` it follows every ``import`` / ``from ... import`` (including imports
inside functions, relative imports and the ``__init__.py`` of every package on the way) into the
repository's own top-level packages (every directory at the root with an ``__init__.py``). Nothing
here names a module of afwpipe, so moving modules keeps the test meaningful.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

# Module files a stage may import without listing them as deps, each with the reason it cannot change
# a stage's outputs. Keep this short: when in doubt, list the file in dvc.yaml instead.
EXCEPTIONS = {
    "stages/__init__.py": "docstring only: marks stages/ as a package for `python -m stages.<name>`",
}

_STAGE_MODULE = re.compile(r"\bpython3?\s+-m\s+([A-Za-z_][\w.]*)")


def module_file(root: Path, name: str) -> Path | None:
    """File of module ``name`` (``a.b`` -> ``a/b.py`` or ``a/b/__init__.py``) under ``root``, or None."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _with_packages(root: Path, name: str) -> list[str]:
    """``a.b.c`` -> the modules Python executes to import it: ``a``, ``a.b``, ``a.b.c`` (those that exist)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1) if module_file(root, ".".join(parts[:i]))]


def imported_modules(root: Path, name: str) -> set[str]:
    """Modules of ``root``'s own packages that module ``name`` imports directly, anywhere in its body."""
    path = module_file(root, name)
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.update(_with_packages(root, alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module
            found.update(_with_packages(root, base))
            for alias in node.names:  # `from pkg import mod` imports the submodule pkg.mod
                if alias.name != "*" and module_file(root, f"{base}.{alias.name}"):
                    found.update(_with_packages(root, f"{base}.{alias.name}"))
    return found


def import_closure(root: Path, name: str) -> set[Path]:
    """Files (relative to ``root``) of every module of ``root``'s packages that importing ``name`` runs."""
    todo, seen = _with_packages(root, name), set()
    if name not in todo:
        raise FileNotFoundError(f"module {name} has no file under {root}")
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(imported_modules(root, mod) - seen)
    return {module_file(root, m).relative_to(root) for m in seen}


def dvc_stages(dvc_yaml: Path) -> dict[str, dict]:
    """``{stage: {"cmd": str, "deps": [str]}}`` of dvc.yaml; a ``foreach`` / ``matrix`` stage is one
    entry, since all its instances share one cmd template and one deps list."""
    stages = {}
    for name, spec in yaml.safe_load(dvc_yaml.read_text())["stages"].items():
        body = spec["do"] if "foreach" in spec else spec
        cmd = body["cmd"] if isinstance(body["cmd"], str) else " && ".join(body["cmd"])
        stages[name] = {"cmd": cmd, "deps": [str(d) for d in body.get("deps", [])]}
    return stages


def uncovered(files: set[Path], deps: list[str]) -> list[str]:
    """The files (posix paths) that no dep equals or contains (a dep directory covers what is below it)."""
    roots = [d.rstrip("/") for d in deps]
    return sorted(f.as_posix() for f in files
                  if not any(f.as_posix() == d or f.as_posix().startswith(d + "/") for d in roots))


def stage_closure(cmd: str) -> set[Path]:
    """Module files that a stage's cmd runs: the import closures of each ``python -m <module>`` in it."""
    modules = _STAGE_MODULE.findall(cmd)
    if not modules:
        raise ValueError(f"dvc.yaml cmd {cmd!r} runs no `python -m <module>`: teach this test how to read it")
    return set().union(*(import_closure(ROOT, m) for m in modules))


STAGES = dvc_stages(ROOT / "dvc.yaml")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_every_imported_module(stage):
    spec = STAGES[stage]
    files = stage_closure(spec["cmd"])
    missing = [f for f in uncovered(files, spec["deps"]) if f not in EXCEPTIONS]
    assert not missing, (f"dvc.yaml stage {stage!r} imports {len(missing)} module file(s) its deps do not "
                         f"cover, so changing them would not rerun it: {missing}")


def test_exceptions_are_still_imported():
    """An exception for a file no stage imports any more (moved, deleted) is stale: remove it."""
    imported = set().union(*(stage_closure(s["cmd"]) for s in STAGES.values()))
    stale = sorted(set(EXCEPTIONS) - {f.as_posix() for f in imported})
    assert not stale, f"EXCEPTIONS in {Path(__file__).name} name files no stage imports: {stale}"


def test_closure_follows_every_import_form(tmp_path):
    """The closure on a hand-built tree: absolute, relative (one and two levels), function-local,
    `from pkg import submodule`, package __init__ files; stdlib/third-party and unreached modules are left out."""
    files = {
        "st/__init__.py": "",
        "st/run.py": "import os\nimport numpy\nfrom lib.a import f\n",
        "lib/__init__.py": "",
        "lib/a.py": "from . import b\ndef f():\n    import lib.sub.c\n",
        "lib/b.py": "x = 1\n",
        "lib/sub/__init__.py": "",
        "lib/sub/c.py": "from ..d import y\n",
        "lib/d.py": "y = 2\n",
        "lib/unused.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    closure = {p.as_posix() for p in import_closure(tmp_path, "st.run")}
    assert closure == set(files) - {"lib/unused.py"}
    assert uncovered({Path(p) for p in closure}, ["st/", "lib/sub", "lib/a.py"]) == [
        "lib/__init__.py", "lib/b.py", "lib/d.py"]
