"""Remote sets end to end on real storage: a folder, rclone's local backend and WebDAV on 127.0.0.1."""

from __future__ import annotations

import os

import pytest

from core.engine import crypto
from core.engine.backup_options import BackupOptions, BackupStatus
from core.engine.progress import WarningCode
from core.engine.remote.backup import backup
from core.engine.remote.check import forget, verify
from core.engine.remote.restore import restore
from core.engine.remote.rset import RemoteSet, manifest_blob, object_blob
from core.engine.retention import RetentionPolicy
from core.engine.verify import VerifyOptions
from core.errors import NotASet, PlugbackError, RemoteUnavailable, UsageError, WrongPassphrase
from tests.core.engine.remote.conftest import Place, place
from tests.support.trees import File, Symlink, make_tree, read_tree

T0 = 1_700_000_000_000_000_000
SECRET = b"plaintext-that-must-never-reach-the-remote-"


def unlock(passphrase: str = "correct horse"):
    return lambda enc, set_id: crypto.unlock_with_passphrase(enc, passphrase)


def tree() -> dict:
    return {
        "Quarterly-Report-Zebra.txt": File(SECRET + b"report", 0o640, T0),
        "Ünïcødé-Folder/naïve-Giraffe.txt": File(SECRET + "grüße".encode(), 0o600, T0 + 1),
        "deep/er/big-Walrus.bin": File(SECRET + os.urandom(3 << 20), 0o644, T0 + 2),
        "deep/twin-Okapi.txt": File(SECRET + b"report", 0o644, T0 + 3),    # same content as the report
        "empty-Narwhal/": None,
        "link-to-Report": Symlink("Quarterly-Report-Zebra.txt"),
    }


def new_set(p, passphrase: str = "correct horse") -> RemoteSet:
    from core.engine.progress import Clock

    return RemoteSet.create(p.backend(), Clock().now(), passphrase)


def flip(rset: RemoteSet, blob: str, at: int) -> None:
    """Damage one bit of a blob (through the remote: the WebDAV server caches what it lists)."""
    data = bytearray(b"".join(rset.backend.get(blob)))
    data[at] ^= 1
    rset.backend.put(blob, bytes(data))


def stored(root) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in root.rglob("*") if f.is_file()}


@pytest.mark.parametrize("kind", ["local", "rclone-local", "rclone-webdav"])
def test_backup_then_restore_gives_every_byte_back(kind, tmp_path, request):
    p = place(kind, tmp_path, request)
    src = make_tree(tmp_path / "src" / "Documents", tree())
    with new_set(p) as rset:
        first = backup(rset, [src])
        assert first.status is BackupStatus.OK and first.files_copied == 3     # the twin is stored once
        again = backup(rset, [src])
        assert again.files_copied == 0 and again.files_scanned == 4
    with RemoteSet.open(p.backend(), unlock()) as rset:
        assert [s.id for s in rset.snapshots()] == [first.snapshot_id, again.snapshot_id]
        result = restore(rset, tmp_path / "out")
        assert not result.damaged and result.files_restored == 4
        checked = verify(rset, VerifyOptions(read_all=True))
        assert checked.ok and checked.snapshots == 2 and checked.contents == 3
    assert read_tree(tmp_path / "out" / "Documents", modes=True, mtimes=True) == \
        read_tree(src, modes=True, mtimes=True)


def test_the_remote_never_sees_a_name_or_content(webdav, tmp_path):
    src = make_tree(tmp_path / "src" / "Documents", tree())
    with new_set(webdav) as rset:
        backup(rset, [src], BackupOptions(host="Laptop-Capybara", job="Job-Marmot"))
    blobs = stored(webdav.root)
    # The big file alone; the two small contents (the twin is stored once) in one pack.
    assert sorted(n.split("/")[0] for n in blobs) == ["index", "objects", "packs", "plugback.json", "snapshots"]
    every_byte = b"".join(n.encode() + b"\0" + data for n, data in blobs.items())
    for word in ("Quarterly", "Zebra", "Giraffe", "Walrus", "Okapi", "Narwhal", "Report", "Documents",
                 "Ünïcødé", "naïve", str(src), "Capybara", "Marmot"):
        assert word.encode() not in every_byte and word.encode("utf-16-le") not in every_byte, word
    assert SECRET[:16] not in every_byte and b"report" not in every_byte and b"gr\xc3\xbc\xc3\x9fe" not in every_byte


