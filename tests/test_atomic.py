"""Crash-safe, cache-safe writes (issue 20, point 6): every file afwpipe writes outside Zarr is written to a
temporary file in its folder and renamed over the target, so a DVC cache object hard-linked to an output
keeps its bytes when a command is run by hand, and a killed write leaves the previous file intact."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from afwpipe import atomic, store
from afwpipe.contact_sheet import save_png
from afwpipe.evaluate import _write_csv
from afwpipe.inference import save_checkpoint
from afwpipe.results import RunSummary, VideoResult

ROOT = Path(__file__).resolve().parents[1]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# -- the helper ---------------------------------------------------------------------------------------------------

def test_replacing_renames_on_success_and_removes_the_temporary_file_on_error(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic.write_json(target, {"x": 1})
    assert json.loads(target.read_text()) == {"x": 1}
    inode = target.stat().st_ino
    with pytest.raises(RuntimeError):
        with atomic.open_atomic(target, "w") as f:
            f.write('{"x": 2, "half')
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"x": 1} and target.stat().st_ino == inode
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]  # no temporary file left
    with pytest.raises(FileNotFoundError, match="a.json"):
        with atomic.replacing(target):
            pass  # a writer that wrote nothing
    with pytest.raises(ValueError, match="mode"):
        with atomic.open_atomic(target, "a"):
            pass


def test_a_hardlinked_target_is_replaced_not_rewritten(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("cached\n")
    cache = tmp_path / "cache-object"
    os.link(target, cache)
    atomic.write_text(target, "new\n")
    atomic.copy_file(target, tmp_path / "copy.txt")
    assert cache.read_text() == "cached\n" and target.read_text() == "new\n"
    assert (tmp_path / "copy.txt").read_text() == "new\n"


# -- no writer bypasses the helper --------------------------------------------------------------------------------

# method / function names that write a file given as an argument
WRITER_NAMES = {"write_text", "write_bytes", "savez", "savez_compressed", "save", "to_csv", "to_parquet", "to_hdf",
                "to_netcdf", "to_zarr", "to_json", "to_pickle", "savefig", "imwrite", "tofile"}
MODULE_WRITERS = {("shutil", "copy"), ("shutil", "copy2"), ("shutil", "copyfile"), ("shutil", "move"),
                  ("json", "dump"), ("pickle", "dump"), ("yaml", "dump"), ("yaml", "safe_dump")}
OPENERS = {"open", "File", "ZipFile", "TarFile"}  # open(), Path.open, av.open, h5py.File, zipfile.ZipFile


def _write_mode(call: ast.Call) -> bool:
    args = list(call.args[:2]) + [k.value for k in call.keywords if k.arg == "mode"]
    return any(isinstance(a, ast.Constant) and isinstance(a.value, str) and 0 < len(a.value) <= 3
               and set(a.value) <= set("rwaxbt+") and set(a.value) & set("wax+") for a in args)


def _atomic_names(fn: ast.AST) -> set[str]:
    """Names bound by ``with atomic.replacing(...) as n`` / ``atomic.open_atomic(...) as n`` in ``fn``."""
    names = set()
    for node in ast.walk(fn):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                c = item.context_expr
                if (isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr in
                        ("replacing", "open_atomic") and isinstance(c.func.value, ast.Name)
                        and c.func.value.id == "atomic" and isinstance(item.optional_vars, ast.Name)):
                    names.add(item.optional_vars.id)
    return names


def bare_writers(source: str, filename: str = "<src>") -> list[str]:
    """``file:line: code`` of each call that writes a file in place (not through :mod:`afwpipe.atomic`).

    A call is allowed when one of its arguments uses a name bound by ``atomic.replacing`` /
    ``atomic.open_atomic`` in the same function, or its line says ``# atomic: <why>``."""
    tree = ast.parse(source)
    lines = source.splitlines()
    owner = {}  # call -> its innermost function (or the module)
    for fn in [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))]:
        for node in ast.walk(fn):
            if isinstance(node, ast.Call):
                owner[node] = fn  # functions come after the module, inner after outer: the innermost wins
    found = []
    for node, fn in owner.items():
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        mod = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None
        if mod == "atomic" or not (name in WRITER_NAMES or (mod, name) in MODULE_WRITERS or (name in OPENERS and _write_mode(node))):
            continue
        if name in WRITER_NAMES and not node.args and not node.keywords:  # no file given: a record's to_json()
            continue
        used = {n.id for a in [*node.args, *(k.value for k in node.keywords)] for n in ast.walk(a)
                if isinstance(n, ast.Name)}
        line = lines[node.lineno - 1]
        if not (used & _atomic_names(fn) or "# atomic:" in line):
            found.append((node.lineno, f"{filename}:{node.lineno}: {line.strip()}"))
    return [s for _, s in sorted(found)]


