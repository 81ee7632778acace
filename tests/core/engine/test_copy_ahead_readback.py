"""A first backup's big files copied ahead are read back early (core/engine/copy_ahead.py): only
once their own fdatasync returned, their cache dropped, hashed, and compared; a copy that reads back
wrong or whose flush failed is never counted as read back; the run's read-back does not read a
checked copy again, and still reads every other."""

from __future__ import annotations

import hashlib
import os
import sys

import pytest

from core.cli import main
from core.engine import copy_ahead, fs, objcheck, readback, scan_ahead
from core.engine.readback_ahead import Written
from core.engine.store import Copied, read_source
from tests.core.engine.test_copy_ahead import BIG, _ahead, _entry, _Store
from tests.core.engine.test_copy_ahead import small_big as small_big  # noqa: F401 - the fixture
from tests.support.trees import make_tree

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the scan-ahead child runs on Linux only")


def _checking(tmp_path, path, store=None):
    """As test_copy_ahead._ahead, the copy-ahead told to read its copies back; returns once it
    copied the file and its read-back ended."""
    real = copy_ahead.CopyAhead.__init__

    def init(self, st, hints):
        real(self, store or st, hints, check=True)

    mp = pytest.MonkeyPatch()
    mp.setattr(copy_ahead.CopyAhead, "__init__", init)
    try:
        ahead, st = _ahead(tmp_path, path)
    finally:
        mp.undo()
    with ahead._cond:
        assert ahead._cond.wait_for(lambda: ahead._state_end and not ahead._unchecked and ahead.checking is None,
                                    timeout=10)
    return ahead, st


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fdatasync and /proc/self/fd")
def test_a_copy_made_ahead_is_read_back_after_its_own_fdatasync_with_its_cache_dropped(tmp_path, monkeypatch,
                                                                                    small_big):
    data = os.urandom(BIG + 4096)
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    events: list[tuple[str, str]] = []
    sync, drop = copy_ahead._SYNC, objcheck.drop_cache
    monkeypatch.setattr(copy_ahead, "_SYNC", lambda fd: (events.append(("sync", _fd_path(fd))), sync(fd))[1])
    monkeypatch.setattr(objcheck, "drop_cache", lambda fd: (events.append(("drop", _fd_path(fd))), drop(fd))[1])
    reads: list[str] = []
    for module in (readback, fs):   # (a copy up to a buffer's size is read by readback's, more by fs.blocks)
        def reading(fd, buf, read=module.read_into):
            reads.append(_fd_path(fd))
            return read(fd, buf)

        monkeypatch.setattr(module, "read_into", reading)
    ahead, store = _checking(tmp_path, f)
    copied = ahead.take(_entry(f))
    assert copied is not None and copied.checked
    tmp = copied.tmp_paths[0]
    assert events == [("sync", tmp), ("drop", tmp)]   # durable first, then its pages dropped
    assert reads and set(reads) == {tmp}   # then read whole from the copy (not the source)
    assert open(tmp, "rb").read() == data
    ahead.close()


class _BadStore(_Store):
    """Writes the copy with one byte flipped (a drive that stores something else), hashes the source."""

    def copy_in(self, se, *, fd: int = -1) -> Copied:
        out = self.tmp / f"{len(os.listdir(self.tmp))}.part"
        hasher = hashlib.sha256()

        class Flip:
            def __init__(self, sink):
                self.sink, self.first = sink, True

            def write(self, block):
                block = bytearray(block)
                if self.first:
                    block[0] ^= 1
                    self.first = False
                return self.sink.write(block)

        with open(out, "wb") as sink:
            size, changed = read_source(se.abspath, Flip(sink), hasher, se.size, se.mtime_ns, fd)
        return Copied(hasher.hexdigest(), size, None, [str(out)], changed)


@pytest.mark.skipif(not hasattr(os, "fdatasync"), reason="no fdatasync: no early read-back")
def test_a_copy_that_reads_back_wrong_is_discarded_and_left_to_the_pass(tmp_path, small_big):
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(BIG))
    (tmp_path / "tmp").mkdir()
    store = _BadStore(tmp_path / "tmp")
    ahead, _ = _checking(tmp_path, f, store)
    assert ahead.take(_entry(f)) is None   # never handed over: the pass copies it (and reads that back)
    assert len(store.discarded) == 1 and os.listdir(tmp_path / "tmp") == []
    ahead.close()


