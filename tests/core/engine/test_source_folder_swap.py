"""A folder *on the way* to a source file swapped for a symlink after the scan (issue #11).

``O_NOFOLLOW`` (core/engine/source_open.py) refuses a link in a path's last component only: a
folder between the source and the file, swapped for a symlink to a folder holding a file of the
same size and modification time (``touch -r``), led the old code's reads to that file, and its
bytes were stored under the scanned file's name. Every reader now checks that the descriptor it
read is the file the scan saw (inode and device: ``lean_child.check_same``, on the ``fstat`` it
made anyway): another file is not stored, the run warns, and the snapshot keeps the previous
version. The scan lists a folder only if it is the one its parent's listing found
(``scan.lstat_listing``), so a folder swapped *during* the scan is not listed through the link
either. Each test swaps the folder from one of the engine's calls, between the scan and the read
(or between two listings), and fails on the old code: the secret's bytes reached the set."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from core.agent.keys import Secret, make_unlocker
from core.engine import crypto, fullsplice, scan, sealpool, store
from core.engine.progress import WarningCode
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.trees import make_tree, read_tree

pytestmark = pytest.mark.skipif(sys.platform == "win32",   # (Windows: handles and junctions, test_winscan.py)
                                reason="POSIX folder descriptors and symlinks")
UNLOCK = make_unlocker(Secret.passphrase("pw"))
SECRET = b"root:$6$secret-hash-of-32-bytes\n"
OLD, NEW = b"old notes, thirty-two bytes long", b"new notes, thirty-two bytes long"
assert len(SECRET) == len(OLD) == len(NEW)


class Swap:
    """``src/Data/d`` (holding ``notes.txt``) and ``outside/`` (holding ``notes.txt``: the secret,
    made to look like the changed notes: the same size and modification time). ``now()`` moves
    ``d`` away and puts a symlink to ``outside`` in its place, once."""

    def __init__(self, tmp_path: Path, notes: bytes = OLD, secret: bytes = SECRET, depth: str = ""):
        self.src = make_tree(tmp_path / "src" / "Data", {"a.txt": b"a", f"d/{depth}notes.txt": notes, "z.txt": b"z"})
        self.folder = self.src / "d"
        self.victim = self.folder / depth / "notes.txt"
        self.outside = make_tree(tmp_path / "outside", {f"{depth}notes.txt": secret})
        self.secret = secret
        self.done = False

    def change(self, data: bytes) -> None:
        """The notes changed (same size), their time set to the secret's: the next run reads them."""
        self.victim.write_bytes(data)
        st = os.stat(self.outside / self.victim.relative_to(self.folder))
        os.utime(self.victim, ns=(st.st_atime_ns, st.st_mtime_ns))

    def now(self) -> None:
        if not self.done:
            self.done = True
            os.rename(self.folder, self.folder.with_name("d.moved"))
            os.symlink(self.outside, self.folder)

    def when_read(self, monkeypatch, module, *names: str) -> None:
        """Swap when one of ``module``'s functions ``names`` is first called for the victim."""
        for name in names:
            real = getattr(module, name)

            def swapping(path, *args, _real=real, **kwargs):
                if str(path) == str(self.victim):
                    self.now()
                return _real(path, *args, **kwargs)

            monkeypatch.setattr(module, name, swapping)

    def assert_kept(self, r, set_path: Path, unlock=None) -> None:
        """The run warned, the set holds no secret, the snapshot has the previous notes."""
        assert not _holding(set_path, self.secret), "the secret was stored"
        assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.KEPT_PREVIOUS, str(self.victim))]
        assert "is not the file that was scanned" in r.warnings[0].message
        out = set_path.parent / "out"
        restore_path(set_path, out, unlock=unlock)
        assert (out / "Data" / "d" / self.victim.relative_to(self.folder)).read_bytes() == OLD
        assert verify_path(set_path, unlock=unlock, read_all=True).ok


def _holding(root: Path, data: bytes) -> list[str]:
    """The files under ``root`` whose bytes contain ``data`` (a plain set's copies are plain)."""
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and data in p.read_bytes()]


