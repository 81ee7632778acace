"""A remote backup's manifest is uploaded while its last pack is stored, and named only after
every blob it names was stored and read back (core/engine/remote/commit.py); the parent
manifest's bytes are fetched while the set unlocks (core/engine/remote/parent.py). Real rclone
against a WebDAV server the test starts; faults are injected where a real one cannot be timed.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from core.engine.progress import Clock
from core.engine.remote.backup import backup
from core.engine.remote.check import verify
from core.engine.remote.parent import ParentAhead
from core.engine.remote.restore import restore
from core.engine.remote.rset import RemoteSet, manifest_blob
from core.engine.verify import VerifyOptions
from core.errors import PlugbackError, RemoteUnavailable
from tests.core.engine.remote.test_unlock_overlap import T0, stored, unlock
from tests.support.trees import File, make_tree, read_tree

PACK_DELAY = 1.0    # the last pack's put is held this long: a manifest named without waiting would come first


class _Recording:
    """A staging backend that records, in order, when each write and each read-back ends (and when a
    commit starts); ``packs``: what a pack's put does first (a delay, a failure)."""

    can_stage = True

    def __init__(self, inner, packs=None):
        self._inner, self._packs = inner, packs
        self.where = inner.where
        self.events: list[tuple[str, str]] = []
        self._mutex = threading.Lock()

    def _note(self, what: str, name: str) -> None:
        with self._mutex:
            self.events.append((what, name))

    def put(self, name, data):
        if name.startswith("packs/") and self._packs is not None:
            self._packs()
        self._inner.put(name, data)
        self._note("put", name)

    def stage(self, name, data):
        staged = self._inner.stage(name, data)
        self._note("staged", name)
        return staged

    def commit(self, staged):
        self._note("commit", staged.name)
        self._inner.commit(staged)
        self._note("named", staged.name)

    def discard(self, staged):
        self._inner.discard(staged)

    def make_folders(self, folders):
        self._inner.make_folders(folders)

    def get(self, name, offset=0):
        return self._noted(self._inner.get(name, offset), "read", name)

    def read_staged(self, staged, offset=0):
        return self._noted(self._inner.read_staged(staged, offset), "read staged", staged.name)

    def _noted(self, inner, what, name):
        def chunks():
            try:
                yield from inner
            finally:
                inner.close()
            self._note(what, name)
        return chunks()

    def __getattr__(self, attr):
        return getattr(self._inner, attr)


def _tree(tmp_path, version: int):
    files = {f"d{i % 3}/small-{i:03}.txt": File(b"v%d " % version + os.urandom(200 + 31 * i), 0o644, T0 + version)
             for i in range(80)}
    files["big.bin"] = File(os.urandom(2 << 20), 0o644, T0 + version)
    root = tmp_path / f"src{version}" / "Docs"
    make_tree(root, files)
    return root


def _one_snapshot(webdav, tmp_path) -> tuple[str, object]:
    src = _tree(tmp_path, 1)
    with RemoteSet.create(webdav.backend(), Clock().now(), "correct horse") as rset:
        return backup(rset, [src]).snapshot_id, src


def _backup_into(webdav, recording, src):
    with RemoteSet.open_started(recording, unlock()) as rset:
        return backup(rset, [src])


def test_the_manifest_is_uploaded_beside_the_last_pack_and_named_after_every_read_back(webdav, tmp_path):
    first, _ = _one_snapshot(webdav, tmp_path)
    src = _tree(tmp_path, 2)
    recording = _Recording(webdav.backend(), packs=lambda: time.sleep(PACK_DELAY))
    result = _backup_into(webdav, recording, src)
    events = recording.events
    manifest = manifest_blob(result.snapshot_id)
    named_at = events.index(("commit", manifest))
    # Every blob the snapshot names (through a pack's index) was stored and read back before its name came.
    for folder in ("packs/", "index/", "objects/"):
        written = [i for i, (what, name) in enumerate(events) if what in ("put", "named") and name.startswith(folder)]
        read = [i for i, (what, name) in enumerate(events) if what in ("read", "read staged") and name.startswith(folder)]
        assert written and read and max(written + read) < named_at, folder
    # ... while its bytes were in tmp/ before the last pack was even stored (the overlap), and read back there.
    assert events.index(("staged", manifest)) < max(i for i, (w, n) in enumerate(events) if w == "put" and
                                                    n.startswith("packs/"))
    assert events.index(("staged", manifest)) < events.index(("read staged", manifest)) < named_at
    with RemoteSet.open(webdav.backend(), unlock()) as rset:
        assert [s.id for s in rset.snapshots()] == [first, result.snapshot_id]
        assert verify(rset, VerifyOptions(read_all=True)).ok
        restore(rset, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)


