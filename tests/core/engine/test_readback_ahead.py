"""The backup's read-back overlapped with the pass (core/engine/readback_ahead.py and
readback_thread.py, issue #11): in a plain set on Linux, what a checkpoint's flush made durable is
read back while the pass goes on; only that, each copy once; what reads back wrong is copied again
after the last step; a failed or cancelled pass stops the reader, and leaves nothing running or open."""

from __future__ import annotations

import errno
import os
import threading
from collections import Counter

import pytest

from core import errors
from core.engine import backup as backup_mod
from core.engine import fresh_latest, objcheck, readback_proc, readback_thread
from core.engine.fs import READS_AHEAD, FileSystem, translate
from core.engine.progress import CancelToken, FakeClock
from core.engine.readback_ahead import BLOCK_BYTES, Written
from core.engine.store import PlainStore
from core.errors import Cancelled
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.trees import make_tree, read_tree

WAIT = 10.0   # seconds a step waits for the reader (only a broken run waits that long)
FILES = 240
linux_only = pytest.mark.skipif(not READS_AHEAD, reason="the read-back overlaps the pass where it drops caches (Linux)")


# --- Written: the blocks --------------------------------------------------------------


def _consume(w: Written, out: list, **kw) -> threading.Thread:
    def run():
        try:
            for block in w.blocks(**kw):
                out.extend(block)
        except Cancelled:
            out.append(b"cancelled")
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _settle(out: list, n: int) -> None:
    """Wait until ``out`` holds ``n`` lines, then a little more to see that no others come."""
    done = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if len(out) >= n:
            break
        done.wait(0.01)
    done.wait(0.1)
    assert len(out) == n, len(out)


def test_written_gives_only_released_blocks_in_order_holding_one_block_in_memory():
    """Lines cut before a flush come out once that is released, in order; the lines after wait;
    memory holds at most one block's lines; the rest comes at close_input."""
    w = Written()
    try:
        lines = [b"%06d" % i + b"x" * 100 for i in range(3000)]
        for line in lines[:2000]:
            w.add(line)
            assert sum(map(len, w._lines)) < BLOCK_BYTES   # (the rest went to the file)
        blocks = w.cut()
        for line in lines[2000:]:
            w.add(line)
        out: list[bytes] = []
        t = _consume(w, out)
        _settle(out, 0)        # nothing released: nothing read
        w.release(blocks)
        _settle(out, 2000)     # what was cut before "the flush", no more
        w.close_input()
        t.join(WAIT)
        assert out == lines and w.count == 3000
    finally:
        w.close()


def test_written_flushes_for_its_reader_once_it_caught_up_and_stops_at_once():
    """A reader with nothing released but lines waiting cuts, flushes and releases them itself, no
    sooner than ``every`` seconds after the last release; stop() ends a waiting reader."""
    clock = FakeClock()
    w = Written(clock.monotonic)
    flushes: list[int] = []
    try:
        for i in range(10):
            w.add(b"line %d" % i)
        out: list[bytes] = []
        t = _consume(w, out, flush=lambda: flushes.append(w.count), every=1.0)
        _settle(out, 0)   # not due yet (the fake clock has not moved)
        clock.advance(1.0)
        w.add(b"line 10")   # (wakes it; its wait would also end by itself)
        _settle(out, 11)
        assert flushes == [11]
        w.stop()
        t.join(WAIT)
        assert out[-1] == b"cancelled" and not t.is_alive()
    finally:
        w.close()


# --- the run ----------------------------------------------------------------------------