def test_a_copy_whose_flush_failed_is_handed_over_unchecked(tmp_path, monkeypatch, small_big):
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(BIG))

    def failing(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(copy_ahead, "_SYNC", failing)
    ahead, store = _checking(tmp_path, f)
    copied = ahead.take(_entry(f))
    assert copied is not None and not copied.checked   # (its bytes not known durable: read back later)
    ahead.close()


def _in_step(monkeypatch):
    """The pass waits until the child named the file and its copy is made and read back (else, on a
    loaded machine, the pass may reach a big file first, and take it unchecked)."""
    monkeypatch.setattr(scan_ahead.threading, "active_count", lambda: 1)   # (as in `plugback backup`)
    take = copy_ahead.CopyAhead.take

    def in_step(self, se):
        k = copy_ahead.key(se.abspath)

        def ready() -> bool:   # (copied and read back, or never named)
            job = self._jobs.get(k)
            if job is None:
                return self._ended
            return job.state == "done" and job not in self._unchecked and self.checking is not job

        with self._cond:
            assert self._cond.wait_for(ready, timeout=60)
        return take(self, se)

    monkeypatch.setattr(copy_ahead.CopyAhead, "take", in_step)


def _spied(monkeypatch) -> tuple[list[bytes], list[str]]:
    """The run's read-back lines (Written.add) and the copies read back early (their first part)."""
    lines: list[bytes] = []
    early: list[str] = []
    add, check = Written.add, readback.check_written

    def adding(self, line):
        lines.append(line)
        add(self, line)

    def checking(paths, size, sha256, *stopped):
        early.append(paths[0])
        return check(paths, size, sha256, *stopped)

    monkeypatch.setattr(Written, "add", adding)
    monkeypatch.setattr(readback, "check_written", checking)
    return lines, early


@linux
def test_a_first_backup_reads_its_big_copies_back_early_and_not_again(tmp_path, monkeypatch, small_big):
    _in_step(monkeypatch)
    lines, early = _spied(monkeypatch)
    files = {f"d{i}/big{i}.bin": os.urandom(BIG + i) for i in range(3)}
    files.update({f"d{i}/small{j}.txt": b"s" * (j + 1) for i in range(3) for j in range(20)})
    src = make_tree(tmp_path / "src", files)
    assert main(["backup", str(src), "--to", str(tmp_path / "set")]) == 0
    assert len(early) == 3   # each big file read back once, early
    assert len(lines) == 60 and not any(b"/big" in line for line in lines)   # the rest by the run's read-back
    for rel, data in files.items():
        assert (tmp_path / "set" / "Latest" / "src" / rel).read_bytes() == data
    assert os.listdir(tmp_path / "set" / "tmp") == []
    assert main(["verify", str(tmp_path / "set"), "--read-all"]) == 0


@linux
def test_a_big_copy_that_reads_back_wrong_early_is_copied_and_read_back_by_the_pass(tmp_path, monkeypatch,
                                                                                     small_big):
    _in_step(monkeypatch)
    lines, early = _spied(monkeypatch)
    check = readback.check_written   # (_spied's: notes each copy in ``early``)

    def wrong_first(paths, size, sha256, *stopped):
        problem = check(paths, size, sha256, *stopped)
        return "its content does not match its checksum" if len(early) == 1 else problem

    monkeypatch.setattr(readback, "check_written", wrong_first)
    files = {f"d{i}/big{i}.bin": os.urandom(BIG + i) for i in range(2)}
    files.update({"d0/small.txt": b"small"})
    src = make_tree(tmp_path / "src", files)
    assert main(["backup", str(src), "--to", str(tmp_path / "set")]) == 0
    assert len(early) == 2
    # The one that read back wrong was discarded, copied by the pass and read back by the run.
    assert sum(b"/big" in line for line in lines) == 1 and len(lines) == 2
    for rel, data in files.items():
        assert (tmp_path / "set" / "Latest" / "src" / rel).read_bytes() == data
    assert os.listdir(tmp_path / "set" / "tmp") == []
    assert main(["verify", str(tmp_path / "set"), "--read-all"]) == 0


@linux
@pytest.mark.parametrize("fstype", ["ext4", "exfat", "vfat"])
def test_big_copies_read_back_early_on_real_drives(make_drive, tmp_path, monkeypatch, small_big, fstype):
    """On each drive kind: the copies made ahead (split into parts on FAT32) are read back early,
    whole, and the set verifies."""
    limit = 48 << 10
    monkeypatch.setattr(fs, "FAT32_MAX", limit)   # (probe_volume reads it: big files split in parts on FAT32)
    _in_step(monkeypatch)
    lines, early = _spied(monkeypatch)
    files = {f"d{i}/big{i}.bin": os.urandom(BIG + 1000 * i) for i in range(2)}
    files.update({"d0/small.txt": b"small"})
    src = make_tree(tmp_path / "src", files)
    dest = make_drive(fstype).mount_point / "set"
    assert main(["backup", str(src), "--to", str(dest)]) == 0
    assert len(early) == 2 and len(lines) == 1   # (the small file read back by the run)
    latest = sorted(p.name for p in (dest / "Latest" / "src" / "d0").iterdir())
    assert latest == (["big0.bin.001", "big0.bin.002", "small.txt"] if fstype == "vfat" else ["big0.bin", "small.txt"])
    assert os.listdir(dest / "tmp") == []
    assert main(["verify", str(dest), "--read-all"]) == 0
    assert main(["restore", str(dest), str(tmp_path / "out")]) == 0
    for rel, data in files.items():
        assert (tmp_path / "out" / "src" / rel).read_bytes() == data


@pytest.mark.skipif(not hasattr(os, "fdatasync"), reason="no fdatasync: no early read-back")
def test_a_copy_the_pass_takes_while_it_is_read_back_is_handed_over_unchecked(tmp_path, monkeypatch, small_big):
    """The pass does not wait for a read-back in flight: it takes the copy unchecked (the run's
    read-back reads it), and the read-back stops at its next block without marking it."""
    import threading

    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(4 * BIG))
    started, go = threading.Event(), threading.Event()
    check = readback.check_written
    verdicts: list[str | None] = []

    def slow(paths, size, sha256, stopped):
        started.set()
        assert go.wait(10)
        verdicts.append(check(paths, size, sha256, stopped))
        return verdicts[-1]

    monkeypatch.setattr(readback, "check_written", slow)
    (tmp_path / "tmp").mkdir()
    store = _Store(tmp_path / "tmp")
    r, w = os.pipe()
    ahead = copy_ahead.CopyAhead(store, r, check=True)
    os.write(w, os.fsencode(str(f)) + b"\0")
    os.close(w)
    assert started.wait(10)   # (copied, durable, its read-back begun)
    copied = ahead.take(_entry(f))
    go.set()
    ahead.close()
    assert copied is not None and not copied.checked
    assert verdicts == ["its read-back was stopped"] and store.discarded == []
    assert open(copied.tmp_paths[0], "rb").read() == f.read_bytes()
