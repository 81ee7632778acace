"""The remote lock (restic-style lock blobs) on real backends: a folder, and an rclone remote."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import timedelta

import pytest

from core.engine.progress import FakeClock
from core.engine.storage import LocalBackend, read_all
from core.engine.storage.lock import RemoteLock
from core.errors import SetLocked
from tests.core.engine.storage.conftest import open_subject

OTHER = "0" * 32     # another computer's machine id


@pytest.fixture
def backend(tmp_path):
    return LocalBackend(tmp_path / "set")


def lock_names(backend) -> list[str]:
    return [i.name for i in backend.list("locks")]


def test_a_lock_is_a_blob_with_host_pid_and_time_and_goes_on_release(backend):
    clock = FakeClock()
    with RemoteLock(backend, clock, purpose="backup") as lock:
        [name] = lock_names(backend)
        assert name == lock.name and name.startswith("locks/20260101T000000Z-")
        record = json.loads(read_all(backend, name, 4096))
        assert record["pid"] > 0 and record["purpose"] == "backup" and record["host"]
        assert record["time"] == clock.now().isoformat()
    assert lock_names(backend) == []


def test_a_held_lock_keeps_another_writer_out_and_names_the_holder(backend):
    clock = FakeClock()
    with RemoteLock(backend, clock, purpose="backup", machine=OTHER, pid=4242):
        with pytest.raises(SetLocked) as err:
            RemoteLock(backend, clock, purpose="prune").acquire()
        assert "pid 4242" in str(err.value) and "backup on" in str(err.value)
        assert len(lock_names(backend)) == 1       # the loser left nothing behind


def test_a_lock_not_refreshed_goes_stale_by_time(backend, caplog):
    clock = FakeClock()
    RemoteLock(backend, clock, machine=OTHER, pid=4242).acquire()     # a computer that then crashed
    clock.advance(timedelta(minutes=29).total_seconds())
    with pytest.raises(SetLocked):
        RemoteLock(backend, clock).acquire()
    clock.advance(timedelta(minutes=2).total_seconds())
    with caplog.at_level(logging.WARNING):
        lock = RemoteLock(backend, clock).acquire()
    assert "Breaking a stale lock" in caplog.text and lock_names(backend) == [lock.name]


def test_a_lock_from_a_clock_far_ahead_does_not_hold_for_ever(backend):
    ahead = FakeClock()
    ahead.advance(timedelta(days=3).total_seconds())
    RemoteLock(backend, ahead, machine=OTHER).acquire()
    lock = RemoteLock(backend, FakeClock()).acquire()
    assert lock_names(backend) == [lock.name]


def test_a_dead_process_on_this_computer_holds_nothing(backend):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    clock = FakeClock()
    RemoteLock(backend, clock, pid=dead_pid).acquire()
    lock = RemoteLock(backend, clock).acquire()       # same machine id, same minute: still stale
    assert lock_names(backend) == [lock.name]


def test_a_lock_blob_that_does_not_decode_is_broken(backend):
    backend.put("locks/20260101T000000Z-garbage", b"\x00not json")
    lock = RemoteLock(backend, FakeClock()).acquire()
    assert lock_names(backend) == [lock.name]


def test_refresh_writes_a_new_blob_then_removes_the_old(backend):
    clock = FakeClock()
    lock = RemoteLock(backend, clock, refresh_every=timedelta(minutes=5)).acquire()
    first = lock.name
    clock.advance(60)
    lock.refresh_if_due()
    assert lock.name == first
    clock.advance(5 * 60)
    lock.refresh_if_due()
    assert lock.name != first and lock_names(backend) == [lock.name]
    assert json.loads(read_all(backend, lock.name, 4096))["time"] == clock.now().isoformat()
    clock.advance(29 * 60)     # 35 minutes after acquiring, 29 after the refresh: still held
    with pytest.raises(SetLocked):
        RemoteLock(backend, clock, machine=OTHER).acquire()


def test_two_writers_starting_together_both_back_off(backend):
    """The other writer's lock appears between our put and our second look (restic's race)."""
    clock = FakeClock()

    class Racing(LocalBackend):
        def put(self, name, data):
            super().put(name, data)
            if name.startswith("locks/") and not hasattr(self, "raced"):
                self.raced = True
                other = RemoteLock(LocalBackend(self.root), clock, machine=OTHER, pid=99)
                other._write()

    racing = Racing(backend.root)
    with pytest.raises(SetLocked):
        RemoteLock(racing, clock).acquire()
    assert len(lock_names(backend)) == 1      # only the other's; ours was withdrawn


def test_the_lock_on_an_rclone_remote(tmp_path, request):
    subject = open_subject("rclone-webdav", tmp_path, request)
    try:
        clock = FakeClock()
        with RemoteLock(subject.backend, clock, machine=OTHER):
            with pytest.raises(SetLocked):
                RemoteLock(subject.backend, clock).acquire()
        assert lock_names(subject.backend) == []
    finally:
        subject.backend.close()
