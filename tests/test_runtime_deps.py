"""Every third-party package that the library or a DVC stage imports is installed by the runtime install
(``scripts/install.sh`` without ``test``): pyproject's ``dependencies`` or a package that install.sh pins
itself. Otherwise `dvc repro` fails on a fresh machine while CI, with the test extra, stays green.

Imports are read with ``ast`` from every ``.py`` file of the packages setuptools ships (pyproject's
``packages.find`` include patterns), function-local imports included; each top-level module name is
mapped to its distribution with ``importlib.metadata.packages_distributions()``.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent


def normalize(dist: str) -> str:
    """PEP 503 name: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def runtime_distributions(root: Path) -> set[str]:
    """pyproject's ``[project] dependencies`` plus the ``"name==version"`` pins in scripts/install.sh."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    names = {re.match(r"[A-Za-z0-9_.-]+", req).group(0) for req in project["dependencies"]}
    names |= set(re.findall(r"[\"']([A-Za-z0-9_.-]+)==", (root / "scripts" / "install.sh").read_text()))
    return {normalize(n) for n in names}


def shipped_files(root: Path) -> list[Path]:
    """The ``.py`` files of the top-level packages matching pyproject's ``packages.find`` include."""
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["packages"]["find"]["include"]
    tops = [p.parent for p in root.glob("*/__init__.py")
            if any(fnmatch.fnmatch(p.parent.name, pat) for pat in patterns)]
    assert tops, f"no package of {root} matches pyproject's packages.find include {patterns}"
    return sorted(f for top in tops for f in top.rglob("*.py"))


def third_party_imports(files: list[Path], own: set[str]) -> dict[str, list[str]]:
    """``{top-level module: [files importing it]}`` for absolute imports outside stdlib and ``own``."""
    found: dict[str, list[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - own:
                found.setdefault(top, []).append(path.relative_to(ROOT).as_posix())
    return found


def test_every_imported_package_comes_with_the_runtime_install():
    files = shipped_files(ROOT)
    own = {p.relative_to(ROOT).parts[0] for p in files}
    runtime = runtime_distributions(ROOT)
    providers = importlib.metadata.packages_distributions()
    problems = []
    for module, users in sorted(third_party_imports(files, own).items()):
        dists = {normalize(d) for d in providers.get(module, [])}
        if not dists:
            problems.append(f"{module} (imported by {users[0]}) is not installed here, so its package is unknown")
        elif not dists & runtime:
            problems.append(f"{module} (imported by {users[0]}): none of {sorted(dists)} is a runtime dependency")
    assert not problems, "add to pyproject [project] dependencies:\n" + "\n".join(problems)
