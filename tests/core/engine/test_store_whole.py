"""Encrypted sets' small files (issue #11, branch `enc`): read whole (``store.read_whole``), sealed in one
call, and not written at all when a trusted object holds their content."""

from __future__ import annotations

import os

from core.agent.keys import Secret, make_unlocker
from core.engine import store
from core.engine.progress import WarningCode
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.trees import make_tree, read_tree

UNLOCK = make_unlocker(Secret.passphrase("pw"))


def test_read_whole_reads_what_the_scan_saw_and_says_whether_it_changed(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"0123456789")
    mtime = os.stat(f).st_mtime_ns
    assert store.read_whole(str(f), 10, mtime) == (b"0123456789", False)
    assert store.read_whole(str(f), 4, mtime) == (b"0123", True)          # grew since the scan
    # Shorter than the scan saw, same time: what was read is the whole file (as read_source says).
    assert store.read_whole(str(f), 20, mtime) == (b"0123456789", False)
    assert store.read_whole(str(f), 10, mtime + 1) == (b"0123456789", True)   # rewritten since
    f.write_bytes(b"")
    assert store.read_whole(str(f), 0, None) == (b"", False)


def _objects(set_path) -> list[str]:
    return sorted(n for d in (set_path / "objects").iterdir() if d.is_dir() for n in os.listdir(d))


def test_duplicate_small_files_are_stored_once_and_written_once(tmp_path, monkeypatch):
    same = b"the same few bytes in three files\n" * 10
    src = make_tree(tmp_path / "Data", {"a.txt": same, "b/a copy.txt": same, "c.txt": same, "other.txt": b"x"})
    sealed = []
    real = store.EncryptedStore.copy_in

    def copy_in(self, se, **kw):
        copied = real(self, se, **kw)
        sealed.append((se.path, len(copied.tmp_paths)))
        return copied

    monkeypatch.setattr(store.EncryptedStore, "copy_in", copy_in)
    set_path = tmp_path / "set"
    r = backup_path(set_path, [src], passphrase="pw")
    assert r.warnings == []
    # The first copy is written; the others are known by name before anything is written.
    assert sorted(n for _, n in sealed) == [0, 0, 1, 1]
    assert len(_objects(set_path)) == 2
    assert os.listdir(set_path / "tmp") == []
    assert verify_path(set_path, unlock=UNLOCK, read_all=True).ok
    restore_path(set_path, tmp_path / "out", unlock=UNLOCK)
    assert read_tree(tmp_path / "out" / "Data") == read_tree(src)


def test_a_file_changed_while_read_whole_is_kept_as_read_and_copied_again_next_time(tmp_path, monkeypatch):
    src = make_tree(tmp_path / "Data", {"a.txt": b"version one", "b.txt": b"steady"})
    real = store.read_whole

    def read_whole(path, size_hint, mtime_ns=None, fd=-1, *scanned):
        if path.endswith("a.txt"):
            os.utime(path, ns=(1, 1))   # touched between the scan and the read (opened ahead or not)
        return real(path, size_hint, mtime_ns, fd, *scanned)

    monkeypatch.setattr(store, "read_whole", read_whole)
    set_path = tmp_path / "set"
    r = backup_path(set_path, [src], passphrase="pw")
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.CHANGED_WHILE_READING, str(src / "a.txt"))]
    monkeypatch.undo()
    read = []
    monkeypatch.setattr(store, "read_whole", lambda path, *a: read.append(path) or real(path, *a))
    r = backup_path(set_path, [src], unlock=UNLOCK)
    assert r.warnings == [] and read == [str(src / "a.txt")]   # never "unchanged": read again
    restore_path(set_path, tmp_path / "out", unlock=UNLOCK)
    assert read_tree(tmp_path / "out" / "Data") == {"a.txt": b"version one", "b.txt": b"steady"}