def test_a_wrong_passphrase_is_refused_and_nothing_is_written(webdav, tmp_path):
    with new_set(webdav):
        pass
    before = stored(webdav.root)
    with pytest.raises(WrongPassphrase):
        RemoteSet.open(webdav.backend(), unlock("wrong"))
    assert stored(webdav.root) == before


def test_an_empty_remote_folder_is_not_a_set_and_a_foreign_one_is_not_taken(webdav, tmp_path):
    with pytest.raises(NotASet):
        RemoteSet.open(webdav.backend(), unlock())
    webdav.backend().put("holiday/photo.jpg", b"jpeg")
    with pytest.raises(UsageError, match="not empty"):
        new_set(webdav)
    assert stored(webdav.root) == {"holiday/photo.jpg": b"jpeg"}


class _KillAfter:
    """A backend that kills ``server`` (the WebDAV server, or Plugback's rclone: SIGKILL) once its
    ``n``-th put (or commit) of a pack index returned (other uploads are in flight then: they are cut)."""

    def __init__(self, inner, server, n: int):
        self._inner, self._server, self._left = inner, server, n
        self.where = inner.where

    def put(self, name, data):
        self._inner.put(name, data)
        self._count(name)

    def commit(self, staged):      # (an index staged in tmp/, then named: packs.Packer)
        self._inner.commit(staged)
        self._count(staged.name)

    def _count(self, name):
        if name.startswith("index/"):
            self._left -= 1
            if self._left == 0:
                self._server.kill()

    def __getattr__(self, attr):
        return getattr(self._inner, attr)


def test_a_server_killed_mid_backup_fails_the_run_and_the_next_run_completes(world, webdav, tmp_path, monkeypatch):
    from core.engine.remote import packs

    monkeypatch.setattr(packs, "PACK_SIZE", 50_000)      # a pack every three files
    files = {f"f{i:02d}.bin": File(os.urandom(20_000 + i), 0o644, T0) for i in range(24)}
    src = make_tree(tmp_path / "src" / "Docs", files)
    with new_set(webdav):
        pass
    killer = _KillAfter(webdav.backend(), world.webdav, 2)
    rset = RemoteSet.open(killer, unlock())   # type: ignore[arg-type]
    try:
        with pytest.raises(PlugbackError) as err:
            backup(rset, [src])
        assert isinstance(err.value, RemoteUnavailable) or "remote" in str(err.value).lower()
    finally:
        rset.close()
    world.webdav.restart()
    with RemoteSet.open(webdav.backend(), unlock()) as rset:
        assert rset.snapshot_ids() == []                        # no snapshot names a half-stored run
        uploaded_before = sum(1 for _ in rset.object_names())
        assert 0 < uploaded_before < 24
        result = backup(rset, [src])
        assert result.status is BackupStatus.OK and result.files_scanned == 24
        assert result.files_copied == 24 - uploaded_before      # what was there is not sent again
        assert verify(rset, VerifyOptions(read_all=True)).ok
        restore(rset, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)
    assert not [n for n in stored(webdav.root) if n.startswith(("tmp/", "locks/"))]


