"""The local-folder backend's own cases: symbolic links are never followed, and a crash or a full
drive at any step of a put leaves the name as it was."""

from __future__ import annotations

import errno
import os

import pytest

from core.engine.progress import FakeClock
from core.engine.storage import LocalBackend, Retrying
from core.errors import BlobNotFound, DiskFull, UnsafeSet
from tests.support.faults import CRASH, Crash, FaultyFS


def test_a_linked_folder_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not for the backend")
    root = tmp_path / "set"
    root.mkdir()
    os.symlink(outside, root / "objects")
    b = LocalBackend(root)
    with pytest.raises(UnsafeSet):
        b.put("objects/new", b"x")
    with pytest.raises(UnsafeSet):
        b.stat("objects/secret")
    assert list(b.list()) == [] and list(b.list("objects")) == []
    assert sorted(os.listdir(outside)) == ["secret"]


def test_a_linked_blob_is_neither_read_nor_listed(tmp_path):
    (tmp_path / "secret").write_bytes(b"not for the backend")
    root = tmp_path / "set"
    (root / "snapshots").mkdir(parents=True)
    os.symlink(tmp_path / "secret", root / "snapshots" / "s1")
    b = LocalBackend(root)
    for call in (lambda: b.get("snapshots/s1"), lambda: b.stat("snapshots/s1"), lambda: b.delete("snapshots/s1")):
        with pytest.raises(UnsafeSet):
            call()
    assert list(b.list()) == []
    assert (tmp_path / "secret").read_bytes() == b"not for the backend"


def test_a_linked_tmp_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_bytes(b"k")
    root = tmp_path / "set"
    root.mkdir()
    os.symlink(elsewhere, root / "tmp")
    b = LocalBackend(root)
    with pytest.raises(UnsafeSet):
        b.put("plugback.json", b"{}")
    with pytest.raises(UnsafeSet):
        b.clean_partial()
    assert os.listdir(elsewhere) == ["keep"]


@pytest.mark.parametrize("step", range(1, 8))
def test_a_crash_at_any_step_of_a_put_leaves_the_old_blob(tmp_path, step):
    root = tmp_path / "set"
    LocalBackend(root).put("plugback.json", b"old")
    fs = FaultyFS(root, fail_at=step, error=CRASH)
    try:
        LocalBackend(root, fs).put("plugback.json", lambda: iter([b"new ", b"content"]))
    except Crash:
        pass
    after = LocalBackend(root)
    assert b"".join(after.get("plugback.json")) in (b"old", b"new content")
    if fs.crashed:
        after.clean_partial()
    assert [i.name for i in after.list()] == ["plugback.json"] and os.listdir(root / "tmp") == []


def test_a_full_drive_is_the_drive_error_and_not_retried(tmp_path):
    root = tmp_path / "set"
    clock = FakeClock()
    b = Retrying(LocalBackend(root, FaultyFS(root, fail_at=2, error=errno.ENOSPC)), clock)
    with pytest.raises(DiskFull):
        b.put("objects/ab/x", b"data")
    assert b.retries == 0
    with pytest.raises(BlobNotFound):
        LocalBackend(root).stat("objects/ab/x")
