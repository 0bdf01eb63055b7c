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
    return {normalize(n) for n in names} | set(install_sh_pins(root))


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


#: The PyPI distributions that each install the top-level module ``cv2`` (the same files, so the last pip
#: installs wins; opencv-python bundles Qt GUI code that the headless builds leave out).
CV2_DISTRIBUTIONS = {"opencv-python", "opencv-python-headless", "opencv-contrib-python",
                     "opencv-contrib-python-headless"}


def install_sh_pins(root: Path, extra: str | None = None) -> dict[str, bool]:
    """``{distribution: its dependencies installed too}`` for the ``"name==version"`` pins of scripts/install.sh
    (False on a ``--no-deps`` line); lines ending in ``# test extra`` (installed only by ``install.sh test``)
    count only with ``extra="test"``."""
    pins = {}
    for line in (root / "scripts" / "install.sh").read_text().splitlines():
        if line.lstrip().startswith("#") or ("# test extra" in line and extra != "test"):
            continue
        for name in re.findall(r"[\"']([A-Za-z0-9_.-]+)==", line):
            pins[normalize(name)] = "--no-deps" not in line
    return pins


def installed_closure(roots: dict[str, bool], extras: tuple[str, ...] = ()) -> tuple[set[str], set[str]]:
    """Distributions pip installs for ``roots`` (name -> follow its requirements), walking the requirements
    in the installed metadata (``importlib.metadata.requires``; markers evaluated here, ``extras`` of the
    roots' own extras). Returns ``(reached, not installed here)``."""
    from packaging.requirements import Requirement

    reached, missing = set(), set()
    todo = [(n, follow, extras) for n, follow in roots.items()]
    while todo:
        name, follow, wanted = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        if not follow:
            continue
        try:
            reqs = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            missing.add(name)
            continue
        for text in reqs:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *wanted)):
                todo.append((normalize(req.name), True, tuple(req.extras)))
    return reached, missing


def project_roots(root: Path, extra: str | None = None) -> dict[str, bool]:
    """What installing the project (``scripts/install.sh [extra]``) asks pip for: pyproject's dependencies
    (and the extra's), followed, plus install.sh's pins."""
    from packaging.requirements import Requirement

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + (project["optional-dependencies"].get(extra, []) if extra else [])
    roots = {normalize(Requirement(r).name): True for r in reqs}
    return {**roots, **install_sh_pins(root, extra)}


@pytest.mark.parametrize("extra", [None, "test"])
def test_the_install_asks_for_exactly_one_opencv(extra):
    """pyproject + install.sh, followed through every dependency's metadata, reach one ``cv2`` distribution
    (retinaface-pytorch's helper package requires opencv-python, our stack opencv-python-headless)."""
    reached, missing = installed_closure(project_roots(ROOT, extra))
    owners = sorted(reached & CV2_DISTRIBUTIONS)
    assert len(owners) == 1, (f"the install ({extra or 'runtime'}) brings {owners or 'no'} cv2 distribution(s); "
                              f"depend on exactly one (not installed here, so not followed: {sorted(missing)})")


def test_exactly_one_installed_distribution_owns_cv2():
    """In this environment (CI: a fresh one built by scripts/install.sh) the files of ``cv2`` belong to one
    distribution, the one pyproject names."""
    owners = sorted({normalize(d) for d in importlib.metadata.packages_distributions().get("cv2", [])})
    assert len(owners) == 1, f"cv2 is owned by {owners}: one pip install overwrote the other's files"
    assert owners[0] in runtime_distributions(ROOT), f"cv2 comes from {owners[0]}, which pyproject does not name"
    import cv2

    assert cv2.resize(__import__("numpy").zeros((4, 4), "uint8"), (2, 2)).shape == (2, 2)
