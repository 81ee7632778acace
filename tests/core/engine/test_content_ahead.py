"""A first backup's small files read ahead by the scan-ahead child (core/engine/scan_ahead.py,
``_content``): each small regular file's reading is started (``posix_fadvise`` WILLNEED on a
descriptor opened without following a symlink or waiting), never a symlink's target, a FIFO, an
empty or a big file (copied ahead instead), on a first backup every such file and after one only
those changed since the set's last commit, up to a byte cap."""

from __future__ import annotations

import os
import sys
import time

import pytest

from core.engine import copy_ahead, scan_ahead
from core.engine.scan import Excluder
from tests.support.trees import Symlink, make_tree

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or sys.platform == "win32", reason="POSIX FIFOs")
BIG = 64 << 10


@pytest.fixture
def asked(monkeypatch):
    """The paths whose reading the walk started (the descriptor's target, as the kernel names it)."""
    monkeypatch.setattr(copy_ahead, "BIG_BYTES", BIG)
    monkeypatch.setattr(scan_ahead, "BIG_BYTES", BIG)
    seen: list[str] = []

    def spy(fd: int) -> None:
        assert not os.get_blocking(fd)   # (opened O_NONBLOCK: a FIFO swapped in is not waited on)
        seen.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else str(fd))

    monkeypatch.setattr(scan_ahead, "read_ahead", spy)
    return seen


def _tree(tmp_path):
    src = make_tree(tmp_path / "src", {"a/one.txt": b"1" * 100, "a/two.txt": b"2" * 200, "a/empty": b"",
                                       "b/big.bin": os.urandom(BIG),
                                       "b/link.txt": Symlink(str(tmp_path / "src" / "a" / "one.txt")),
                                       "c/three.txt": b"3" * 300})
    os.mkfifo(src / "b" / "fifo")
    return src


def _walk(src, hints: bool) -> list[bytes]:
    r, w = os.pipe()
    start = time.monotonic()
    scan_ahead.walk([str(src)], Excluder(), hints=w if hints else -1, content=hints)
    assert time.monotonic() - start < 5   # (no FIFO waited on)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        return f.read().split(b"\0")


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="names a descriptor by /proc")
def test_a_first_backups_walk_starts_reading_each_small_regular_file(tmp_path, asked):
    """Fails on the code before: the walk read no file's content."""
    src = _tree(tmp_path)
    named = _walk(src, hints=True)
    assert named == [os.fsencode(str(src / "b" / "big.bin")), b""]   # (the big one: copied ahead instead)
    # Folder by folder in the scan's order (within one, the listing's); not the empty file, the
    # symlink (nor its target again), the FIFO.
    assert sorted(asked[:2]) == [str(src / "a" / "one.txt"), str(src / "a" / "two.txt")]
    assert asked[2:] == [str(src / "c" / "three.txt")]


def test_no_content_is_read_ahead_without_a_first_backup(tmp_path, asked):
    _walk(_tree(tmp_path), hints=False)
    assert asked == []
    r, w = os.pipe()
    scan_ahead.walk([str(_tree(tmp_path / "2"))], Excluder(), hints=w)   # (the first walk: names only)
    os.close(w)
    os.close(r)
    assert asked == []


def test_the_content_read_ahead_stops_at_its_cap(tmp_path, asked, monkeypatch):
    monkeypatch.setattr(scan_ahead, "CONTENT_AHEAD_BYTES", 250)
    _walk(_tree(tmp_path), hints=True)
    assert len(asked) == 2   # (100 + 200 bytes reach the cap: the third is left to the pass)


def test_a_file_swapped_for_a_fifo_or_a_symlink_is_not_waited_on_nor_followed(tmp_path, monkeypatch):
    target = tmp_path / "secret"
    target.write_bytes(b"s")
    fifo, link = tmp_path / "fifo", tmp_path / "link"
    os.mkfifo(fifo)
    os.symlink(target, link)
    calls: list[int] = []
    monkeypatch.setattr(scan_ahead, "read_ahead", calls.append)
    start = time.monotonic()
    scan_ahead._content(str(fifo))   # (O_NONBLOCK: opened without a writer, never waited on)
    scan_ahead._content(str(link))   # (O_NOFOLLOW: refused)
    assert time.monotonic() - start < 5
    assert len(calls) == 1   # the FIFO's descriptor only; the symlink was not opened


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="names a descriptor by /proc")
def test_after_a_backup_the_walk_starts_reading_only_the_small_files_changed_since(tmp_path, asked):
    """A day of changes: the files changed since the set's last commit are read ahead (the pass
    copies them), not the unchanged ones, a changed big one, a new symlink or FIFO. Fails on the
    code before: it read no content unless a first backup."""
    from core.engine.set_ahead import SetAhead
    from tests.support.engine import backup_path

    src = _tree(tmp_path)
    os.unlink(src / "b" / "fifo")
    assert backup_path(tmp_path / "set", [src]).status == "ok"
    latest = SetAhead.of_set(str(tmp_path / "set"))
    assert latest is not None
    time.sleep(0.01)
    (src / "a" / "two.txt").write_bytes(b"changed")
    (src / "c" / "new.txt").write_bytes(b"new")
    (src / "b" / "big.bin").write_bytes(os.urandom(BIG))
    os.symlink(src / "a" / "one.txt", src / "c" / "new link")
    os.mkfifo(src / "c" / "new fifo")
    start = time.monotonic()
    scan_ahead.walk([str(src)], Excluder(), latest=latest)
    latest.finish()
    assert time.monotonic() - start < 5
    assert asked == [str(src / "a" / "two.txt"), str(src / "c" / "new.txt")]