def test_the_scanner_flags_each_kind_of_in_place_writer():
    src = textwrap.dedent('''
        def f(path, fig, table, ckpt, arrays, rgb):
            path.write_text("x")
            with open(path, "w") as fh: pass
            with path.open("wb") as fh: pass
            np.savez(path, **arrays)
            torch.save(ckpt, path)
            table.to_csv(path)
            fig.savefig(path)
            cv2.imwrite(str(path), rgb)
            shutil.copyfile(path, path)
            h5py.File(path, "w")
            av.open(str(path), "w", format="mp4")
            json.dump({}, fh)
        def g(path, fig, table, arrays):
            with atomic.replacing(path) as tmp:
                fig.savefig(tmp, format="png")
                h5py.File(tmp, "w")
            with atomic.open_atomic(path, "wb") as fh:
                np.savez(fh, **arrays)
            open(path)
            path.open()
            av.open(str(path))
            av.open(str(path), "w")  # atomic: a temporary path of the caller
            record.to_json()
            table.to_json(path)
    ''')
    hits = bare_writers(src)
    assert [int(h.split(":")[1]) for h in hits] == list(range(3, 15)) + [26], hits


def test_no_file_is_written_in_place_outside_the_atomic_helper():
    files = sorted(ROOT.glob("afwpipe/**/*.py")) + sorted(ROOT.glob("stages/*.py"))
    hits = []
    for p in files:
        if p.name == "atomic.py" and p.parent.name == "afwpipe":
            continue
        hits += bare_writers(p.read_text(), str(p.relative_to(ROOT)))
    assert not hits, "write through afwpipe.atomic (temporary file + os.replace):\n" + "\n".join(hits)


# -- Zarr's local store -------------------------------------------------------------------------------------------

def test_every_store_afwpipe_opens_replaces_its_files(tmp_path):
    """Zarr's LocalStore writes each chunk and zarr.json to a new file and renames it: a file hard-linked into a
    cache keeps its bytes when afwpipe rewrites the array and attributes."""
    import zarr.storage

    path = tmp_path / "feat.zarr"
    g = store.begin_video(path, "v1")
    store.write_time_array(g, "emb", np.arange(24, dtype=np.float32).reshape(6, 4))
    store.mark_complete(g)
    root = store.open_store(path, "a")
    assert isinstance(root.store, zarr.storage.LocalStore)
    cache = tmp_path / "cache"
    cache.mkdir()
    linked = {}
    for i, f in enumerate(p for p in path.rglob("*") if p.is_file()):
        os.link(f, cache / str(i))
        linked[cache / str(i)] = md5(f)
    arr = root["v1/emb"]
    arr[...] = -1.0
    root["v1"].attrs["complete"] = False
    root.attrs["touched"] = True
    assert all(md5(c) == h for c, h in linked.items())
    assert (store.read_array(path, "v1", "emb") == -1).all()


# -- a DVC repository with hard-linked outputs; commands run by hand ------------------------------------------------

CKPT = dict(in_dims={}, tasks=["au"], encoders=[], stats=None, au_pos_weight=None, expr_class_weight=None,
            best_epoch=0, best_score=0.0, train_videos=[], val_videos=[])


def _write_outputs(out: Path, version: int) -> None:
    """Outputs of several afwpipe writers (JSON, CSV, PNG, checkpoint), content depending on ``version``."""
    s = RunSummary("detect", [VideoResult(f"video{version}", error=f"failed {version}")])
    s.write_failures(out / "detect_failures.json")
    _write_csv(out / "per_class.csv", ["class", "score"], [["AU1", version], ["AU2", version * 2]])
    save_png(np.full((8, 8, 3), version * 40, np.uint8), out / "sheet.png")
    save_checkpoint(out / "model.pt", {"w": np.full(3, version, np.float32)}, **CKPT, config={"v": version})


