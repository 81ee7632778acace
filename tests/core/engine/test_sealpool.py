"""An encrypted set's small files sealed in worker processes (core/engine/sealpool.py, issue #11):
a run with more than ``sealpool.START_AFTER`` small files hands the rest to workers; what they
wrote restores byte for byte and reads back; a worker killed mid-run leaves no gap (its files
are copied by the run itself); a small run starts none; the process tree's memory is bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from core.agent.keys import Secret, make_unlocker
from core.engine import crypto, sealpool
from core.engine.backup import BackupStatus
from core.engine.progress import Progress
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.env import repo_root, subprocess_env
from tests.support.trees import make_tree, read_tree

UNLOCK = make_unlocker(Secret.passphrase("pw"))
MANY = sealpool.START_AFTER + 3 * sealpool.BATCH + 7   # enough that most go to the workers, a batch left part-full


def _tree(root, n: int, salt: bytes = b""):
    """``n`` small files in folders of 50: text that compresses, random bytes that do not,
    empty files, and duplicates (the same content under two names)."""
    files = {}
    for i in range(n):
        kind = i % 5
        data = (b"line %d\n" % i) * (i % 40) if kind < 2 else os.urandom(100 + i) if kind == 2 else \
            b"" if kind == 3 else b"same content" + salt
        files[f"d{i // 50:03}/f{i:05}.txt"] = data
    return make_tree(root, files)


def _distinct(src) -> int:
    """How many contents a first backup of ``src`` stores (a duplicate is stored once)."""
    return len(set(read_tree(src).values()))


def _workers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "sealpool" in " ".join(p.cmdline())]


def _watch(seen: list, kill_at: int | None = None):
    """A progress callback noting the seal workers alive (and killing one at ``kill_at`` files)."""
    def progress(p: Progress) -> None:
        if p.files_done % 16:
            return   # (a look every 16 files: listing processes costs more than a file)
        workers = _workers()
        seen.append(len(workers))
        if kill_at is not None and p.files_done >= kill_at and workers and not getattr(progress, "killed", False):
            progress.killed = True   # type: ignore[attr-defined]
            os.kill(workers[0].pid, signal.SIGKILL)
            workers[0].wait(5)
    return progress


@pytest.fixture
def two_workers(monkeypatch):
    monkeypatch.setenv(sealpool.PROCESSES_ENV, "2")


def test_many_small_files_are_sealed_by_workers_and_restore_byte_for_byte(tmp_path, two_workers):
    src = _tree(tmp_path / "Data", MANY)
    seen: list[int] = []
    r = backup_path(tmp_path / "set", [src], passphrase="pw", progress=_watch(seen))
    assert r.status is BackupStatus.OK and r.files_copied == _distinct(src)
    assert max(seen) == 2          # the workers ran ...
    assert not _workers()          # ... and ended with the run
    assert os.listdir(tmp_path / "set" / "tmp") == []   # nothing left behind
    restore_path(tmp_path / "set", tmp_path / "out", unlock=UNLOCK)
    assert read_tree(tmp_path / "out" / "Data") == read_tree(src)
    assert verify_path(tmp_path / "set", unlock=UNLOCK, read_all=True).ok


def test_a_small_run_seals_in_its_own_thread(tmp_path, two_workers):
    src = _tree(tmp_path / "Data", sealpool.START_AFTER)
    seen: list[int] = []
    r = backup_path(tmp_path / "set", [src], passphrase="pw", progress=_watch(seen))
    assert r.status is BackupStatus.OK and max(seen) == 0


def test_a_worker_killed_mid_run_leaves_no_gap(tmp_path, two_workers):
    """SIGKILL to a worker while it has batches: the run copies its files itself, completes and
    reads everything back; the next run (changed files) completes and verifies too."""
    src = _tree(tmp_path / "Data", MANY + 6 * sealpool.BATCH)
    seen: list[int] = []
    r = backup_path(tmp_path / "set", [src], passphrase="pw",
                    progress=_watch(seen, kill_at=sealpool.START_AFTER + sealpool.BATCH))
    assert r.status is BackupStatus.OK and r.damaged == [] and r.files_copied == _distinct(src)
    assert 2 in seen and 1 in seen   # two workers, then one
    restore_path(tmp_path / "set", tmp_path / "out", unlock=UNLOCK)
    assert read_tree(tmp_path / "out" / "Data") == read_tree(src)
    _tree(src, MANY + 6 * sealpool.BATCH, salt=b"2")   # every fifth file changes
    r2 = backup_path(tmp_path / "set", [src], unlock=UNLOCK)
    assert r2.status is BackupStatus.OK and r2.files_copied > 0
    assert verify_path(tmp_path / "set", unlock=UNLOCK, read_all=True).ok


def test_every_worker_gone_the_run_seals_the_rest_itself(tmp_path, monkeypatch):
    monkeypatch.setenv(sealpool.PROCESSES_ENV, "1")
    src = _tree(tmp_path / "Data", MANY + 4 * sealpool.BATCH)
    seen: list[int] = []
    r = backup_path(tmp_path / "set", [src], passphrase="pw",
                    progress=_watch(seen, kill_at=sealpool.START_AFTER + 1))
    assert r.status is BackupStatus.OK and r.files_copied == _distinct(src)
    assert 1 in seen and seen[-1] == 0
    restore_path(tmp_path / "set", tmp_path / "out", unlock=UNLOCK)
    assert read_tree(tmp_path / "out" / "Data") == read_tree(src)


def test_spawned_workers_as_on_windows_and_the_frozen_app(tmp_path):
    """The multiprocessing ``spawn`` start (Windows, the frozen app) seals the same way."""
    keys = crypto.SetKeys.from_master(os.urandom(32), 2)
    src = _tree(tmp_path / "Data", 3 * sealpool.BATCH)
    (tmp_path / "tmp").mkdir()
    jobs = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(src.rglob("*.txt"))]
    done = []
    try:
        with sealpool.SealPool(keys, str(tmp_path / "tmp"), 2, lean=False) as pool:
            tickets = [pool.submit(job, lambda sealed: sealed) for job in jobs]
            for (path, _, _), t in zip(jobs, tickets, strict=True):
                tmp, sha, obj, size, changed, written = t.result()
                data = open(path, "rb").read()
                assert (sha, obj, size, changed) == (crypto.hashlib.sha256(data).hexdigest(),
                                                     keys.object_name(crypto.hashlib.sha256(data).hexdigest()),
                                                     len(data), False)
                if tmp is not None:
                    blob = open(tmp, "rb").read()
                    assert len(blob) == written and b"".join(crypto.open_whole(keys, blob)) == data
                done.append(tmp)
    finally:
        # spawn started multiprocessing's resource tracker, a child that outlives the pool: later
        # tests (test_verify_pool) count this process's children
        from multiprocessing import resource_tracker

        resource_tracker._resource_tracker._stop()
    assert len([t for t in done if t is None]) > 0   # a worker seals a duplicate once
    assert not psutil.Process().children()


def test_a_file_a_worker_cannot_read_is_left_to_the_run(tmp_path):
    worker = sealpool.Worker(os.urandom(32), 2, str(tmp_path / "w-"))
    (tmp_path / "a").write_bytes(b"a")
    out = worker.batch([(str(tmp_path / "gone"), 3, 0), (str(tmp_path / "a"), 1, 0)])
    assert out[0] is None and out[1] is not None and out[1][4] is True   # (mtime 0: "changed")


def test_the_process_tree_stays_small(tmp_path):
    """Peak RSS of the whole tree (the run and its workers, summed, sampled) of an encrypted backup
    of many small files, with the real KDF (scrypt's 128 MiB in the run): under 200 MB."""
    src = _tree(tmp_path / "Data", MANY)
    env = subprocess_env()
    env.pop(crypto.WEAKEN_ENV, None)
    env[sealpool.PROCESSES_ENV] = "2"
    env["PLUGBACK_PASSPHRASE"] = "pw"
    proc = psutil.Popen([sys.executable, "-P", "-m", "core.cli", "backup", str(src), "--to", str(tmp_path / "set"),
                         "--encrypt"], cwd=repo_root(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = workers = 0
    while proc.poll() is None:
        try:
            tree = [proc] + proc.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in tree))
            workers = max(workers, sum("sealpool" in " ".join(p.cmdline()) for p in tree))
        except psutil.Error:
            pass
        time.sleep(0.01)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert workers == 2
    assert peak < 200 << 20


def test_a_cancelled_run_stops_its_workers(tmp_path, two_workers):
    """Cancelled while the workers have batches: the run ends with Cancelled and no worker is left;
    the next run completes and restores everything."""
    from core.engine.progress import CancelToken
    from core.errors import Cancelled

    src = _tree(tmp_path / "Data", MANY + 4 * sealpool.BATCH)
    cancel = CancelToken()
    seen: list[int] = []
    watch = _watch(seen)

    def progress(p: Progress) -> None:
        watch(p)
        if p.files_done >= sealpool.START_AFTER + sealpool.BATCH:
            cancel.cancel()

    with pytest.raises(Cancelled):
        backup_path(tmp_path / "set", [src], passphrase="pw", progress=progress, cancel=cancel)
    assert 2 in seen and not _workers()
    r = backup_path(tmp_path / "set", [src], unlock=UNLOCK)
    assert r.status is BackupStatus.OK
    restore_path(tmp_path / "set", tmp_path / "out", unlock=UNLOCK)
    assert read_tree(tmp_path / "out" / "Data") == read_tree(src)
