"""The first backup into a new remote set stages its big objects in tmp/ while the set file and the
lock are on their way, and names them only after both (core/engine/remote/backup.py ``_Gated``):
real rclone against a WebDAV server the test starts and kills."""

from __future__ import annotations

import os
import threading
import time

import pytest

from core.engine import crypto
from core.engine.crypto_stream import encrypted_size
from core.engine.progress import Clock
from core.engine.remote import backup as remote_backup
from core.engine.remote import packs
from core.engine.remote.backup import backup
from core.engine.remote.check import verify
from core.engine.remote.restore import restore
from core.engine.remote.rset import RemoteSet
from core.engine.verify import VerifyOptions
from core.errors import PlugbackError, RemoteUnavailable, SetLocked
from tests.core.engine.remote.test_remote_set import unlock
from tests.support.trees import File, make_tree, read_tree

T0 = 1_700_000_000_000_000_000
BIG = 3 << 20       # objects/ (not packed)


class _Held:
    """A backend whose put of plugback.json waits for ``go`` (everything else, staging too, goes to
    ``inner`` as it is)."""

    def __init__(self, inner):
        self._inner = inner
        self.where = inner.where
        self.go = threading.Event()

    def put(self, name, data):
        if name == "plugback.json":
            assert self.go.wait(60)
        self._inner.put(name, data)

    # (Stages is said by the class: a wrapper passing calls on with __getattr__ alone does not stage.)
    can_stage = True

    def stage(self, name, data):
        return self._inner.stage(name, data)

    def commit(self, staged):
        self._inner.commit(staged)

    def discard(self, staged):
        self._inner.discard(staged)

    def make_folders(self, folders):
        self._inner.make_folders(folders)

    def __getattr__(self, attr):
        return getattr(self._inner, attr)


def _source(tmp_path):
    files = {f"big{i}.bin": File(os.urandom(BIG + i), 0o644, T0) for i in range(3)}
    files.update({f"small{i}.txt": File(os.urandom(3000 + i), 0o644, T0) for i in range(20)})
    return make_tree(tmp_path / "src" / "Docs", files)


def _files(root, folder: str) -> dict[str, int]:
    base = root / folder
    return {str(f.relative_to(root)): f.stat().st_size for f in base.rglob("*") if f.is_file()} if base.exists() else {}


def _wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_big_objects_are_uploaded_before_the_set_file_and_named_only_after_the_lock(webdav, tmp_path):
    src = _source(tmp_path)
    held = _Held(webdav.backend())
    rset = RemoteSet.create_started(held, Clock().now(), "correct horse")
    with rset:
        run = threading.Thread(target=lambda: setattr(run, "result", backup(rset, [src])))
        run.start()
        # While plugback.json is held back, BIG_BEFORE_GATE objects reach tmp/ whole (no more: scrypt's
        # 128 MiB are held then, and each upload in flight adds to it), and nothing has a name.
        whole = [encrypted_size(BIG + i) for i in range(3)]
        early = remote_backup.BIG_BEFORE_GATE
        assert early < 3
        _wait_for(lambda: sum(size in whole for size in _files(webdav.root, "tmp").values()) >= early)
        time.sleep(0.5)
        assert sum(size in whole for size in _files(webdav.root, "tmp").values()) == early
        for folder in ("objects", "packs", "index", "snapshots", "locks"):
            assert _files(webdav.root, folder) == {}
        assert not (webdav.root / "plugback.json").exists()
        held.go.set()
        run.join(120)
        assert not run.is_alive()
    assert len(_files(webdav.root, "objects")) == 3 and _files(webdav.root, "tmp") == {}
    with RemoteSet.open(webdav.backend(), unlock()) as opened:
        assert [s.id for s in opened.snapshots()] == [run.result.snapshot_id]   # type: ignore[attr-defined]
        assert verify(opened, VerifyOptions(read_all=True)).ok
        restore(opened, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)


def test_a_set_locked_meanwhile_names_nothing_and_its_staged_uploads_are_removed(webdav, tmp_path, monkeypatch):
    src = _source(tmp_path)
    held = _Held(webdav.backend())
    monkeypatch.setattr("core.engine.remote.backup.RemoteLock.acquire",
                        lambda self: (_ for _ in ()).throw(SetLocked(holder="another computer")))
    rset = RemoteSet.create_started(held, Clock().now(), "correct horse")
    threading.Thread(target=lambda: (_wait_for(lambda: len(_files(webdav.root, "tmp")) >= 2), held.go.set()),
                     daemon=True).start()
    with pytest.raises(SetLocked), rset:
        backup(rset, [src])
    names = [n for n in _files(webdav.root, "") if not n.startswith("tmp/")]
    assert names == ["plugback.json"] and _files(webdav.root, "tmp") == {}


def test_the_server_killed_while_objects_are_staged_fails_the_run_and_the_next_one_completes(world, webdav, tmp_path):
    src = _source(tmp_path)
    held = _Held(webdav.backend())
    rset = RemoteSet.create_started(held, Clock().now(), "correct horse")
    threading.Thread(target=lambda: (_wait_for(lambda: _files(webdav.root, "tmp") != {}), world.webdav.kill(),
                                     held.go.set()), daemon=True).start()
    with pytest.raises(PlugbackError), rset:
        backup(rset, [src])
    world.webdav.restart()
    assert _files(webdav.root, "objects") == {} and not (webdav.root / "plugback.json").exists()
    with RemoteSet.create_started(webdav.backend(), Clock().now(), "correct horse") as again:
        result = backup(again, [src])
    assert _files(webdav.root, "tmp") == {} or all(n.endswith(".part") for n in _files(webdav.root, "tmp"))
    with RemoteSet.open(webdav.backend(), unlock()) as opened:
        assert [s.id for s in opened.snapshots()] == [result.snapshot_id]
        assert verify(opened, VerifyOptions(read_all=True)).ok
        restore(opened, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)


class _PackFails(_Held):
    """Puts of packs fail (the rest, staging too, goes to ``inner``)."""

    def put(self, name, data):
        if name.startswith("packs/"):
            raise RemoteUnavailable(where=self.where, reason="the test cut it")
        self._inner.put(name, data)


def test_an_index_is_staged_beside_its_pack_named_after_its_check_and_dropped_when_the_pack_fails(webdav):
    backend = webdav.backend()
    with RemoteSet.create(_PackFails(backend), Clock().now(), "pw") as rset:
        with packs.Packer(rset) as packer:
            for i in range(3):
                packer.add(*_stream(rset.keys, i))
            packer.flush()
            with pytest.raises(RemoteUnavailable):
                packer.wait()
        assert _files(webdav.root, "index") == {} and _files(webdav.root, "tmp") == {}   # its index: gone
        rset.backend = backend
        with packs.Packer(rset) as packer:
            for i in range(3):
                packer.add(*_stream(rset.keys, i))
            packer.flush()
            packer.wait()
        assert len(_files(webdav.root, "index")) == 1 and _files(webdav.root, "tmp") == {}
        assert len([n for n, _ in rset.packs.objects()]) == 3


def _stream(keys, i: int) -> tuple[str, bytes]:
    hasher = keys.object_hasher()
    hasher.update(b"%d" % i)
    return hasher.hexdigest(), crypto.encrypt_bytes(keys, os.urandom(1000))
