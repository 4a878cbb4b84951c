"""Atomic writes: files get the umask's mode (not mkstemp's 0600), a replaced file keeps its mode, and the
folder is fsynced after the rename so the new name survives a crash."""

from __future__ import annotations

import os
import stat

import pytest

from pix2pix.io import atomic
from pix2pix.io.atomic import atomic_path, write_json, write_text

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX modes and folder fsync")


@pytest.fixture
def umask():
    """Set the process umask for one test (and put the old one back)."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o027, 0o640)])
def test_new_files_get_the_umask_mode(tmp_path, umask, mask, expected):
    umask(mask)
    write_text(tmp_path / "a.txt", "hello")
    write_json(tmp_path / "b.json", {"x": 1})
    with atomic_path(tmp_path / "c.bin") as tmp:
        tmp.write_bytes(b"\0")
    for name in ("a.txt", "b.json", "c.bin"):
        assert _mode(tmp_path / name) == expected, name
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "secret.json"
    write_json(target, {"v": 1})
    os.chmod(target, 0o600)  # the user made it private
    write_json(target, {"v": 2})
    assert _mode(target) == 0o600 and '"v": 2' in target.read_text()
    os.chmod(target, 0o664)
    write_text(target, "{}")
    assert _mode(target) == 0o664


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(("fsync", kind, os.path.realpath(f"/proc/self/fd/{fd}") if kind == "folder" else ""))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", "", ""))
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    write_text(tmp_path / "sub" / "x.txt", "data")
    order = [e[:2] for e in events]
    assert order == [("fsync", "file"), ("replace", ""), ("fsync", "folder")]  # data, rename, then the folder
    if os.path.exists("/proc/self/fd"):
        assert events[-1][2] == os.path.realpath(tmp_path / "sub")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "keep.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash in the middle")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_folder_fsync_is_harmless_where_folders_cannot_be_opened(tmp_path):
    atomic.fsync_directory(tmp_path / "does-not-exist")  # no error: nothing to sync
