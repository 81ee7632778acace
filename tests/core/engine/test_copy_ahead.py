"""A first backup's big files copied ahead of the pass (core/engine/copy_ahead.py): the scan-ahead
child names them on a pipe; a copy is handed to the pass only for the very file it scanned,
unchanged; a source swapped for a symlink or a FIFO is neither followed nor waited on; copies
never taken are removed; a first backup takes them and its copies are read back and right."""

from __future__ import annotations

import hashlib
import os
import sys
import time

import pytest

from core.cli import main
from core.engine import copy_ahead, fresh_latest, scan_ahead
from core.engine.scan import Excluder, ScanEntry
from core.engine.store import Copied, read_source
from tests.support.trees import Symlink, make_tree

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the scan-ahead child runs on Linux only")
BIG = 64 << 10


@pytest.fixture
def small_big(monkeypatch):
    """Files of 64 KiB and more count as big (the tests' files stay small)."""
    monkeypatch.setattr(copy_ahead, "BIG_BYTES", BIG)
    monkeypatch.setattr(scan_ahead, "BIG_BYTES", BIG)


class _Store:
    """``copy_in`` as the stores do it (read once, hashed, written to a file of ``tmp``)."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.discarded: list[Copied] = []

    def copy_in(self, se, *, fd: int = -1) -> Copied:
        out = self.tmp / f"{len(os.listdir(self.tmp))}.part"
        hasher = hashlib.sha256()
        with open(out, "wb") as sink:
            size, changed = read_source(se.abspath, sink, hasher, se.size, se.mtime_ns, fd)
        return Copied(hasher.hexdigest(), size, None, [str(out)], changed)

    def discard(self, copied: Copied) -> None:
        self.discarded.append(copied)
        for p in copied.tmp_paths:
            os.unlink(p)


def _entry(path) -> ScanEntry:
    st = os.lstat(path)
    return ScanEntry("src/" + os.path.basename(path), str(path), "file", st.st_size, st.st_mtime_ns, 0o644,
                     st.st_ino, st.st_ctime_ns)


def _ahead(tmp_path, *paths) -> tuple[copy_ahead.CopyAhead, _Store]:
    """A copy-ahead told ``paths`` (then the pipe's end), its store; returns once it copied them all."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    store = _Store(tmp_path / "tmp")
    r, w = os.pipe()
    ahead = copy_ahead.CopyAhead(store, r)
    os.write(w, b"".join(os.fsencode(str(p)) + b"\0" for p in paths))
    os.close(w)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with ahead._cond:
            if ahead._ended and all(j.state == "done" for j in ahead._jobs.values()):
                break
        time.sleep(0.01)
    return ahead, store


def test_the_walk_names_the_big_regular_files_and_no_others(tmp_path, small_big):
    big = os.urandom(BIG)
    src = make_tree(tmp_path / "src", {"a/big.bin": big, "a/small.txt": b"x" * 100, "z/big2.bin": big + b"!",
                                       "link.bin": Symlink(str(tmp_path / "src" / "a" / "big.bin")),
                                       "node_modules/big.bin": big})
    r, w = os.pipe()
    scan_ahead.walk([str(src)], Excluder(["node_modules/"]), hints=w)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        named = f.read().split(b"\0")
    # In the scan's order, each once; not the small file, the symlink, nor an excluded folder's.
    assert named == [os.fsencode(str(src / "a" / "big.bin")), os.fsencode(str(src / "z" / "big2.bin")), b""]


def test_the_copy_of_the_file_the_pass_scanned_is_handed_over_once(tmp_path, small_big):
    data = os.urandom(BIG + 1000)
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    ahead, store = _ahead(tmp_path, f)
    copied = ahead.take(_entry(f))
    assert copied is not None and copied.sha256 == hashlib.sha256(data).hexdigest() and copied.size == len(data)
    assert open(copied.tmp_paths[0], "rb").read() == data
    assert ahead.take(_entry(f)) is None   # (once: the pass copies anything else itself)
    ahead.close()
    assert store.discarded == [] and ahead.taken == 1


def test_a_file_changed_after_its_copy_ahead_is_copied_by_the_pass(tmp_path, small_big):
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(BIG))
    ahead, store = _ahead(tmp_path, f)
    with open(f, "r+b") as fh:   # (same size; the change time moves even where the mtime would not)
        fh.write(b"changed")
    os.utime(f, ns=(os.stat(f).st_atime_ns, os.stat(f).st_mtime_ns))
    assert ahead.take(_entry(f)) is None
    assert len(store.discarded) == 1 and os.listdir(tmp_path / "tmp") == []
    ahead.close()


def test_a_source_swapped_for_a_symlink_or_a_fifo_is_not_followed_nor_waited_on(tmp_path, small_big):
    real = tmp_path / "real.bin"
    real.write_bytes(os.urandom(BIG))
    link, fifo = tmp_path / "link.bin", tmp_path / "fifo.bin"
    os.symlink(real, link)
    if hasattr(os, "mkfifo"):
        os.mkfifo(fifo)
    start = time.monotonic()
    ahead, store = _ahead(tmp_path, link, fifo)
    assert time.monotonic() - start < 5
    assert os.listdir(tmp_path / "tmp") == []   # nothing read through the link, nothing from the FIFO
    ahead.close()


