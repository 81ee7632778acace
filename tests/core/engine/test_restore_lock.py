"""A restore holds its set's lock (issue #14, restore first): writers are kept out while it reads, it can
wait for a writer instead of failing, the wait can time out or be cancelled, and a read-only set is
restored without a lock."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import datetime, timezone

import pytest

from core.engine.lock import SetLock
from core.engine.progress import CancelToken, Clock, FakeClock
from core.engine.repo import BackupSet
from core.errors import Cancelled, ReadOnlyDestination, SetLocked
from tests.support.engine import backed_up_tree, backup_path, restore_path
from tests.support.trees import make_tree, read_tree

TREE = {"a.txt": b"alpha", "sub/b.txt": b"bravo" * 100}


@pytest.fixture
def backed_up(tmp_path):
    return backed_up_tree(tmp_path, TREE)


def test_a_restore_holds_the_lock_as_a_restore_and_keeps_a_backup_out(backed_up, tmp_path):
    src, set_path = backed_up
    lock = BackupSet.open(set_path).layout.lock
    seen, refused = [], []

    def progress(_):
        if not seen:
            seen.append(json.loads(lock.read_text()))
            before = sorted(p.relative_to(set_path) for p in set_path.rglob("*"))
            (src / "a.txt").write_bytes(b"changed")
            with pytest.raises(SetLocked) as info:
                backup_path(set_path, [src])
            refused.append(info.value.message)
            assert sorted(p.relative_to(set_path) for p in set_path.rglob("*")) == before   # nothing written

    result = restore_path(set_path, tmp_path / "out", progress=progress)
    assert seen[0]["purpose"] == "restore"
    assert refused[0].startswith("A restore is reading this backup set right now (restore by process")
    assert result.files_restored == 2 and read_tree(tmp_path / "out" / "Docs") == TREE
    assert not lock.exists()                                              # released
    backup_path(set_path, [src])                                          # and free for the next backup


def test_a_restore_fails_at_once_or_waits_for_a_backup_holding_the_set(backed_up, tmp_path):
    _, set_path = backed_up
    writer = SetLock(BackupSet.open(set_path).layout.lock, Clock(), purpose="backup").acquire()
    with pytest.raises(SetLocked, match="Another backup is writing to this set right now \\(backup by process"):
        restore_path(set_path, tmp_path / "no")
    assert not (tmp_path / "no").exists()
    told = []

    def on_wait(holder):
        told.append(holder)
        threading.Timer(0.3, writer.release).start()                   # the backup finishes a moment later

    result = restore_path(set_path, tmp_path / "out", lock_wait=30, on_lock_wait=on_wait)
    assert [(h["purpose"], h["pid"]) for h in told] == [("backup", os.getpid())]    # told once, with who
    assert result.files_restored == 2 and read_tree(tmp_path / "out" / "Docs") == TREE


def test_the_wait_times_out_and_can_be_cancelled(backed_up, tmp_path):
    _, set_path = backed_up
    clock = FakeClock(datetime.now(timezone.utc))
    with SetLock(BackupSet.open(set_path).layout.lock, Clock(), purpose="backup"):
        told = []
        with pytest.raises(SetLocked):
            restore_path(set_path, tmp_path / "out", lock_wait=600, on_lock_wait=told.append, clock=clock)
        assert clock.mono == 600 and len(told) == 1                      # waited the whole time, on the clock
        cancel = CancelToken()
        with pytest.raises(Cancelled):
            restore_path(set_path, tmp_path / "out", lock_wait=600, cancel=cancel,
                         on_lock_wait=lambda _: cancel.cancel(), clock=clock)
    assert not (tmp_path / "out").exists()


def _remount(drive, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(drive.mount_point)], check=True)


def test_a_read_only_set_is_restored_without_a_lock(ext4_drive, tmp_path):
    src = make_tree(tmp_path / "Docs", TREE)
    set_path = ext4_drive.mount_point / "set"
    backup_path(set_path, [src])
    lock = BackupSet.open(set_path).layout.lock
    _remount(ext4_drive, "ro")                   # e.g. the kernel remounted a failing drive read-only
    try:
        result = restore_path(set_path, tmp_path / "out")
        assert result.files_restored == 2 and read_tree(tmp_path / "out" / "Docs") == TREE
        assert not lock.exists()
        with pytest.raises(ReadOnlyDestination):
            backup_path(set_path, [src])                                  # a writer still needs its lock
        _remount(ext4_drive, "rw")
        # The drive was pulled during a backup on a computer long gone: its stale lock is still there,
        # and nobody can remove it while the drive is read-only.
        lock.write_text(json.dumps({"host": "old-laptop", "machine": "elsewhere", "pid": 4242,
                                    "purpose": "backup", "time": "2020-01-01T00:00:00+00:00"}))
        _remount(ext4_drive, "ro")
        result = restore_path(set_path, tmp_path / "out2")
        assert result.files_restored == 2 and read_tree(tmp_path / "out2" / "Docs") == TREE
        assert json.loads(lock.read_text())["host"] == "old-laptop"        # nothing on the drive changed
    finally:
        _remount(ext4_drive, "rw")
