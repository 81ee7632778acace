"""The seal workers read back small objects (core/engine/sealpool.py ``Worker.check``, called by
core/engine/readback.py after the commit's flush, issue #11): a sound object passes; a damaged,
missing, symlinked or misnamed one is reported, in the words of the run's own check; a backup
whose workers find an object damaged after it was written does not call it verified."""

from __future__ import annotations

import hashlib
import os
from types import SimpleNamespace

import pytest

from core.engine import readback, sealpool
from core.engine.backup import BackupStatus
from core.engine.objcheck import MISSING
from tests.core.engine.test_sealpool import MANY, _tree
from tests.support.engine import backup_path, sealed_object


@pytest.fixture
def worker(tmp_path):
    return sealpool.Worker(os.urandom(32), 2, str(tmp_path / "w-"))


def test_a_sound_object_reads_back_and_each_fault_is_named(worker, tmp_path):
    good = sealed_object(worker, tmp_path, "a", b"some text\n" * 300)
    damaged = sealed_object(worker, tmp_path, "b", os.urandom(5000))
    with open(damaged[0], "r+b") as f:   # one byte of the ciphertext changed after the write
        f.seek(2500)
        byte = f.read(1)
        f.seek(2500)
        f.write(bytes([byte[0] ^ 1]))
    other = sealed_object(worker, tmp_path, "c", b"other content")
    link = tmp_path / "objects" / ("0" * 64)
    link.symlink_to(good[0])
    jobs = [([good[0]], good[1], good[2], good[3]),
            ([damaged[0]], damaged[1], damaged[2], damaged[3]),
            ([str(tmp_path / "objects" / "gone")], good[1], good[2], good[3]),
            ([str(link)], good[1], good[2], good[3]),
            # a sound object of other content where the manifest names this one: its SHA-256 differs
            ([other[0]], good[1], good[2], good[3]),
            # the manifest's hash and size, but under a name the keyed name does not give
            ([good[0]], other[1], good[2], good[3])]
    out = worker.check(jobs)
    assert out[0] == ""
    assert "damaged" in out[1]
    assert out[2] == MISSING
    assert "symbolic link" in out[3]
    assert "bytes instead of" in out[4] or "checksum" in out[4]
    assert "does not match its name" in out[5]
    assert hashlib.sha256(b"some text\n" * 300).hexdigest() == good[2]


def _last_random(n: int) -> str:
    """The name of the last file of ``_tree(..., n)`` holding random bytes (i % 5 == 2)."""
    return f"f{max(i for i in range(n) if i % 5 == 2):05}.txt"


def _damage(run, source) -> None:
    """One byte of the object holding ``source``'s content changed on the drive, and ``source``
    removed (so the repair cannot copy it again)."""
    obj = run.store.keys.object_name(hashlib.sha256(source.read_bytes()).hexdigest())
    with open(run.store.written_paths(SimpleNamespace(obj=obj, parts=0))[0], "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0x40]))
    source.unlink()


def test_a_damaged_object_the_workers_read_back_is_not_called_verified(tmp_path, monkeypatch):
    """Every small object is read back by the seal worker (the run's thread takes none); one is
    damaged on the drive after the commit, its source gone so the repair cannot copy it again:
    the run reports it damaged. A worker that skipped its read-back, or read back wrong, fails this."""
    monkeypatch.setenv(sealpool.PROCESSES_ENV, "1")
    src = _tree(tmp_path / "Data", MANY)
    target = _last_random(MANY)   # sealed by the worker
    verdicts: list = []
    real_checked, real_read_back = sealpool.SealPool.checked, readback.read_back

    def checked(pool, tag: int, index: int):
        verdicts.append(real_checked(pool, tag, index))
        return verdicts[-1]

    def damaging(run, *a):
        _damage(run, next(src.rglob(target)))
        return real_read_back(run, *a)

    monkeypatch.setattr(sealpool.SealPool, "checked", checked)
    monkeypatch.setattr(readback, "_to_worker", lambda pool, e: pool is not None and e.size < readback.BIG)
    monkeypatch.setattr(readback, "read_back", damaging)
    r = backup_path(tmp_path / "set", [src], passphrase="pw")
    assert r.status is BackupStatus.DAMAGED
    assert [path.rsplit("/", 1)[-1] for path, _ in r.damaged] == [target]
    assert None not in verdicts                                   # the worker answered every check ...
    assert len(verdicts) == r.files_copied                        # ... of every object written
    assert sum(bool(v) for v in verdicts) == 1                    # ... and found the one damaged


def test_a_worker_killed_during_the_read_back_leaves_its_checks_to_the_run(tmp_path, monkeypatch):
    """SIGKILL to the worker once the read-back has begun: the batches it held, and those after,
    come back unanswered (None), and the run reads those objects back itself: the one damaged
    among them (the last file's, its source gone) is reported, nothing else."""
    import signal

    from tests.core.engine.test_sealpool import _workers

    monkeypatch.setenv(sealpool.PROCESSES_ENV, "1")
    monkeypatch.setattr(readback, "_to_worker", lambda pool, e: pool is not None and e.size < readback.BIG)
    src = _tree(tmp_path / "Data", MANY + 4 * sealpool.BATCH)
    verdicts: list = []
    real_checked = sealpool.SealPool.checked

    def checked(pool, tag: int, index: int):
        if not verdicts:   # (the first verdict taken: the read-back is under way)
            for p in _workers():
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        verdicts.append(real_checked(pool, tag, index))
        return verdicts[-1]

    target = _last_random(MANY + 4 * sealpool.BATCH)
    real_read_back = readback.read_back

    def damaging(run, *a):
        _damage(run, next(src.rglob(target)))
        return real_read_back(run, *a)

    monkeypatch.setattr(sealpool.SealPool, "checked", checked)
    monkeypatch.setattr(readback, "read_back", damaging)
    r = backup_path(tmp_path / "set", [src], passphrase="pw")
    assert r.status is BackupStatus.DAMAGED
    assert [path.rsplit("/", 1)[-1] for path, _ in r.damaged] == [target]
    assert None in verdicts                # batches the killed worker held: checked by the run
    assert not any(verdicts)               # (the worker answered nothing bad before it died)


def test_the_runs_thread_seals_a_share_while_the_workers_are_busy(tmp_path, monkeypatch):
    """With the workers always busy (``room`` says no), the run's thread keeps 1 file in 5 of those
    it starts reading (one worker) and seals them itself; the set restores byte for byte."""
    from core.agent.keys import Secret, make_unlocker
    from tests.support.engine import restore_path, verify_path
    from tests.support.trees import read_tree

    monkeypatch.setenv(sealpool.PROCESSES_ENV, "1")
    monkeypatch.setattr(sealpool.SealPool, "room", lambda pool: False)
    kept: list = []
    real_keep = sealpool.Sealing.keep

    def keep(sealing, se):
        active, mine = sealing.active, real_keep(sealing, se)
        if active:
            kept.append(mine)
        return mine

    monkeypatch.setattr(sealpool.Sealing, "keep", keep)
    src = _tree(tmp_path / "Data", MANY + 6 * sealpool.BATCH)
    r = backup_path(tmp_path / "set", [src], passphrase="pw")
    assert r.status is BackupStatus.OK
    share = sum(kept) / len(kept)
    assert 0.1 < share <= 0.2
    unlock = make_unlocker(Secret.passphrase("pw"))
    restore_path(tmp_path / "set", tmp_path / "out", unlock=unlock)
    assert read_tree(tmp_path / "out" / "Data") == read_tree(src)
    assert verify_path(tmp_path / "set", unlock=unlock, read_all=True).ok