class Trace:
    """What a backup did, as seen from outside: copies placed, the files each flush made durable,
    the read-back's opens (durable then? before the commit?). A plain set on Linux reads back in a
    worker process (core/engine/readback_proc.py): there, a copy counts as opened when it is handed
    to the worker (which opens it after that)."""

    def __init__(self, monkeypatch):
        self.lock = threading.Lock()
        self.placed: list[str] = []
        self.durable: set[str] = set()
        self.opens: list[tuple[str, bool, bool]] = []   # (path, durable, before the commit)
        self.opened = threading.Event()
        self.committing = False
        place, flush, open_copy, commit = (PlainStore.place, FileSystem.flush_volume, objcheck.open_copy,
                                           backup_mod._Run._commit)
        handed = readback_proc._handed

        def placing(store, copied, entry, old):
            written = place(store, copied, entry, old)
            with self.lock:
                self.placed.extend(str(p) for p in store.written_paths(entry))
            return written

        def flushing(fs, path):
            with self.lock:
                now = set(self.placed)
            flush(fs, path)
            with self.lock:
                self.durable |= now

        def opening(paths):
            with self.lock:
                for p in paths:
                    self.opens.append((str(p), str(p) in self.durable, not self.committing))
            self.opened.set()

        def handing(run, batch):
            opening([p for e, _ in batch for p in run.store.written_paths(e)])
            return handed(run, batch)

        def committing(run, header):
            self.committing = True
            commit(run, header)

        monkeypatch.setattr(PlainStore, "place", placing)
        monkeypatch.setattr(FileSystem, "flush_volume", flushing)
        monkeypatch.setattr(objcheck, "open_copy", lambda paths: (opening(paths), open_copy(paths))[1])
        monkeypatch.setattr(readback_proc, "_handed", handing)
        monkeypatch.setattr(readback_proc, "BATCH", 8)   # (240 files: some batches are handed before the commit)
        monkeypatch.setattr(backup_mod._Run, "_commit", committing)

    def during_pass(self) -> list[str]:
        return [p for p, _, before in self.opens if before]


def _checkpointing(then=None):
    """A fake clock moved past the checkpoint interval at each copy (a flush after every file), the
    pass slowed a little so the reader works beside it; ``then(files_done)`` after each copy."""
    clock = FakeClock()

    def progress(p):
        if p.phase == "copy":
            clock.advance(backup_mod.CHECKPOINT_SECONDS)
            threading.Event().wait(0.002)
            if then is not None:
                then(p.files_done)
    return clock, progress


def _spec(n: int = FILES) -> dict:
    return {f"d{i // 50}/f{i:03}.txt": b"content %d " % i * (i % 7 + 1) for i in range(n)}


@linux_only
def test_only_what_a_flush_made_durable_is_read_back_during_the_pass_each_copy_once(tmp_path, monkeypatch):
    """Every copy the read-back opens was placed before a flush that had ended; many are read back
    before the commit (the old code read back only after it); each copy is read back exactly once."""
    src = make_tree(tmp_path / "src" / "Data", _spec())
    trace = Trace(monkeypatch)
    clock, progress = _checkpointing()
    r = backup_path(tmp_path / "set", [src], clock=clock, progress=progress, workers=1)
    assert r.status == "ok" and r.damaged == [] and r.files_copied == FILES
    assert all(durable for _, durable, _ in trace.opens), [p for p, d, _ in trace.opens if not d][:5]
    assert len(trace.during_pass()) >= FILES // 4, len(trace.during_pass())
    assert Counter(p for p, _, _ in trace.opens) == Counter(trace.placed)
    assert len(trace.placed) == FILES
    monkeypatch.undo()
    assert verify_path(tmp_path / "set", read_all=True).ok


