"""Small sources read ahead and kept open for their copy (issue #11, branch `full4`): the read-ahead
hint's descriptor is the one the copy reads (one open per small file, not two), none stays open
after a run or a failed one, and a file changed after it was opened ahead is still caught."""

from __future__ import annotations

import os
import sys

import pytest

from core.engine import store
from core.engine.progress import WarningCode
from core.engine.sourceread import OpenedAhead
from core.errors import PlugbackError
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.trees import make_tree, read_tree

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the read-ahead hint is Linux's (posix_fadvise)")


def _open_fds(under=None) -> set[str]:
    """This process's open descriptors (those open on a file below ``under``, when given)."""
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue   # (the listing's own)
        if under is None or target.startswith(str(under) + os.sep):
            fds.add(fd)
    return fds


def _counting_opens(monkeypatch, under: str) -> dict[str, int]:
    """How often each path below ``under`` is opened in this process from now on."""
    counts: dict[str, int] = {}
    real = os.open

    def counted(path, *args, **kwargs):
        if str(path).startswith(under):
            counts[str(path)] = counts.get(str(path), 0) + 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", counted)
    return counts


@linux_only
def test_a_small_file_is_opened_once_for_its_hint_and_copy(tmp_path, monkeypatch):
    """Main's pass opened every small source twice: for the hint, then for the copy."""
    files = {f"d{i % 4}/f{i}.txt": os.urandom(100 + i) for i in range(40)}
    src = make_tree(tmp_path / "Data", files)
    counts = _counting_opens(monkeypatch, str(src) + os.sep)
    r = backup_path(tmp_path / "set", [src])
    monkeypatch.undo()
    assert r.files_copied == 40
    assert counts == {str(src / name): 1 for name in files}
    assert verify_path(tmp_path / "set").ok
    restore_path(tmp_path / "set", tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Data") == files


@linux_only
def test_no_descriptor_stays_open_after_a_run_or_a_failed_one(tmp_path, monkeypatch):
    src = make_tree(tmp_path / "Data", {f"f{i:03}.txt": b"x" * (i + 1) for i in range(200)})
    backup_path(tmp_path / "set", [src])
    assert _open_fds(src) == set()
    for i in range(200):
        (src / f"f{i:03}.txt").write_bytes(b"y" * (i + 2))   # every file changed: copied again
    placed = [0]
    real = store.PlainStore.place

    def failing_place(self, *args, **kwargs):
        placed[0] += 1
        if placed[0] == 50:   # (the pass has up to 64 files opened ahead by now)
            raise PlugbackError("the drive failed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(store.PlainStore, "place", failing_place)
    with pytest.raises(PlugbackError):
        backup_path(tmp_path / "set", [src])
    assert placed[0] == 50 and _open_fds(src) == set()   # (others may stay: a scratch file, as on main)


@linux_only
def test_a_file_changed_after_it_was_opened_ahead_is_caught(tmp_path, monkeypatch):
    """Written to between the hint's open and the copy: the copy's fstat of the same descriptor sees
    the new size and time, warns, and the next run copies it again."""
    src = make_tree(tmp_path / "Data", {"a.txt": b"version one", "b.txt": b"steady"})
    real = store.read_source

    def read_source(path, *args, **kwargs):
        if path.endswith("a.txt"):
            with open(path, "ab") as f:   # (the same file the kept descriptor reads)
                f.write(b", and more")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(store, "read_source", read_source)
    r = backup_path(tmp_path / "set", [src])
    monkeypatch.undo()
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.CHANGED_WHILE_READING, str(src / "a.txt"))]
    read: list[str] = []
    monkeypatch.setattr(store, "read_source", lambda path, *a: read.append(path) or real(path, *a))
    r = backup_path(tmp_path / "set", [src])
    assert r.warnings == [] and read == [str(src / "a.txt")]   # never "unchanged": read again
    restore_path(tmp_path / "set", tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Data") == {"a.txt": b"version one, and more", "b.txt": b"steady"}


def test_opened_ahead_hands_each_descriptor_out_once_and_closes_the_rest(tmp_path):
    paths = [str(make_tree(tmp_path / "d", {f"f{i}": b"abc"}) / f"f{i}") for i in range(3)]
    before = _open_fds()
    opened = OpenedAhead(lambda path, keep: os.open(path, os.O_RDONLY))
    for p in paths:
        opened.add(p)
    opened.add(paths[0])                       # the same path twice: one descriptor kept
    assert len(_open_fds() - before) == 3
    fd = opened.take(paths[0])
    assert fd is not None and os.read(fd, 3) == b"abc"
    os.close(fd)
    assert opened.take(paths[0]) is None       # handed out once
    opened.forget(paths[1])
    assert len(_open_fds() - before) == 1
    opened.close()
    assert _open_fds() == before and opened.take(paths[2]) is None
