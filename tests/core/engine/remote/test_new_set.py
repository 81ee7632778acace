"""The first backup into a set still being created (RemoteSet.create_started): the scan starts at
once, but nothing is written before plugback.json and the lock (a local folder: the rclone
backends are the other tests')."""

from __future__ import annotations

import threading

import pytest

from core.engine.progress import Clock
from core.engine.remote.backup import backup
from core.engine.remote.restore import restore
from core.engine.remote.rset import RemoteSet
from core.engine.storage import LocalBackend
from core.errors import RemoteUnavailable, SetLocked
from tests.core.engine.remote.test_remote_set import stored, tree, unlock
from tests.support.trees import make_tree, read_tree


class _Watched(LocalBackend):
    """Records the order of puts; ``fail`` names a blob whose put fails; ``hold`` stops the put of
    plugback.json until set (so the run is seen working before the set exists)."""

    def __init__(self, root, fail: str | None = None):
        super().__init__(root)
        self.puts: list[str] = []
        self.fail = fail
        self.hold = threading.Event()
        self.hold.set()

    def put(self, name, data):
        if name == "plugback.json":
            assert self.hold.wait(10)
        if name == self.fail:
            raise RemoteUnavailable(where=self.where, reason="the test cut it")
        super().put(name, data)
        self.puts.append(name)


def test_a_new_set_is_written_set_file_then_lock_then_content_and_reads_back(tmp_path):
    src = make_tree(tmp_path / "src" / "Documents", tree())
    backend = _Watched(tmp_path / "set")
    backend.hold.clear()
    rset = RemoteSet.create_started(backend, Clock().now(), "correct horse")
    assert not (tmp_path / "set" / "plugback.json").exists()
    threading.Timer(0.3, backend.hold.set).start()
    with rset:
        result = backup(rset, [src])
    assert backend.puts[0] == "plugback.json" and backend.puts[1].startswith("locks/")
    assert backend.puts[-1].startswith("snapshots/")
    with RemoteSet.open(LocalBackend(tmp_path / "set"), unlock()) as opened:
        assert [s.id for s in opened.snapshots()] == [result.snapshot_id]
        assert not restore(opened, tmp_path / "out").damaged
    assert read_tree(tmp_path / "out" / "Documents") == read_tree(src)


def test_a_set_file_that_cannot_be_written_fails_the_run_before_any_content(tmp_path):
    src = make_tree(tmp_path / "src" / "Documents", tree())
    backend = _Watched(tmp_path / "set", fail="plugback.json")
    with pytest.raises(RemoteUnavailable), RemoteSet.create_started(backend, Clock().now(), "correct horse") as rset:
        backup(rset, [src])
    assert backend.puts == [] and stored(tmp_path / "set") == {}


def test_a_set_locked_meanwhile_fails_the_run_and_only_the_set_file_is_left(tmp_path, monkeypatch):
    src = make_tree(tmp_path / "src" / "Documents", tree())
    backend = _Watched(tmp_path / "set")
    monkeypatch.setattr("core.engine.remote.backup.RemoteLock.acquire",
                        lambda self: (_ for _ in ()).throw(SetLocked(holder="another computer")))
    with pytest.raises(SetLocked), RemoteSet.create_started(backend, Clock().now(), "correct horse") as rset:
        backup(rset, [src])
    assert backend.puts == ["plugback.json"]