def _cut():
    time.sleep(PACK_DELAY)      # (the manifest is in tmp/ by now)
    raise RemoteUnavailable(where="the test", reason="the test cut the last pack's put")


@pytest.mark.parametrize("fault", ["put fails", "read back differs"])
def test_a_last_pack_that_fails_leaves_no_new_snapshot_and_the_last_one_restores(webdav, tmp_path, fault):
    first, old = _one_snapshot(webdav, tmp_path)
    src = _tree(tmp_path, 2)
    recording = _Recording(webdav.backend(), packs=_cut if fault == "put fails" else None)
    if fault == "read back differs":
        real_get = recording.get

        def get(name, offset=0):
            chunks = real_get(name, offset)
            if not name.startswith("packs/"):
                return chunks
            return (bytes([c[0] ^ 1]) + c[1:] if i == 0 else c for i, c in enumerate(chunks))
        recording.get = get       # type: ignore[method-assign]
    with pytest.raises(PlugbackError):
        _backup_into(webdav, recording, src)
    staged = [name for what, name in recording.events if what == "staged" and name.startswith("snapshots/")]
    assert staged, "the manifest was not uploaded beside the last pack"
    assert not any(what in ("commit", "named") and name.startswith("snapshots/") for what, name in recording.events)
    _only_the_old_snapshot_and_the_next_run_completes(webdav, tmp_path, first, old, src)


def test_the_parent_fetched_ahead_is_used_only_while_it_is_still_the_newest(webdav, tmp_path):
    first, _ = _one_snapshot(webdav, tmp_path)
    with RemoteSet.open(webdav.backend(), unlock()) as rset:
        ahead = ParentAhead(rset.backend)
        ahead.relist()
        newest, copy = ahead.take(rset)
        ahead.close()
        assert newest == first and copy is not None
        with copy:
            assert copy.read() == stored(webdav.root)[manifest_blob(first)]
        # A snapshot committed between the fetch and the listing under the lock: that one is the parent.
        ahead = ParentAhead(rset.backend)
        ahead._thread.join()        # (the fetch is over: it holds the first snapshot's bytes)
        second = backup(rset, [_tree(tmp_path, 2)]).snapshot_id
        ahead.relist()
        newest, copy = ahead.take(rset)
        ahead.close()
        assert newest == second and copy is None


def _only_the_old_snapshot_and_the_next_run_completes(webdav, tmp_path, first, old, src) -> None:
    """After a failed run: its uploads gone from tmp/, only ``first`` listed and restoring ``old``;
    the next run completes, verifies and restores ``src``."""
    assert [n for n in stored(webdav.root) if n.startswith("tmp/")] == []
    with RemoteSet.open(webdav.backend(), unlock()) as rset:
        assert [s.id for s in rset.snapshots()] == [first]
        restore(rset, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(old)
    with RemoteSet.open_started(webdav.backend(), unlock()) as rset:      # the next run completes
        again = backup(rset, [src])
        assert verify(rset, VerifyOptions(read_all=True)).ok
        assert rset.newest_id() == again.snapshot_id
        restore(rset, tmp_path / "out2")
    assert read_tree(tmp_path / "out2" / "Docs") == read_tree(src)


def _staged_reads_differ(recording: _Recording, folder: str) -> None:
    """The recording's ``tmp/`` read-backs of blobs for ``folder`` come back with a byte flipped."""
    real = recording.read_staged

    def read_staged(staged, offset=0):
        chunks = real(staged, offset)
        if not staged.name.startswith(folder):
            return chunks
        return (bytes([c[0] ^ 1]) + c[1:] if i == 0 else c for i, c in enumerate(chunks))
    recording.read_staged = read_staged       # type: ignore[method-assign]


@pytest.mark.parametrize("folder", ["index/", "snapshots/"])
def test_an_index_or_manifest_read_back_different_in_tmp_is_never_named(webdav, tmp_path, folder):
    """An index and the manifest are read back in tmp/, before the move names them (the move is a
    rename: nothing is read after it). A read-back that differs stops the run with that blob, and the
    snapshot, unnamed (before, the manifest was named first and read back under its name)."""
    first, old = _one_snapshot(webdav, tmp_path)
    src = _tree(tmp_path, 2)
    recording = _Recording(webdav.backend())
    _staged_reads_differ(recording, folder)
    with pytest.raises(PlugbackError):
        _backup_into(webdav, recording, src)
    events = recording.events
    assert ("read staged", next(n for w, n in events if w == "staged" and n.startswith(folder))) in events
    assert not any(what in ("commit", "named") and name.startswith((folder, "snapshots/")) for what, name in events)
    _only_the_old_snapshot_and_the_next_run_completes(webdav, tmp_path, first, old, src)
