"""The pass's checkpoints in a thread of their own (core/engine/checkpoints.py): the pass copies on
while the volume is flushed; each checkpoint still flushes before its journal line and its release
to the read-back; an error or a crash in that thread fails the run and keeps the last snapshot."""

from __future__ import annotations

import errno
import threading
import time

import pytest

from core import errors
from core.engine.backup import CHECKPOINT_SECONDS
from core.engine.checkpoints import Checkpoints
from core.engine.fs import FileSystem, translate
from core.engine.progress import FakeClock
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.faults import Crash, FaultyFS
from tests.support.trees import make_tree, read_tree

FILES = {f"d{i % 4}/f{i:03}.txt": f"file {i} ".encode() * (50 + i) for i in range(60)}


def test_requests_are_made_in_order_the_newest_superseding_one_not_begun():
    began, go, made = threading.Event(), threading.Event(), []

    def make(count, blocks):
        made.append((count, blocks))
        began.set()
        assert go.wait(5)

    cp = Checkpoints(make)
    cp.request(1, 1)
    assert began.wait(5)
    cp.request(2, 1)
    cp.request(3, 2)   # (supersedes (2, 1): its flush covers both)
    go.set()
    while cp.made < 2:
        time.sleep(0.01)
    cp.request(2, 1)   # (another thread's, late: never a smaller checkpoint than one made)
    cp.finish()
    assert made == [(1, 1), (3, 2), (3, 2)]
    assert cp.made == 3
    with pytest.raises(RuntimeError):
        cp.request(4, 2)


def test_finish_before_a_commit_waits_for_the_one_in_flight_and_drops_the_rest():
    began, go, made, ended = threading.Event(), threading.Event(), [], []

    def make(count, blocks):
        made.append(count)
        began.set()
        assert go.wait(5)
        ended.append(count)

    cp = Checkpoints(make)
    cp.request(1, 0)
    assert began.wait(5)
    cp.request(2, 0)
    threading.Timer(0.2, go.set).start()
    cp.finish(committing=True)
    assert made == [1] and ended == [1]   # waited for, not left running beside the commit


def test_an_error_in_the_thread_is_raised_in_the_pass_and_by_finish():
    def make(count, blocks):
        raise errors.IOFailure("the drive failed")

    cp = Checkpoints(make)
    cp.request(1, 0)
    cp._thread.join(5)
    with pytest.raises(errors.IOFailure):
        cp.request(2, 0)
    with pytest.raises(errors.IOFailure):
        cp.finish()
    cp.finish(quietly=True)


class _SlowFlush(FileSystem):
    """The first volume flush made once the pass has copied a file waits (up to 10 s) until the pass
    copied more: it comes only if the pass does not wait for its checkpoint's flush. The pass, at
    its ``HOLD``-th file, waits (up to 60 s) for that flush to begin, so the flush begins with files
    left to copy however the threads are scheduled (a loaded machine started it after the last)."""

    HOLD = 3

    def __init__(self, root=None):
        super().__init__(root)
        self.copied = 0
        self.more = threading.Event()
        self.flushing = threading.Event()
        self.held = False
        self.at: int | None = None
        self.copied_meanwhile: bool | None = None
        self.threads: list[str] = []

    def seen(self, files_done: int) -> None:
        self.copied = files_done
        if self.at is not None and files_done > self.at:
            self.more.set()
        if files_done >= self.HOLD and not self.held:   # (once; progress may skip a count)
            self.held = True
            self.flushing.wait(60)

    def flush_volume(self, path) -> None:
        self.threads.append(threading.current_thread().name)
        if self.copied and self.at is None:
            self.at = self.copied
            self.flushing.set()
            self.copied_meanwhile = self.more.wait(10)
        super().flush_volume(path)


def test_the_pass_copies_on_while_its_checkpoint_flushes(tmp_path):
    """Fails on the code before checkpoints.py: the pass's own thread flushed, so no file was
    copied while the flush waited (it gave up after 10 s)."""
    assert len(FILES) > _SlowFlush.HOLD + 5
    src = make_tree(tmp_path / "src" / "Data", FILES)
    set_path = tmp_path / "set"
    fs = _SlowFlush(set_path)
    clock = FakeClock()

    def progress(p):
        if p.phase == "copy":
            fs.seen(p.files_done)
            clock.advance(CHECKPOINT_SECONDS)   # a checkpoint due after every file

    result = backup_path(set_path, [src], fs=fs, clock=clock, progress=progress, workers=1)
    assert fs.copied_meanwhile is True
    assert "plugback-checkpoints" in fs.threads
    assert result.status == "ok" and result.files_copied == len(FILES)
    out = tmp_path / "out"
    restore_path(set_path, out)
    assert read_tree(out / "Data") == read_tree(src)
    assert verify_path(set_path, read_all=True).ok


