"""One writer per set: the lock file, stale locks, and what a second writer is told."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone

import pytest

from core.engine.layout import SetLayout
from core.engine.lock import STALE_AFTER, SetLock
from core.engine.progress import Clock, FakeClock
from core.engine.repo import BackupSet
from core.errors import EXIT_FAILURE, SetLocked
from tests.support.cli import run_cli
from tests.support.engine import backup_path
from tests.support.env import subprocess_env
from tests.support.trees import make_tree


@pytest.fixture
def clock():
    """A fake clock that starts at the real time (lock ages are compared with file times too)."""
    return FakeClock(datetime.now(timezone.utc).replace(microsecond=0))


def _write_lock(path, **holder) -> None:
    path.write_text(json.dumps(holder))


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_lock_file_names_the_holder_and_goes_away(tmp_path, clock):
    path = tmp_path / "lock"
    with SetLock(path, clock, purpose="backup") as lock:
        holder = json.loads(path.read_text())
        assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
        assert holder["purpose"] == "backup" and holder["time"] == clock.now().isoformat()
        assert lock.held
    assert not path.exists() and not lock.held


def test_second_writer_is_refused_with_the_holder_named(tmp_path, clock):
    path = tmp_path / "lock"
    with SetLock(path, clock, purpose="backup"):
        with pytest.raises(SetLocked) as info:
            SetLock(path, clock, purpose="forget").acquire()
        msg = str(info.value)
        assert f"process {os.getpid()} on {socket.gethostname()}" in msg and "backup by" in msg
        assert "Wait for it to finish" in msg
        assert info.value.code == "set_locked" and info.value.exit_code == EXIT_FAILURE
        assert json.loads(path.read_text())["purpose"] == "backup"      # the holder's lock is untouched
    SetLock(path, clock).acquire().release()                            # free again


def test_only_one_of_many_threads_gets_the_lock(tmp_path, clock):
    path = tmp_path / "lock"
    start = threading.Barrier(8)
    won, lost = [], []

    def contend():
        start.wait()
        try:
            won.append(SetLock(path, clock).acquire())
        except SetLocked:
            lost.append(1)

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 7
    won[0].release()


def test_lock_held_by_another_live_process(tmp_path, clock, caplog):
    path = tmp_path / "lock"
    code = textwrap.dedent(f"""
        import sys
        from core.engine.lock import SetLock
        from core.engine.progress import Clock
        lock = SetLock({str(path)!r}, Clock()).acquire()
        print("held", flush=True)
        sys.stdin.read()   # hold until the test closes our stdin
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=subprocess_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SetLocked, match=f"process {holder.pid} on"):
            SetLock(path, clock).acquire()
    finally:
        holder.kill()
        holder.wait()
    # Killed while holding it: the lock file is still there, and now stale (dead pid, this host).
    assert json.loads(path.read_text())["pid"] == holder.pid
    with caplog.at_level(logging.WARNING, logger="core.engine.lock"):
        with SetLock(path, clock):
            assert json.loads(path.read_text())["pid"] == os.getpid()
    assert any("Breaking stale lock" in r.getMessage() and str(holder.pid) in r.getMessage()
               for r in caplog.records)


def test_stale_lock_of_a_dead_process_on_this_host_is_broken(tmp_path, clock, caplog):
    path = tmp_path / "lock"
    _write_lock(path, host=socket.gethostname(), pid=_dead_pid(), purpose="backup", time=clock.now().isoformat())
    with caplog.at_level(logging.WARNING, logger="core.engine.lock"):
        with SetLock(path, clock):
            pass
    assert "Breaking stale lock" in caplog.text


def test_lock_from_another_computer_is_stale_only_when_old(tmp_path, clock):
    path = tmp_path / "lock"
    since = clock.now()
    # pid 1 is alive here, but on another computer it means nothing: only the age counts.
    _write_lock(path, host="other-laptop", pid=1, purpose="backup", time=since.isoformat())
    with pytest.raises(SetLocked, match="other-laptop"):
        SetLock(path, clock).acquire()
    clock.advance((STALE_AFTER - timedelta(minutes=1)).total_seconds())
    with pytest.raises(SetLocked):
        SetLock(path, clock).acquire()
    clock.advance(120)
    with SetLock(path, clock):
        assert json.loads(path.read_text())["host"] == socket.gethostname()


def test_refresh_keeps_a_long_run_fresh_for_other_computers(tmp_path, clock):
    path = tmp_path / "lock"
    lock = SetLock(path, clock).acquire()
    clock.advance(STALE_AFTER.total_seconds() - 60)
    lock.refresh()
    assert json.loads(path.read_text())["time"] == clock.now().isoformat()
    # Seen from another computer 2 minutes later: the refreshed lock is not stale.
    other = json.loads(path.read_text()) | {"host": "other-laptop"}
    lock.release()
    _write_lock(path, **other)
    clock.advance(120)
    with pytest.raises(SetLocked):
        SetLock(path, clock).acquire()


def test_unreadable_lock_is_stale_only_after_a_minute(tmp_path, clock):
    # A writer between creating the file and writing its record leaves it empty for a moment.
    path = tmp_path / "lock"
    path.write_bytes(b"")
    with pytest.raises(SetLocked, match="unknown process"):
        SetLock(path, clock).acquire()
    clock.advance(61)
    with SetLock(path, clock):
        pass


def test_lock_left_behind_by_this_process_is_broken(tmp_path, clock):
    # The drive was pulled mid-run: release() could not delete the file; when the drive
    # comes back, the same (still running) agent must be able to back up again.
    path = tmp_path / "lock"
    lost = SetLock(path, clock).acquire()
    record = path.read_text()
    lost.release()
    path.write_text(record)
    with SetLock(path, clock):
        pass


def test_backup_into_a_locked_set_changes_nothing(tmp_path, clock):
    src = make_tree(tmp_path / "Docs", {"a.txt": b"a"})
    set_path = tmp_path / "set"
    first = backup_path(set_path, [src])
    (src / "a.txt").write_bytes(b"changed")
    with SetLock(SetLayout(set_path).lock, Clock()):
        with pytest.raises(SetLocked):
            backup_path(set_path, [src])
    assert BackupSet.open(set_path).snapshot_ids() == [first.snapshot_id]
    assert (SetLayout(set_path).latest / "Docs" / "a.txt").read_bytes() == b"a"


def test_cli_reports_a_locked_set(tmp_path):
    src = make_tree(tmp_path / "Docs", {"a.txt": b"a"})
    set_path = tmp_path / "set"
    assert run_cli("backup", src, "--to", set_path).returncode == 0
    # This test process holds the lock: alive, same host, so the CLI must wait its turn.
    with SetLock(SetLayout(set_path).lock, Clock(), purpose="backup"):
        for args in (["backup", src, "--to", set_path], ["forget", set_path, "--keep-last", "1", "--prune"]):
            r = run_cli(*args)
            assert r.returncode == 1, r.stdout + r.stderr
            assert "Another backup is writing to this set right now" in r.stderr
            assert f"process {os.getpid()}" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("backup", src, "--to", set_path)
    assert r.returncode == 0, r.stderr