@linux_only
@pytest.mark.parametrize("swap", ["flipped", "symlink"])
def test_a_copy_damaged_after_its_flush_is_found_during_the_pass_and_copied_again(tmp_path, monkeypatch, swap):
    """A copy that reads back wrong in the pass (other bytes; a symlink to the right bytes, never
    followed) is repaired after the last step, as a damage found after the commit is."""
    spec = _spec()
    src = make_tree(tmp_path / "src" / "Data", spec)
    twin = tmp_path / "twin"
    twin.write_bytes(spec["d0/f010.txt"])
    trace = Trace(monkeypatch)
    copy = tmp_path / "set" / "Latest" / "Data" / "d0" / "f010.txt"
    staged = tmp_path / "set" / "tmp" / fresh_latest.STAGE / "Data" / "d0" / "f010.txt"   # (a first backup's)
    found = []
    checked = readback_proc.checked

    def spoil(done):
        if done == 11:   # f010 is placed (and not yet flushed: the next copy's checkpoint does that)
            staged.unlink()
            staged.symlink_to(twin) if swap == "symlink" else staged.write_bytes(b"X" + spec["d0/f010.txt"][1:])

    def checking(run, items, few=None, **k):
        for batch, problems in checked(run, items, few, size=8, **k):
            found.extend((e.path, not trace.committing) for (e, _), problem in zip(batch, problems, strict=True) if problem)
            yield batch, problems

    monkeypatch.setattr(readback_proc, "checked", checking)
    clock, progress = _checkpointing(spoil)
    r = backup_path(tmp_path / "set", [src], clock=clock, progress=progress, workers=1)
    assert found == [("Data/d0/f010.txt", True)]   # found in the pass
    assert r.status == "ok" and r.damaged == []    # and repaired
    assert not copy.is_symlink() and copy.read_bytes() == spec["d0/f010.txt"]
    monkeypatch.undo()
    assert verify_path(tmp_path / "set", read_all=True).ok
    restore_path(tmp_path / "set", tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Data") == read_tree(src)


def _open_below(folder) -> list[str]:
    """This process's descriptors open on anything below ``folder``."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{folder}/"):
            held.append(target)
    return held


def _workers() -> list[str]:
    """This process's read-back workers still running (core/engine/readback_proc.py)."""
    import psutil

    return [" ".join(c.cmdline()) for c in psutil.Process().children(recursive=True)
            if "core.engine.readpool" in " ".join(c.cmdline())]


@linux_only
@pytest.mark.parametrize("how", ["cancel", "disk full", "drive gone"])
def test_a_stopped_pass_stops_the_read_back_beside_it(tmp_path, monkeypatch, how):
    """Cancelled, a full drive (a copy's write), a drive gone (a checkpoint's flush) while the
    read-back works beside the pass: the run ends with that error, its reader stopped and waited
    for (no thread, no descriptor of the set open) before the lock goes; the last snapshot stays
    whole and the next run completes."""
    set_path = tmp_path / "set"
    first = backup_path(set_path, [make_tree(tmp_path / "src" / "Data", {"old.txt": b"old"})])
    src = make_tree(tmp_path / "src" / "Data", _spec())
    trace = Trace(monkeypatch)
    token = CancelToken()
    failing = threading.Event()
    flush = FileSystem.flush_volume

    def stop_there(done):
        if done == FILES // 2:
            assert trace.opened.wait(WAIT), "the read-back has not started beside the pass"
            token.cancel() if how == "cancel" else failing.set()

    traced = PlainStore.place

    def place_or_fail(store, copied, entry, old):
        if how == "disk full" and failing.is_set():
            raise translate(OSError(errno.ENOSPC, "injected"), entry.path, set_path)
        return traced(store, copied, entry, old)

    def flush_or_fail(fs, path):
        if how == "drive gone" and failing.is_set():
            raise translate(OSError(errno.EIO, "injected"), path, set_path)
        return flush(fs, path)

    monkeypatch.setattr(PlainStore, "place", place_or_fail)
    monkeypatch.setattr(FileSystem, "flush_volume", flush_or_fail)
    clock, progress = _checkpointing(stop_there)
    expected = {"cancel": Cancelled, "disk full": errors.DiskFull, "drive gone": errors.IOFailure}[how]
    with pytest.raises(expected):
        backup_path(set_path, [src], clock=clock, progress=progress, cancel=token, workers=1)
    assert trace.during_pass()
    assert not [t for t in threading.enumerate() if t.name == "plugback-read-back"]
    assert _open_below(set_path) == [] and _workers() == []
    assert not (set_path / "lock").exists()
    monkeypatch.undo()
    restore_path(set_path, tmp_path / "old", snapshot=first.snapshot_id)
    assert read_tree(tmp_path / "old" / "Data") == {"old.txt": b"old"}
    r = backup_path(set_path, [src])
    assert r.status == "ok" and r.files_copied < FILES   # (what the journal's checkpoints kept is not copied again)
    assert verify_path(set_path, read_all=True).ok


def test_an_encrypted_set_is_read_back_after_the_commit(tmp_path, monkeypatch):
    """Only plain sets read back beside the pass (an encrypted set's seal workers share its
    read-back after the commit): its read-back starts at the commit, even with checkpoints."""
    src = make_tree(tmp_path / "src" / "Data", _spec(60))
    started, committing = [], []
    init, commit = readback_thread.ReadBack.__init__, backup_mod._Run._commit

    def starting(self, *a, **k):
        started.append(bool(committing))
        init(self, *a, **k)

    def commit_first(run, header):
        committing.append(True)
        commit(run, header)

    monkeypatch.setattr(readback_thread.ReadBack, "__init__", starting)
    monkeypatch.setattr(backup_mod._Run, "_commit", commit_first)
    clock, progress = _checkpointing()
    r = backup_path(tmp_path / "set", [src], passphrase="pw", clock=clock, progress=progress, workers=1)
    assert r.status == "ok" and r.damaged == [] and r.files_copied == 60
    assert started == [True]
