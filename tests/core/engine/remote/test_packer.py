"""The packer stores full packs in threads of its own (core/engine/remote/packs.py): the caller goes
on collecting while a pack is put and read back, at most PACKS_IN_FLIGHT packs wait in memory, and
a pack that could not be stored fails the caller (at its next pack or at ``wait``), so no manifest
can name its objects. A folder backend; the only fakes are a put that waits and a put that fails."""

from __future__ import annotations

import os
import threading

import pytest

from core.engine import crypto
from core.engine.progress import Clock
from core.engine.remote import packs
from core.engine.remote.backup import backup
from core.engine.remote.rset import RemoteSet
from core.engine.storage import LocalBackend
from core.errors import RemoteUnavailable
from tests.support.trees import make_tree

STREAM = 1000      # bytes of each object's stream; PACK_SIZE is set to three of them


class _Held(LocalBackend):
    """Pack puts wait for ``go`` (counted in ``waiting``); the ``fail``-th pack put fails."""

    def __init__(self, root, fail: int = 0):
        super().__init__(root)
        self.go = threading.Event()
        self.waiting = threading.Semaphore(0)
        self.packs = 0
        self.fail = fail
        self._mutex = threading.Lock()

    def put(self, name, data):
        if name.startswith(packs.PACKS_DIR + "/"):
            with self._mutex:
                self.packs += 1
                n = self.packs
            self.waiting.release()
            assert self.go.wait(10)
            if n == self.fail:
                raise RemoteUnavailable(where=self.where, reason="the test cut it")
        super().put(name, data)


def _stream(keys, i: int) -> tuple[str, bytes]:
    hasher = keys.object_hasher()
    hasher.update(b"%d" % i)
    return hasher.hexdigest(), os.urandom(STREAM)


@pytest.fixture
def small_packs(monkeypatch):
    monkeypatch.setattr(packs, "PACK_SIZE", 3 * STREAM)


def test_full_packs_are_stored_beside_the_caller_and_at_most_two_wait(tmp_path, small_packs):
    backend = _Held(tmp_path / "set")
    rset = RemoteSet.create(backend, Clock().now(), "pw")
    added = threading.Event()

    def fill() -> None:
        for i in range(3 * (packs.PACKS_IN_FLIGHT + 1)):    # one full pack more than may be in flight
            packer.add(*_stream(rset.keys, i))
        added.set()

    with Packer(rset) as packer:
        filler = threading.Thread(target=fill)
        filler.start()
        for _ in range(packs.PACKS_IN_FLIGHT):
            assert backend.waiting.acquire(timeout=10)      # the first packs are being put...
        assert not added.wait(0.3)                          # ...and the next full one waits for room
        backend.go.set()
        filler.join(10)
        assert added.is_set()
        packer.flush()
        packer.wait()
        assert packer.packs_stored == packs.PACKS_IN_FLIGHT + 1
    names = [n for n, _ in rset.packs.objects()]
    assert len(names) == 3 * (packs.PACKS_IN_FLIGHT + 1)


def test_a_pack_that_fails_is_raised_by_wait_and_by_sending_the_next(tmp_path, small_packs):
    backend = _Held(tmp_path / "set", fail=1)
    backend.go.set()
    rset = RemoteSet.create(backend, Clock().now(), "pw")
    with Packer(rset) as packer:
        for i in range(3):
            packer.add(*_stream(rset.keys, i))      # a full pack: its put fails
        with pytest.raises(RemoteUnavailable):
            packer.wait()
    backend.packs = 0
    with Packer(rset) as packer:
        for i in range(3):
            packer.add(*_stream(rset.keys, i))
        _settle(packer)
        with pytest.raises(RemoteUnavailable):
            for i in range(3, 6):
                packer.add(*_stream(rset.keys, i))  # sending the next pack raises the first one's failure


def _settle(packer) -> None:
    """Let the packs sent so far finish, without collecting their results."""
    with packer._mutex:
        sent = list(packer._sent)
    for job in sent:
        job.exception(timeout=10)


def _open_files() -> set[str]:
    return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")} if os.path.isdir("/proc/self/fd") else set()


def test_a_backup_whose_pack_fails_commits_nothing_and_leaves_no_file_open(tmp_path, small_packs):
    src = make_tree(tmp_path / "src" / "Docs", {f"f{i:03d}.txt": os.urandom(STREAM) for i in range(120)})
    backend = _Held(tmp_path / "set", fail=2)
    backend.go.set()
    rset = RemoteSet.create(backend, Clock().now(), "pw")
    with pytest.raises(RemoteUnavailable):
        backup(rset, [src])      # (small files opened ahead of their read when it failed: closed)
    assert not {f for f in _open_files() if f.startswith(str(src))}
    assert not list(LocalBackend(tmp_path / "set").list("snapshots"))
    again = RemoteSet.open(LocalBackend(tmp_path / "set"),
                           lambda enc, sid: crypto.unlock_with_passphrase(enc, "pw"))
    result = backup(again, [src])                           # the next run completes, and does not
    assert result.files_scanned == 120 and 3 <= result.files_copied <= 117   # send a pack stored before again


Packer = packs.Packer


def test_a_pack_no_index_names_is_deleted_by_the_next_backup(tmp_path):
    """Packs are written in place (not staged): a cut put may leave a torn one, which no index
    names. The next backup, under the lock, deletes it; indexed packs stay."""
    src = make_tree(tmp_path / "src" / "Docs", {f"f{i}.txt": os.urandom(STREAM) for i in range(5)})
    rset = RemoteSet.create(LocalBackend(tmp_path / "set"), Clock().now(), "pw")
    backup(rset, [src])
    kept = [i.name for i in rset.backend.list(packs.PACKS_DIR)]
    torn = packs.pack_blob("ab" * 32)
    rset.backend.put(torn, b"the first bytes of a pack whose put was cut")
    again = RemoteSet.open(LocalBackend(tmp_path / "set"), lambda enc, sid: crypto.unlock_with_passphrase(enc, "pw"))
    backup(again, [src])
    assert [i.name for i in again.backend.list(packs.PACKS_DIR)] == kept and len(kept) == 1