def test_forget_prune_deletes_only_what_no_snapshot_needs(webdav, tmp_path):
    src = make_tree(tmp_path / "src" / "Docs", {"keep.txt": b"kept in both", "old.txt": b"only in the first"})
    with new_set(webdav) as rset:
        first = backup(rset, [src])
        old_obj = rset.keys.object_name(crypto.hashlib.sha256(b"only in the first").hexdigest())
        (src / "old.txt").unlink()
        (src / "new.txt").write_bytes(b"only in the second")
        second = backup(rset, [src])
        result = forget(rset, RetentionPolicy(last=1))
        assert result.forgotten == [first.snapshot_id] and result.objects_removed == 1   # (its pack, repacked)
        assert old_obj not in {n for n, _ in rset.object_names()}
        assert len(list(rset.backend.list("packs"))) == len(list(rset.backend.list("index"))) == 2
        assert rset.snapshot_ids() == [second.snapshot_id]
        assert verify(rset, VerifyOptions(read_all=True)).ok
        restore(rset, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Docs") == {"keep.txt": b"kept in both", "new.txt": b"only in the second"}


def test_prune_refuses_when_a_manifest_is_unreadable(webdav, tmp_path):
    src = make_tree(tmp_path / "src" / "Docs", {"a.txt": b"alpha", "b.txt": b"beta"})
    with new_set(webdav) as rset:
        backup(rset, [src])
        (src / "b.txt").unlink()
        second = backup(rset, [src])
        backup(rset, [src])
        flip(rset, manifest_blob(second.snapshot_id), -5)
        before = stored(webdav.root)
        with pytest.raises(PlugbackError, match="Cannot prune"):
            forget(rset, RetentionPolicy(last=2))
        # The policy's snapshot went, but no object did (the damaged manifest may need them).
        assert {n for n in stored(webdav.root) if n.startswith("objects/")} == \
            {n for n in before if n.startswith("objects/")}


def test_verify_names_missing_and_damaged_content(webdav, tmp_path):
    big = {"gone": b"g" * (2 << 20), "flipped": b"f" * (2 << 20)}      # objects of their own
    src = make_tree(tmp_path / "src" / "Docs", {"gone.txt": big["gone"], "flipped.txt": big["flipped"],
                                                "fine.txt": b"stays fine"})
    with new_set(webdav) as rset:
        backup(rset, [src])
        name = {t: rset.keys.object_name(crypto.hashlib.sha256(d).hexdigest()) for t, d in big.items()}
        rset.backend.delete(object_blob(name["gone"]))
        flip(rset, object_blob(name["flipped"]), -1)
        quick = verify(rset)
        assert [p for p, _ in quick.damaged] == [next(p for p, _ in quick.damaged if "gone.txt" in p)]
        assert "missing" in quick.damaged[0][1]
        full = verify(rset, VerifyOptions(read_all=True))
        assert sorted(p.split(" ")[0] for p, _ in full.damaged) == ["Docs/flipped.txt", "Docs/gone.txt"]
        result = restore(rset, tmp_path / "out")
    assert sorted(p for p, _ in result.damaged) == ["Docs/flipped.txt", "Docs/gone.txt"]
    assert read_tree(tmp_path / "out" / "Docs") == {"fine.txt": b"stays fine"}


def test_small_files_are_read_once_and_many_packs_are_all_indexed(tmp_path, monkeypatch):
    """Content under PACK_BELOW is packed from the read that hashed it (the second read is
    never made); a set with more packs than the indexes read at once opens with every one."""
    from core.engine.remote import backup as remote_backup
    from core.engine.remote import packs

    def no_second_read(fd, size):
        raise AssertionError(f"descriptor {fd} was read again")

    monkeypatch.setattr(remote_backup, "_file_blocks", no_second_read)
    monkeypatch.setattr(packs, "PACK_OBJECTS", 2)
    files = {f"Docs/note{i:02d}.txt": SECRET + bytes([i]) * (i + 1) for i in range(4 * packs.INDEX_READERS + 3)}
    src = make_tree(tmp_path / "src", files)
    local = place("local", tmp_path, None)
    with new_set(local) as rset:
        backup(rset, [src])
        assert len(list(rset.backend.list(packs.INDEX_DIR))) == len(files) // 2 + 1
    with RemoteSet.open(local.backend(), unlock()) as rset:
        restore(rset, tmp_path / "out")
        assert verify(rset, VerifyOptions(read_all=True)).ok
    assert read_tree(tmp_path / "out" / "src") == files


def test_a_file_changed_between_hashing_and_upload_keeps_its_previous_version(webdav, tmp_path, monkeypatch):
    from core.engine.remote import backup as remote_backup

    big = 1 << 20        # (smaller content is read once: it cannot change between two reads)
    src = make_tree(tmp_path / "src" / "Docs", {"busy.txt": b"1" * big})
    with new_set(webdav) as rset:
        backup(rset, [src])
        (src / "busy.txt").write_bytes(b"2" * big)
        real = remote_backup._file_blocks

        def changing(fd, size):
            (src / "busy.txt").write_bytes(b"3" * big)   # same size, after it was hashed
            return real(fd, size)

        monkeypatch.setattr(remote_backup, "_file_blocks", changing)
        result = backup(rset, [src])
        assert [w.code for w in result.warnings] == [WarningCode.CHANGED_WHILE_READING]
        assert verify(rset, VerifyOptions(read_all=True)).ok      # the wrong blob was deleted
        restore(rset, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Docs") == {"busy.txt": b"1" * big}


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="POSIX: O_NOFOLLOW refuses the link (Windows: winopen's tests)")
def test_a_big_file_swapped_for_a_symlink_before_its_upload_is_not_followed(tmp_path, monkeypatch):
    """Big content is read twice (hashed, then sealed as it is sent): a source swapped for a
    symlink between the two reads is not followed, so the link's target is never uploaded."""
    from core.engine.remote import backup as remote_backup

    big = 1 << 20
    secret = tmp_path / "elsewhere" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(b"s" * big)
    src = make_tree(tmp_path / "src" / "Docs", {"busy.txt": b"1" * big})
    local = place("local", tmp_path, None)
    with new_set(local) as rset:
        backup(rset, [src])
        (src / "busy.txt").write_bytes(b"2" * big)
        real = remote_backup._reopen

        def swapped(path, *scanned):
            os.replace(src / "busy.txt", tmp_path / "moved.txt")
            os.symlink(secret, src / "busy.txt")     # after it was hashed, before its second read
            return real(path, *scanned)

        put = rset.backend.put
        sent: list[str] = []

        def recording(blob, chunks):
            sent.append(blob)
            return put(blob, chunks)

        monkeypatch.setattr(remote_backup, "_reopen", swapped)
        monkeypatch.setattr(rset.backend, "put", recording)
        changed = rset.keys.object_name(crypto.hashlib.sha256(b"2" * big).hexdigest())
        result = backup(rset, [src])
        assert object_blob(changed) not in sent              # nothing read through the link, nothing sent
        assert [w.code for w in result.warnings] == [WarningCode.CHANGED_WHILE_READING]
        assert verify(rset, VerifyOptions(read_all=True)).ok
        restore(rset, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Docs") == {"busy.txt": b"1" * big}


def test_unchanged_files_are_not_read_again_but_a_missing_object_is_stored_again(webdav, tmp_path):
    alpha = b"a" * (1 << 20)    # an object of its own
    src = make_tree(tmp_path / "src" / "Docs", {"a.txt": alpha, "b.txt": b"beta"})
    with new_set(webdav) as rset:
        backup(rset, [src])
        rset.backend.delete(object_blob(rset.keys.object_name(crypto.hashlib.sha256(alpha).hexdigest())))
        result = backup(rset, [src], BackupOptions())
        assert result.files_copied == 1
        assert verify(rset, VerifyOptions(read_all=True)).ok


def test_restore_waits_for_a_backup_holding_the_set_then_fails_when_told_not_to(webdav, tmp_path):
    from core.engine.progress import FakeClock
    from core.engine.restore import RestoreOptions
    from core.engine.storage.lock import RemoteLock
    from core.errors import SetLocked

    src = make_tree(tmp_path / "src" / "Docs", {"a.txt": b"alpha"})
    with new_set(webdav) as rset:
        backup(rset, [src])
        clock = FakeClock()
        told: list[dict] = []
        with RemoteLock(rset.backend, clock, purpose="backup", pid=os.getpid() + 1, machine="another"):
            with pytest.raises(SetLocked):
                restore(rset, tmp_path / "out", RestoreOptions(clock=clock, lock_wait=0))
            with pytest.raises(SetLocked):
                restore(rset, tmp_path / "out", RestoreOptions(clock=clock, lock_wait=10, on_lock_wait=told.append))
        assert [h.get("purpose") for h in told] == ["backup"] and clock.mono >= 10
        assert restore(rset, tmp_path / "out").files_restored == 1
        assert not list(rset.backend.list("locks"))


def test_a_full_remote_fails_the_backup_and_commits_nothing(world, make_drive, tmp_path):
    """rclone's ``local`` remote on a real 16 MB ext4 drive, and 24 MB to back up."""
    from core.engine.progress import Clock
    from core.errors import RemoteFull

    drive = make_drive("ext4", size_mb=16)
    p = Place("rclone-local", f"rclone:loc:{drive.mount_point / 'set'}", drive.mount_point / "set")
    src = make_tree(tmp_path / "src" / "Docs", {"small.txt": b"fits"} |
                    {f"big{i}.bin": os.urandom(6 << 20) for i in range(4)})
    with RemoteSet.create(p.backend(), Clock().now(), "correct horse") as rset:
        with pytest.raises(RemoteFull):
            backup(rset, [src])
        assert rset.snapshot_ids() == [] and not list(rset.backend.list("locks"))


def test_damaged_or_missing_packs_are_named_by_verify_and_restore(webdav, tmp_path, monkeypatch):
    from core.engine.remote import packs

    monkeypatch.setattr(packs, "PACK_SIZE", 1)      # a pack per file
    src = make_tree(tmp_path / "src" / "Docs", {"gone.txt": b"in a pack that goes", "flipped.txt": b"in a damaged one",
                                                "fine.txt": b"stays fine"})
    with new_set(webdav) as rset:
        backup(rset, [src])
        where = {t: rset.packs.find(rset.keys.object_name(crypto.hashlib.sha256((src / t).read_bytes()).hexdigest()))
                 for t in ("gone.txt", "flipped.txt")}
    with RemoteSet.open(webdav.backend(), unlock()) as rset:
        rset.backend.delete(packs.pack_blob(where["gone.txt"][0]))
        flip(rset, packs.pack_blob(where["flipped.txt"][0]), where["flipped.txt"][1] + 50)
    with RemoteSet.open(webdav.backend(), unlock()) as rset:
        quick = verify(rset)
        assert [(p.split(" ")[0], "missing" in why) for p, why in quick.damaged] == [("Docs/gone.txt", True)]
        full = verify(rset, VerifyOptions(read_all=True))
        assert sorted(p.split(" ")[0] for p, _ in full.damaged) == ["Docs/flipped.txt", "Docs/gone.txt"]
        result = restore(rset, tmp_path / "out")
    assert sorted(p for p, _ in result.damaged) == ["Docs/flipped.txt", "Docs/gone.txt"]
    assert read_tree(tmp_path / "out" / "Docs") == {"fine.txt": b"stays fine"}


def test_a_pack_index_that_does_not_decode_is_damage(webdav, tmp_path):
    from core.engine.remote import packs
    from core.errors import DamagedSet

    src = make_tree(tmp_path / "src" / "Docs", {"a.txt": b"alpha"})
    with new_set(webdav) as rset:
        backup(rset, [src])
        rset.backend.put(packs.index_blob("ab" * 32), b"PLUGBACK" + os.urandom(100))
    with RemoteSet.open(webdav.backend(), unlock()) as rset:
        with pytest.raises(DamagedSet, match="index/abab"):
            verify(rset)
        result = restore(rset, tmp_path / "out")
    assert [(p, "index/abab" in why) for p, why in result.damaged] == [("Docs/a.txt", True)]


def test_a_local_encrypted_set_reads_as_a_remote_set_and_a_plain_one_is_refused(world, tmp_path):
    """Same objects, same manifests: a drive's encrypted set copied to a remote opens there."""
    from core.engine.backup import backup as local_backup
    from core.engine.progress import Clock
    from core.engine.repo import BackupSet
    from core.engine.storage import RcloneBackend

    src = make_tree(tmp_path / "src" / "Docs", tree())
    local = BackupSet.create(tmp_path / "enc", Clock().now(), passphrase="correct horse")
    local_backup(local, [src])
    with RemoteSet.open(RcloneBackend(f"rclone:loc:{tmp_path / 'enc'}"), unlock()) as rset:
        assert not restore(rset, tmp_path / "out").damaged
        assert verify(rset, VerifyOptions(read_all=True)).ok
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)
    plain = BackupSet.create(tmp_path / "plain", Clock().now())
    local_backup(plain, [src])
    with pytest.raises(UsageError, match="not encrypted"):
        RemoteSet.open(RcloneBackend(f"rclone:loc:{tmp_path / 'plain'}"), unlock())


def test_a_killed_rclone_is_started_again_and_the_backup_is_whole(world, webdav, tmp_path, monkeypatch):
    from core.engine.remote import packs

    monkeypatch.setattr(packs, "PACK_SIZE", 50_000)
    src = make_tree(tmp_path / "src" / "Docs", {f"f{i:02d}.bin": os.urandom(20_000 + i) for i in range(24)})
    with new_set(webdav):
        pass
    backend = webdav.backend()
    rclone = backend.inner.rcd._proc            # Plugback's own rclone (Retrying around RcloneBackend)
    killer = _KillAfter(backend, rclone, 2)     # SIGKILL once the second pack is indexed
    with RemoteSet.open(killer, unlock()) as rset:   # type: ignore[arg-type]
        try:
            result = backup(rset, [src])
        except PlugbackError:
            result = backup(rset, [src])                         # or it failed: the next run completes
        assert result.status is BackupStatus.OK and rclone.poll() is not None
    with RemoteSet.open(webdav.backend(), unlock()) as rset:
        assert verify(rset, VerifyOptions(read_all=True)).ok and len(rset.snapshot_ids()) == 1
        restore(rset, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)


def test_backup_progress_counts_every_file_towards_the_parents_totals(tmp_path):
    from core.engine.progress import Progress

    src = make_tree(tmp_path / "src" / "Docs", {f"f{i}.txt": b"x" * i for i in range(1, 6)})
    seen: list[Progress] = []
    with new_set(place("local", tmp_path, None)) as rset:
        backup(rset, [src])
        (src / "f1.txt").write_bytes(b"changed")
        backup(rset, [src], BackupOptions(progress=seen.append))
    copy = [p for p in seen if p.phase == "copy"]
    assert [p.current for p in copy] == ["Docs/f1.txt"] and copy[0].files_total == 5 and copy[0].bytes_total == 15
    assert seen[-1].phase == "commit" and seen[-1].files_done == 5


def test_compressible_content_is_stored_compressed_and_checks_exactly(webdav, tmp_path):
    # A new remote set is encryption format 2: zstd where the first block shows it pays; the manifest
    # records the stored size (Entry.stored) for the quick check, also for a copy another file shares.
    text, noise = b"the same words again " * 100_000, os.urandom(2 << 20)       # ~2 MiB each
    src = make_tree(tmp_path / "src" / "Docs", {"text.txt": text, "noise.bin": noise, "small.txt": b"x" * 5000})
    with new_set(webdav) as rset:
        assert rset.meta["encryption"]["version"] == 2
        backup(rset, [src])
        (src / "copy.txt").write_bytes(text)                    # same content: the stored copy is shared
        backup(rset, [src])
        with rset.open_manifest(rset.newest_id()) as reader:
            files = {e.path: e for e in reader if e.type == "f"}
        assert 0 < files["Docs/text.txt"].stored < len(text) // 20
        assert files["Docs/copy.txt"].stored == files["Docs/text.txt"].stored
        assert files["Docs/noise.bin"].stored == 0                # did not compress: stored as is
        assert verify(rset).ok and verify(rset, VerifyOptions(read_all=True)).ok
        result = restore(rset, tmp_path / "out")
    assert not result.damaged
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)
    held = sum(f.stat().st_size for f in webdav.root.rglob("*") if f.is_file())
    assert held < len(noise) + len(text) // 10


def test_only_well_formed_snapshot_names_under_snapshots_are_snapshots():
    """A remote's listing is untrusted: anything but ``snapshots/<id>.json.gz`` is not a snapshot."""
    from datetime import datetime, timezone

    from core.engine.layout import MANIFEST_SUFFIX
    from core.engine.remote.rset import snapshot_of_blob
    from core.engine.repo import new_snapshot_id

    sid = new_snapshot_id(datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc), None)
    assert snapshot_of_blob(f"snapshots/{sid}{MANIFEST_SUFFIX}") == sid
    for name in (f"objects/{sid}{MANIFEST_SUFFIX}", f"snapshots/{sid}.json", f"snapshots/x/{sid}{MANIFEST_SUFFIX}",
                 f"snapshots/../{sid}{MANIFEST_SUFFIX}", f"snapshots/{MANIFEST_SUFFIX}", "snapshots/evil.json.gz",
                 f"{sid}{MANIFEST_SUFFIX}"):
        assert snapshot_of_blob(name) is None, name
