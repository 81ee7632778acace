"""A crash, a full disk, an I/O error at every write step never costs the last good snapshot."""

from __future__ import annotations

import errno
import shutil

import pytest

from core import errors
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.faults import Crash, FaultyFS
from tests.support.trees import Symlink, make_tree, read_tree

BEFORE = {
    "keep.txt": b"unchanged",
    "edit.txt": b"version one",
    "gone.txt": b"deleted later",
    "move/me.txt": b"renamed later",
    "was_dir/inside.txt": b"a folder that becomes a file",
    "big.bin": bytes(range(256)) * 3000,
    "dup1.txt": b"same",
    "dup2.txt": b"same",
    "link": Symlink("keep.txt"),
    "empty/": None,
}


def _after(src):
    """A day of changes: edit, delete, rename, type change, add."""
    (src / "edit.txt").write_bytes(b"version two, longer")
    (src / "gone.txt").unlink()
    (src / "move").rename(src / "moved")
    shutil.rmtree(src / "was_dir")
    (src / "was_dir").write_bytes(b"now a file")
    (src / "new.txt").write_bytes(b"brand new")
    (src / "big.bin").write_bytes(bytes(range(255, -1, -1)) * 3000)


@pytest.fixture
def scenario(tmp_path):
    """A set with one snapshot of BEFORE, a pristine copy of it, and the sources changed since."""
    src = make_tree(tmp_path / "src" / "Data", BEFORE)
    set_path = tmp_path / "set"
    first = backup_path(set_path, [src])
    pristine = tmp_path / "pristine"
    shutil.copytree(set_path, pristine, symlinks=True)
    _after(src)
    return src, set_path, pristine, first.snapshot_id


def _count_write_steps(src, set_path, pristine) -> int:
    probe = FaultyFS(set_path)
    backup_path(set_path, [src], fs=probe)
    _reset(set_path, pristine)
    return probe.calls


def _reset(set_path, pristine):
    shutil.rmtree(set_path)
    shutil.copytree(pristine, set_path, symlinks=True)


def _assert_intact(set_path, snapshot_id, expected, tmp_path, label):
    out = tmp_path / f"restore-{label}"
    result = restore_path(set_path, out, snapshot=snapshot_id)
    assert not result.damaged, label
    assert read_tree(out / "Data") == expected, label
    shutil.rmtree(out)
    v = verify_path(set_path, read_all=True)
    assert v.damaged == [], label


@pytest.mark.slow
def test_crash_at_every_write_step_keeps_previous_snapshot(scenario, tmp_path):
    src, set_path, pristine, first_id = scenario
    before = make_tree(tmp_path / "expected", BEFORE)
    expected_before = read_tree(before)
    expected_after = read_tree(src)
    steps = _count_write_steps(src, set_path, pristine)
    assert steps > 20   # the scenario really exercises the write path
    for n in range(1, steps + 1):
        fs = FaultyFS(set_path, fail_at=n)
        with pytest.raises(Crash):
            backup_path(set_path, [src], fs=fs)
        # A dead process leaves its lock, which the next run breaks as stale (its pid is
        # gone; tests/core/engine/test_lock.py). Ours is alive, so clear it the same way here.
        (set_path / "lock").unlink(missing_ok=True)
        _assert_intact(set_path, first_id, expected_before, tmp_path, f"after crash at step {n} ({fs.log[-1]})")
        result = backup_path(set_path, [src])
        assert result.status == "ok", n
        _assert_intact(set_path, result.snapshot_id, expected_after, tmp_path, f"next run after step {n}")
        _assert_intact(set_path, first_id, expected_before, tmp_path, f"first snapshot after step {n}")
        _reset(set_path, pristine)


@pytest.mark.parametrize("code, error_type, words", [
    (errno.ENOSPC, errors.DiskFull, "drive is full"),
    (errno.EIO, errors.IOFailure, "input/output error"),
    (errno.EACCES, errors.DestinationUnwritable, "permission denied"),
    (errno.EROFS, errors.ReadOnlyDestination, "read-only"),
])
@pytest.mark.parametrize("step", [1, 5, 15, 30])
def test_write_errors_are_clear_and_leave_snapshot_intact(scenario, tmp_path, code, error_type, words, step):
    src, set_path, pristine, first_id = scenario
    expected_before = read_tree(make_tree(tmp_path / "expected", BEFORE))
    with pytest.raises(error_type) as info:
        backup_path(set_path, [src], fs=FaultyFS(set_path, fail_at=step, error=code))
    assert words in str(info.value).lower()
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    assert not (set_path / "lock").exists(), "the lock is released after a failure"
    _assert_intact(set_path, first_id, expected_before, tmp_path, "after error")
    assert backup_path(set_path, [src]).status == "ok"