def _afwpipe(repo: Path, *args: str) -> None:
    """``afwpipe <args>`` run by hand in ``repo`` (params.yaml there: dataset sample, workdir work)."""
    r = subprocess.run([sys.executable, "-m", "afwpipe.cli", "--params", "params.yaml", "--manifest",
                        str(ROOT / "data_manifest.yaml"), *args], cwd=repo, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.slow
def test_outputs_hardlinked_into_a_dvc_cache_survive_commands_run_by_hand(tmp_path):
    from test_postprocess import make_post_workspace

    dvc = Path(sys.executable).with_name("dvc")
    repo = tmp_path / "repo"
    make_post_workspace(repo / "work" / "sample", tasks=("au",))  # index, labels, predictions
    (repo / "params.yaml").write_text("dataset:\n  name: sample\nworkdir: work\n")
    _afwpipe(repo, "postprocess")
    _afwpipe(repo, "evaluate")  # eval/: metrics.json, per_class.csv, plots (PNG, CSV)
    out = repo / "work" / "other"
    out.mkdir()
    _write_outputs(out, 1)
    run = dict(cwd=repo, check=True, capture_output=True, text=True)
    subprocess.run([str(dvc), "init", "--no-scm", "-q"], **run)
    subprocess.run([str(dvc), "config", "cache.type", "hardlink"], **run)
    subprocess.run([str(dvc), "add", "-q", "work"], **run)
    objects = [p for p in (repo / ".dvc" / "cache" / "files" / "md5").rglob("*") if p.is_file()]
    outputs = [p for p in (repo / "work").rglob("*") if p.is_file()]
    assert all(p.stat().st_nlink >= 2 for p in outputs) and len(objects) > 20  # equal files share one object
    before = {p: md5(p) for p in outputs}
    # the commands again, by hand (as root in this container), with other options: every output rewritten
    _afwpipe(repo, "postprocess", "--ensemble", "soft", "--thresholds", "0.5")
    _afwpipe(repo, "evaluate")
    _write_outputs(out, 2)
    for p in objects:
        assert p.parent.name + p.name.removesuffix(".dir") == md5(p), f"{p}: cache object changed"
    changed = [p.relative_to(repo).as_posix() for p in outputs if p.is_file() and md5(p) != before[p]]
    assert {"work/sample/eval/metrics.json", "work/other/detect_failures.json", "work/other/model.pt",
            "work/other/per_class.csv", "work/other/sheet.png"} <= set(changed)
    status = subprocess.run([str(dvc), "status", "--json"], **run).stdout
    assert "modified" in status  # DVC sees the outputs changed (the cache did not follow them)


# -- a write killed midway ----------------------------------------------------------------------------------------

KILL_CSV = """
import os, sys
from pathlib import Path
from afwpipe.evaluate import _write_csv
def rows():
    for i in range(100000):
        if i == 50000:
            os._exit(3)  # killed midway (no cleanup, no exception handlers)
        yield ["AU1", i]
_write_csv(Path(sys.argv[1]), ["class", "score"], rows())
"""

KILL_CKPT = """
import os, sys
import numpy as np
from afwpipe.inference import save_checkpoint
class Bomb:
    def __reduce__(self):
        os._exit(3)
save_checkpoint(sys.argv[1], {"w": np.zeros(200000, np.float32), "z": Bomb()}, config={}, in_dims={},
                tasks=["au"], encoders=[], stats=None, au_pos_weight=None, expr_class_weight=None, best_epoch=0,
                best_score=0.0, train_videos=[], val_videos=[])
"""


@pytest.mark.parametrize("script,name", [(KILL_CSV, "per_class.csv"), (KILL_CKPT, "model.pt")])
def test_a_write_killed_midway_leaves_the_previous_file_intact(tmp_path, script, name):
    target = tmp_path / name
    target.write_bytes(b"previous complete file\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", script, str(target)], env=env, capture_output=True, text=True)
    assert r.returncode == 3, r.stderr
    assert target.read_bytes() == b"previous complete file\n"