class _FailingFlush(FileSystem):
    """The volume's flushes fail with EIO once the pass has copied ``after`` files."""

    def __init__(self, root=None, after: int = 10):
        super().__init__(root)
        self.after, self.copied, self.failed = after, 0, 0

    def flush_volume(self, path) -> None:
        if self.copied >= self.after:
            self.failed += 1
            raise translate(OSError(errno.EIO, "injected flush_volume"), path, self.root)
        super().flush_volume(path)


def test_a_checkpoint_that_fails_in_its_thread_fails_the_run_and_keeps_the_last_snapshot(tmp_path):
    src = make_tree(tmp_path / "src" / "Data", {"keep.txt": b"first"})
    set_path = tmp_path / "set"
    first = backup_path(set_path, [src])
    make_tree(src, FILES)
    fs = _FailingFlush(set_path)
    clock = FakeClock()

    def progress(p):
        if p.phase == "copy":
            fs.copied = p.files_done
            clock.advance(CHECKPOINT_SECONDS)

    with pytest.raises(errors.IOFailure):
        backup_path(set_path, [src], fs=fs, clock=clock, progress=progress, workers=1)
    assert fs.failed >= 1
    assert not (set_path / "lock").exists(), "the lock is released after a failure"
    _first_kept_and_next_run_whole(tmp_path, set_path, src, first)


class _CrashingFS(FaultyFS):
    """A crash (every later operation fails) at the ``nth`` volume flush of the checkpoints' thread.
    :meth:`paced`: the pass waits for each of its first ``nth`` checkpoints' flush (none coalesced)."""

    def __init__(self, root=None, nth: int = 1):
        super().__init__(root)
        self.nth, self.flushes, self.where = nth, 0, ""
        self.flushed = threading.Condition()

    def flush_volume(self, path) -> None:
        if threading.current_thread().name == "plugback-checkpoints" and not self.crashed:
            with self.flushed:
                self.flushes += 1
                self.flushed.notify_all()
                if self.flushes == self.nth:
                    self.crashed, self.where = True, threading.current_thread().name
                    raise Crash("crash at a checkpoint's flush")
        super().flush_volume(path)

    def paced(self, files_done: int) -> None:
        with self.flushed:
            self.flushed.wait_for(lambda: self.crashed or self.flushes >= min(files_done, self.nth), 5)


@pytest.mark.parametrize("nth", [1, 3])
def test_a_crash_at_a_checkpoint_in_its_thread_keeps_the_last_snapshot_and_resumes(tmp_path, nth):
    src = make_tree(tmp_path / "src" / "Data", {"keep.txt": b"first"})
    set_path = tmp_path / "set"
    first = backup_path(set_path, [src])
    make_tree(src, FILES)
    fs = _CrashingFS(set_path, nth)
    clock = FakeClock()

    def progress(p):
        if p.phase == "copy":
            clock.advance(CHECKPOINT_SECONDS)
            fs.paced(p.files_done - 1)   # (the checkpoint due after this file is requested after this)

    with pytest.raises(Crash):
        backup_path(set_path, [src], fs=fs, clock=clock, progress=progress, workers=1)
    assert fs.where == "plugback-checkpoints" and fs.flushes == nth
    (set_path / "lock").unlink(missing_ok=True)   # (a dead process's lock: broken as stale)
    assert verify_path(set_path, read_all=True).ok
    _first_kept_and_next_run_whole(tmp_path, set_path, src, first)


def _first_kept_and_next_run_whole(tmp_path, set_path, src, first) -> None:
    """After a failed run: the first snapshot restores as it was, and the next run is whole and verified."""
    out = tmp_path / "out-first"
    restore_path(set_path, out, snapshot=first.snapshot_id)
    assert read_tree(out / "Data") == {"keep.txt": b"first"}
    result = backup_path(set_path, [src])
    assert result.status == "ok"
    out = tmp_path / "out"
    restore_path(set_path, out)
    assert read_tree(out / "Data") == read_tree(src)
    assert verify_path(set_path, read_all=True).ok
