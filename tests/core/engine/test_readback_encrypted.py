"""The read-back of an encrypted backup (issue #11, encback): objects opened ahead in one thread,
a small one read whole and then decrypted, authenticated and hashed; big ones in worker threads.
Whatever is wrong with an object after the commit is found and copied again from the source."""

from __future__ import annotations

import os

import pytest

from core.agent.keys import Secret, make_unlocker
from core.engine import backup as backup_mod
from core.engine import readback
from core.engine.fs import READS_AHEAD
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.trees import make_tree, read_tree

UNLOCK = make_unlocker(Secret.passphrase("pw"))
TEXT = b"a line of text that zstd shrinks\n" * 2000   # the object read back is compressed


def _swap(obj, how: str, twin) -> None:
    """Replace the object file ``obj`` the way a failing or hostile drive might."""
    good = obj.read_bytes()
    obj.unlink()
    if how == "symlink":   # to a file with the object's own bytes: still never followed
        twin.write_bytes(good)
        os.symlink(twin, obj)
    elif how == "fifo":
        os.mkfifo(obj)
    elif how == "flipped":
        mid = len(good) // 2
        obj.write_bytes(good[:mid] + bytes([good[mid] ^ 1]) + good[mid + 1:])
    elif how == "header":
        obj.write_bytes(b"X" + good[1:])
    elif how == "cut":
        obj.write_bytes(good[:-1])
    elif how == "longer":
        obj.write_bytes(good + b"\0")
    elif how == "huge":   # more than a small file's object can hold: read no further
        obj.write_bytes(good + bytes(readback.SMALL_OBJECT))


@pytest.mark.skipif(not READS_AHEAD, reason="the one-thread read-back with reads started ahead is Linux's")
@pytest.mark.parametrize("how", ["symlink", "fifo", "missing", "flipped", "header", "cut", "longer", "huge"])
@pytest.mark.parametrize("big", [False, True], ids=["small", "big"])
def test_encrypted_read_back_finds_an_object_swapped_after_the_commit(tmp_path, monkeypatch, how, big):
    """``big``: every file counts as big, so it is read back in a worker thread (check_entry)."""
    if big:
        monkeypatch.setattr(readback, "BIG", 0)
    spec = {f"f{i:03}.txt": b"content %d" % i for i in range(150)}   # more than readback.AHEAD
    spec["f100.txt"] = TEXT
    src = make_tree(tmp_path / "src" / "Data", spec)
    commit, swapped = backup_mod._Run._commit, []

    def commit_then_swap(run, header):
        commit(run, header)
        hasher = run.bset.keys.object_hasher()
        hasher.update(TEXT)
        obj = run.bset.layout.object(hasher.hexdigest())
        _swap(obj, how, tmp_path / "twin")
        swapped.append(obj)

    monkeypatch.setattr(backup_mod._Run, "_commit", commit_then_swap)
    r = backup_path(tmp_path / "set", [src], passphrase="pw")
    monkeypatch.undo()
    assert swapped and r.status == "ok" and not r.damaged, r.damaged
    obj = swapped[0]
    assert not obj.is_symlink() and obj.is_file()   # the repair wrote a new object
    assert verify_path(tmp_path / "set", read_all=True, unlock=UNLOCK).ok
    restore_path(tmp_path / "set", tmp_path / "out", unlock=UNLOCK)
    assert read_tree(tmp_path / "out" / "Data") == read_tree(src)


@pytest.mark.skipif(not READS_AHEAD, reason="the one-thread read-back with reads started ahead is Linux's")
def test_an_object_that_cannot_be_copied_again_is_reported_damaged(tmp_path, monkeypatch):
    """Nothing unchecked is called verified: an object flipped after the commit whose source
    changed meanwhile (so no second copy is made) is in ``damaged``, named by its file."""
    spec = {f"f{i:03}.txt": b"content %d" % i for i in range(100)}
    src = make_tree(tmp_path / "src" / "Data", spec)
    commit = backup_mod._Run._commit

    def commit_then_flip(run, header):
        commit(run, header)
        hasher = run.bset.keys.object_hasher()
        hasher.update(spec["f050.txt"])
        _swap(run.bset.layout.object(hasher.hexdigest()), "flipped", None)
        (src / "f050.txt").write_bytes(b"changed since")

    monkeypatch.setattr(backup_mod._Run, "_commit", commit_then_flip)
    r = backup_path(tmp_path / "set", [src], passphrase="pw")
    assert [path for path, _ in r.damaged] == ["Data/f050.txt"], r.damaged


def test_without_reads_ahead_objects_are_read_back_in_threads(tmp_path, monkeypatch):
    """Windows and macOS (no posix_fadvise) keep the worker threads: damage is found there too."""
    monkeypatch.setattr(readback, "READS_AHEAD", False)
    spec = {f"f{i:03}.txt": b"content %d" % i for i in range(100)}
    src = make_tree(tmp_path / "src" / "Data", spec)
    commit, swapped = backup_mod._Run._commit, []

    def commit_then_flip(run, header):
        commit(run, header)
        hasher = run.bset.keys.object_hasher()
        hasher.update(spec["f050.txt"])
        obj = run.bset.layout.object(hasher.hexdigest())
        _swap(obj, "flipped", None)
        swapped.append(obj.read_bytes())

    monkeypatch.setattr(backup_mod._Run, "_commit", commit_then_flip)
    r = backup_path(tmp_path / "set", [src], passphrase="pw")
    monkeypatch.undo()
    assert swapped and r.status == "ok" and not r.damaged, r.damaged
    assert verify_path(tmp_path / "set", read_all=True, unlock=UNLOCK).ok