def test_resume_does_not_copy_again(tmp_path):
    """A run stopped halfway (cancel) is finished by the next one without copying the same data."""
    from core.engine.progress import CancelToken

    spec = {f"f{i:03}.bin": bytes([i]) * 20000 for i in range(60)}
    src = make_tree(tmp_path / "src" / "Data", spec)
    set_path = tmp_path / "set"
    token = CancelToken()
    seen = []

    def stop_halfway(p):
        if p.phase == "copy":
            seen.append(p.files_done)
            if p.files_done >= 30:
                token.cancel()

    with pytest.raises(errors.Cancelled):
        backup_path(set_path, [src], cancel=token, progress=stop_halfway, workers=1)
    result = backup_path(set_path, [src])
    assert 0 < result.files_copied <= 30, result.files_copied
    out = tmp_path / "out"
    restore_path(set_path, out)
    assert read_tree(out / "Data") == read_tree(src)
    assert verify_path(set_path, read_all=True).ok


def test_interrupted_run_is_reported_by_verify_and_finished(scenario, tmp_path):
    src, set_path, pristine, first_id = scenario
    steps = _count_write_steps(src, set_path, pristine)
    with pytest.raises(Crash):
        backup_path(set_path, [src], fs=FaultyFS(set_path, fail_at=steps // 2))
    (set_path / "lock").unlink(missing_ok=True)
    v = verify_path(set_path)
    assert v.ok and any("interrupted" in n for n in v.notices)
    backup_path(set_path, [src])
    assert verify_path(set_path).notices == []


def test_full_real_drive(make_drive, tmp_path):
    """A real ext4 file system that fills up: a clear message, the last snapshot intact."""
    drive = make_drive("ext4", size_mb=16)
    set_path = drive.mount_point / "set"
    src = make_tree(tmp_path / "src" / "Data", {"small.txt": b"fits"})
    first = backup_path(set_path, [src])
    import os
    (src / "huge.bin").write_bytes(os.urandom(30 << 20))
    with pytest.raises(errors.DiskFull) as info:
        backup_path(set_path, [src])
    assert "full" in str(info.value)
    out = tmp_path / "out"
    restore_path(set_path, out, snapshot=first.snapshot_id)
    assert read_tree(out / "Data") == {"small.txt": b"fits"}
    assert verify_path(set_path, read_all=True).ok


KILL_SCRIPT = """
import sys, time
from core.engine.backup import CHECKPOINT_SECONDS, BackupOptions, backup
from core.engine.progress import FakeClock
from core.engine.repo import BackupSet
clock = FakeClock()
def progress(p):
    if p.phase == "copy":
        print(p.files_done, flush=True)
        clock.advance(CHECKPOINT_SECONDS)   # a checkpoint after every file
        time.sleep(0.02)   # slow enough for the test to kill us mid-run
bset = BackupSet.create(sys.argv[1], clock.now())
backup(bset, [sys.argv[2]], BackupOptions(progress=progress, workers=1, clock=clock))
"""


def test_killed_process_resumes_from_checkpoint(tmp_path):
    """SIGKILL mid-backup (no clean-up runs): the next run reuses the checkpointed work."""
    import signal
    import subprocess
    import sys

    from tests.support.env import subprocess_env

    spec = {f"f{i:03}.bin": bytes([i]) * 50000 for i in range(80)}
    src = make_tree(tmp_path / "src" / "Data", spec)
    set_path = tmp_path / "set"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(set_path), str(src)],
                            stdout=subprocess.PIPE, text=True, env=subprocess_env())
    for line in proc.stdout:
        if int(line) >= 40:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not list((set_path / "snapshots").iterdir()), "killed before the commit"
    result = backup_path(set_path, [src])    # breaks the dead process's lock
    assert result.files_copied <= 80 - 35, result.files_copied
    out = tmp_path / "out"
    restore_path(set_path, out)
    assert read_tree(out / "Data") == read_tree(src)
    assert verify_path(set_path, read_all=True).ok