def test_copies_never_taken_are_removed_at_close(tmp_path, small_big):
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(BIG))
    ahead, store = _ahead(tmp_path, f)
    assert len(os.listdir(tmp_path / "tmp")) == 1
    ahead.close()
    assert os.listdir(tmp_path / "tmp") == [] and len(store.discarded) == 1


def test_a_file_the_pass_reached_first_is_not_copied_ahead(tmp_path, small_big):
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(BIG))
    (tmp_path / "tmp").mkdir()
    store = _Store(tmp_path / "tmp")
    r, w = os.pipe()
    ahead = copy_ahead.CopyAhead(store, r)
    assert ahead.take(_entry(f)) is None   # the pass is there first: it copies the file itself
    os.write(w, os.fsencode(str(f)) + b"\0")
    os.close(w)
    ahead.close()
    assert os.listdir(tmp_path / "tmp") == []


@linux
def test_a_first_backup_takes_the_copies_made_ahead_and_reads_them_back(tmp_path, monkeypatch, small_big):
    monkeypatch.setattr(scan_ahead.threading, "active_count", lambda: 1)   # (as in `plugback backup`)
    taken: list[int] = []
    close = copy_ahead.CopyAhead.close

    def closing(self):
        close(self)
        taken.append(self.taken)

    monkeypatch.setattr(copy_ahead.CopyAhead, "close", closing)
    take = copy_ahead.CopyAhead.take

    def in_step(self, se):
        """The pass waits until the child named the file and its copy is made (or the names
        ended): on a loaded machine the pass may otherwise reach every big file first."""
        k = copy_ahead.key(se.abspath)
        with self._cond:
            assert self._cond.wait_for(lambda: (k in self._jobs and self._jobs[k].state == "done")
                                       or (self._ended and k not in self._jobs), timeout=60)
        return take(self, se)

    monkeypatch.setattr(copy_ahead.CopyAhead, "take", in_step)
    load = scan_ahead.load_ahead

    def late(package):
        """The child starts walking after the parent made the new set's folders (as on a loaded
        machine): it must still see a first backup (a set with no snapshot yet) and name the files."""
        time.sleep(0.5)
        return load(package)

    monkeypatch.setattr(scan_ahead, "load_ahead", late)
    files = {f"d{i}/big{i}.bin": os.urandom(BIG + i) for i in range(4)}
    files.update({f"d{i}/small{j}.txt": b"s" * j for i in range(4) for j in range(30)})
    src = make_tree(tmp_path / "src", files)
    assert main(["backup", str(src), "--to", str(tmp_path / "set")]) == 0
    assert taken == [4]   # (every big file named by the child, copied ahead, taken by the pass)
    for rel, data in files.items():
        assert (tmp_path / "set" / "Latest" / "src" / rel).read_bytes() == data
    assert os.listdir(tmp_path / "set" / "tmp") == []
    assert main(["verify", str(tmp_path / "set"), "--read-all"]) == 0
    assert main(["backup", str(src), "--to", str(tmp_path / "set")]) == 0   # (not a first backup: none)
    assert taken[1:] == []


@linux
def test_a_first_backup_failing_after_copies_made_ahead_leaves_nothing_behind(tmp_path, monkeypatch, small_big):
    """A drive failing at a big file's placing (after the copies were made ahead): the run fails,
    the copies never taken are removed, and the next run backs everything up right."""
    from core.engine.store import PlainStore
    from core.errors import IOFailure

    monkeypatch.setattr(scan_ahead.threading, "active_count", lambda: 1)
    files = {f"d{i}/big{i}.bin": os.urandom(BIG + i) for i in range(4)}
    files.update({f"d{i}/small{j}.txt": b"s" * j for i in range(4) for j in range(30)})
    src = make_tree(tmp_path / "src", files)
    place = PlainStore.place

    def failing(self, copied, e, prev):
        if e.path.endswith("big1.bin"):
            raise IOFailure("the drive failed (simulated)")
        return place(self, copied, e, prev)

    monkeypatch.setattr(PlainStore, "place", failing)
    assert main(["backup", str(src), "--to", str(tmp_path / "set")]) != 0
    left = [n for n in os.listdir(tmp_path / "set" / "tmp") if n != fresh_latest.STAGE]   # (kept for the next run)
    assert len(left) <= 1   # (at most the copy the failing place held; the next run clears tmp/)
    monkeypatch.setattr(PlainStore, "place", place)
    assert main(["backup", str(src), "--to", str(tmp_path / "set")]) == 0
    for rel, data in files.items():
        assert (tmp_path / "set" / "Latest" / "src" / rel).read_bytes() == data
    assert os.listdir(tmp_path / "set" / "tmp") == []
    assert main(["verify", str(tmp_path / "set"), "--read-all"]) == 0