@pytest.mark.parametrize("size", ["small", "big"])
def test_the_plain_pass_never_stores_a_file_reached_through_a_swapped_folder(tmp_path, monkeypatch, size):
    """The pass's read (``store.read_source``, from the descriptor opened ahead or its own open)."""
    big = 2 << 20
    sw = Swap(tmp_path, OLD * (big // 32) if size == "big" else OLD, SECRET * (big // 32) if size == "big" else SECRET)
    set_path = tmp_path / "set"
    assert backup_path(set_path, [sw.src]).status == "ok"
    sw.change((NEW * (big // 32)) if size == "big" else NEW)
    sw.when_read(monkeypatch, store, "prefetch_source", "read_source")
    r = backup_path(set_path, [sw.src])
    assert sw.done
    monkeypatch.undo()
    if size == "big":
        assert not _holding(set_path, SECRET * 4), "the secret was stored"
        assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.KEPT_PREVIOUS, str(sw.victim))]
        assert (set_path / "Latest" / "Data" / "d" / "notes.txt").read_bytes() == OLD * (big // 32)
        return
    sw.assert_kept(r, set_path)
    assert (set_path / "Latest" / "Data" / "d" / "notes.txt").read_bytes() == OLD
    # The next run (the folder put back) reads the notes again: the kept version is never "unchanged".
    os.unlink(sw.folder)
    os.rename(sw.folder.with_name("d.moved"), sw.folder)
    r = backup_path(set_path, [sw.src])
    assert r.status == "ok" and (set_path / "Latest" / "Data" / "d" / "notes.txt").read_bytes() == NEW


@pytest.mark.parametrize("size", ["small", "big"])
def test_an_encrypted_sets_reads_never_store_a_file_reached_through_a_swapped_folder(tmp_path, monkeypatch, size):
    """An encrypted set reads a small file whole (``store.read_whole``), a big one as the plain pass."""
    big = 2 << 20
    sw = Swap(tmp_path, OLD * (big // 32) if size == "big" else OLD, SECRET * (big // 32) if size == "big" else SECRET)
    set_path = tmp_path / "set"
    assert backup_path(set_path, [sw.src], passphrase="pw").status == "ok"
    sw.change((NEW * (big // 32)) if size == "big" else NEW)
    sw.when_read(monkeypatch, store, "prefetch_source", "read_source", "read_whole")
    r = backup_path(set_path, [sw.src], unlock=UNLOCK)
    assert sw.done
    monkeypatch.undo()
    out = tmp_path / "out"
    restore_path(set_path, out, unlock=UNLOCK)
    assert read_tree(out / "Data")["d/notes.txt"] == (OLD * (big // 32) if size == "big" else OLD)
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.KEPT_PREVIOUS, str(sw.victim))]
    assert verify_path(set_path, unlock=UNLOCK, read_all=True).ok


def test_the_seal_workers_never_seal_a_file_reached_through_a_swapped_folder(tmp_path, monkeypatch):
    """The workers get the scan's inode and device with the path: the one that opened the secret
    answers "not done", and the run's own read finds it replaced (the old worker sealed it)."""
    monkeypatch.setattr(sealpool, "START_AFTER", 0)
    monkeypatch.setenv(sealpool.PROCESSES_ENV, "1")
    sw = Swap(tmp_path)
    set_path = tmp_path / "set"
    assert backup_path(set_path, [sw.src], passphrase="pw").status == "ok"
    sw.change(NEW)
    real, tickets = sealpool.Sealing.ticket, []

    def ticket(self, se, finish):
        if se.abspath == str(sw.victim):
            sw.now()   # (after the scan; before the worker opens it)
        t = real(self, se, finish)
        tickets.append(t is not None)
        return t

    monkeypatch.setattr(sealpool.Sealing, "ticket", ticket)
    r = backup_path(set_path, [sw.src], unlock=UNLOCK)
    monkeypatch.undo()
    assert sw.done and any(tickets), "no file went to a worker"
    out = tmp_path / "out"
    restore_path(set_path, out, unlock=UNLOCK)
    assert read_tree(out / "Data")["d/notes.txt"] == OLD
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.KEPT_PREVIOUS, str(sw.victim))]
    assert verify_path(set_path, unlock=UNLOCK, read_all=True).ok


def test_a_seal_worker_answers_not_done_for_another_file_than_the_scans(tmp_path):
    """``Worker.batch`` (in-process): the job names the scan's inode and device."""
    sw = Swap(tmp_path)
    st = os.lstat(sw.victim)
    sw.now()
    keys = crypto.SetKeys.from_master(os.urandom(32), 2)
    (tmp_path / "tmp").mkdir()
    worker = sealpool.Worker(keys.master, keys.version, str(tmp_path / "tmp" / "w-"))
    assert worker.batch([(str(sw.victim), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)]) == [None]
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.parametrize("run", ["first backup (scan)", "second backup (fused scan)"])
def test_a_folder_swapped_during_the_scan_is_not_listed_through_the_link(tmp_path, monkeypatch, run):
    """``d/e`` recorded, then ``d`` swapped for a link before ``d/e/f`` (or ``d/e``) is listed:
    the old scan listed ``outside/e/f`` by its path and recorded its files, whose own inodes the
    readers then found; the secret was stored. Now the folder is not listed (a warning)."""
    sw = Swap(tmp_path, depth="e/f/")
    set_path = tmp_path / "set"
    if run.startswith("second"):
        (sw.folder / "e" / "f" / "notes.txt").unlink()   # (new in the second run: read then)
        assert backup_path(set_path, [sw.src]).status == "ok"
        (sw.folder / "e" / "f" / "notes.txt").write_bytes(NEW)
        sw.change(NEW)
    real = scan.entry_for

    def entry_for(top, rel, abspath, st, excluder, warnings):
        se = real(top, rel, abspath, st, excluder, warnings)
        if abspath == str(sw.folder / "e"):
            sw.now()
        return se

    monkeypatch.setattr(scan, "entry_for", entry_for)
    monkeypatch.setattr(fullsplice, "entry_for", entry_for)
    r = backup_path(set_path, [sw.src])
    monkeypatch.undo()
    assert sw.done
    assert not _holding(set_path, SECRET), "the secret was stored"
    assert [(w.code, w.message) for w in r.warnings] == [(WarningCode.UNREADABLE, scan.REPLACED_FOLDER)]
    assert verify_path(set_path, read_all=True).ok


def test_a_listing_of_another_folder_than_the_scanned_one_is_refused(tmp_path):
    """``scan.lstat_listing`` with the folder's expected (device, inode): a path that leads
    elsewhere now lists nothing, with a warning; the expected folder lists as before."""
    sw = Swap(tmp_path)
    st = os.lstat(sw.folder)
    warnings: list = []
    assert [n for n, _ in scan.lstat_listing(str(sw.folder), warnings, expect=(st.st_dev, st.st_ino))] == ["notes.txt"]
    sub = make_tree(sw.folder / "sub", {"x": b"x"})
    sst = os.lstat(sub)
    sw.now()
    (sw.outside / "sub").mkdir()
    (sw.outside / "sub" / "x").write_bytes(b"y")
    assert scan.lstat_listing(str(sw.folder / "sub"), warnings, expect=(sst.st_dev, sst.st_ino)) == []
    assert [w.message for w in warnings] == [scan.REPLACED_FOLDER]


def test_a_path_found_without_a_listing_is_never_reached_through_a_link(tmp_path):
    """``scan.lstat_beneath`` (a journal scan's named folders): a folder on the way swapped for a
    link raises ELOOP where ``os.lstat`` would have answered for the link's target."""
    sw = Swap(tmp_path, depth="e/")
    rel = "d/e/notes.txt"
    st = scan.lstat_beneath(str(sw.src), rel, str(sw.src / rel))
    assert st.st_ino == os.lstat(sw.victim).st_ino
    sw.now()
    with pytest.raises(OSError) as refused:
        scan.lstat_beneath(str(sw.src), rel, str(sw.src / rel))
    assert refused.value.errno in (errno.ELOOP, errno.ENOTDIR, getattr(errno, "EMLINK", -1))   # (Linux: ENOTDIR)


@pytest.mark.parametrize("when", ["small, its read", "big, its hash", "big, its upload"])
def test_a_remote_backup_never_uploads_a_file_reached_through_a_swapped_folder(tmp_path, monkeypatch, when):
    """A remote (cloud) set's reads: a small file's single read, a big file's read to hash it, and
    its second read as it is sealed and sent (``_reopen``). Nothing read through the link is sent."""
    from core.engine.progress import Clock
    from core.engine.remote import ahead as remote_ahead
    from core.engine.remote import backup as remote_backup
    from core.engine.remote.restore import restore
    from core.engine.remote.rset import RemoteSet, object_blob
    from core.engine.verify import VerifyOptions

    n = (2 << 20) // 32 if when.startswith("big") else 1
    sw = Swap(tmp_path, OLD * n, SECRET * n)
    rset = RemoteSet.create(_local_backend(tmp_path / "set"), Clock().now(), "pw")
    try:
        assert remote_backup.backup(rset, [sw.src]).status == "ok"
        sw.change(NEW * n)
        if when.endswith("upload"):
            sw.when_read(monkeypatch, remote_backup, "_reopen")
        else:
            sw.when_read(monkeypatch, remote_backup, "open_source")
            sw.when_read(monkeypatch, remote_ahead, "open_source")
        sent: list[str] = []
        put = rset.backend.put
        monkeypatch.setattr(rset.backend, "put", lambda blob, data: sent.append(blob) or put(blob, data))
        r = remote_backup.backup(rset, [sw.src])
        monkeypatch.undo()
        assert sw.done
        secret, new = (rset.keys.object_name(crypto.hashlib.sha256(data * n).hexdigest()) for data in (SECRET, NEW))
        assert object_blob(secret) not in sent and object_blob(new) not in sent, "the secret was uploaded"
        code = WarningCode.CHANGED_WHILE_READING if when.endswith("upload") else WarningCode.KEPT_PREVIOUS
        assert [(w.code, w.path) for w in r.warnings] == [(code, str(sw.victim))]
        restore(rset, tmp_path / "out")
        assert (tmp_path / "out" / "Data" / "d" / "notes.txt").read_bytes() == OLD * n
        assert remote_check_ok(rset, VerifyOptions(read_all=True))
    finally:
        rset.close()


def _local_backend(root: Path):
    from tests.core.engine.remote.conftest import Place

    return Place("local", str(root), root).backend()


def remote_check_ok(rset, options) -> bool:
    from core.engine.remote.check import verify

    return verify(rset, options).ok


def test_the_remote_reader_refuses_another_file_than_the_scans(tmp_path):
    """``remote.ahead.read_content`` (the run's reads and the key-less reads ahead) and ``reopen``
    (big content's second read), given the scan's inode and device, refuse the secret."""
    from core.engine.lean_child import Replaced
    from core.engine.remote.ahead import read_content, reopen

    sw = Swap(tmp_path)
    st = os.lstat(sw.victim)
    sw.now()
    seen: list[bytes] = []
    with pytest.raises(Replaced):
        read_content(str(sw.victim), len(OLD), seen.append, st.st_ino, st.st_dev)
    assert seen == []
    with pytest.raises(Replaced):
        reopen(str(sw.victim), st.st_ino, st.st_dev)


def test_a_journal_scan_never_reaches_a_named_folder_through_a_swapped_folder(tmp_path):
    """A journal scan (issue #12) looks up the folders its hint names by path, below folders it
    reuses unlisted: ``d`` swapped for a link (the hint names ``d/e`` only) led the old lookup
    to ``outside/e``, listed and recorded, the secret stored. Now ``d/e`` is looked up without
    following a link on its way (``scan.lstat_beneath``): not reached, a warning."""
    from core.engine.changes import ChangeHint

    sw = Swap(tmp_path, depth="e/")
    set_path = tmp_path / "set"
    first = backup_path(set_path, [sw.src], workers=1)
    sw.change(NEW)
    sw.now()
    r = backup_path(set_path, [sw.src], workers=1,
                    changes=ChangeHint(first.snapshot_id, frozenset({str(sw.folder / "e")})))
    assert r.scan == "journal"
    assert not _holding(set_path, SECRET), "the secret was stored"
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.UNREADABLE, str(sw.folder / "e"))]
