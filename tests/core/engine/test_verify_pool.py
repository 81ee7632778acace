"""``verify --read-all`` reading ``Latest/`` in worker processes (core/engine/readpool.py,
core/engine/verify_latest.py) finds what the checks in threads find, in the same words.

Each case damages a real set on disk, then verifies it twice: with the workers (the
threshold ``verify_latest.POOL_FROM`` lowered to 0, batches of 3 files so that there are
many) and in threads as before (the threshold out of reach); the two reports must be equal.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import psutil
import pytest

from core.agent.keys import Secret, make_unlocker
from core.engine import readpool, verify_latest
from core.engine.layout import SetLayout
from core.engine.progress import CancelToken
from core.engine.verify import VerifyOptions, verify
from core.errors import Cancelled
from tests.support.engine import backup_path, open_set, verify_path
from tests.support.trees import make_tree

FILES = {f"f{d}/s{s}/n{i}.txt": f"file {d} {s} {i} ".encode() * (i + 1) for d in range(3) for s in range(2)
         for i in range(4)}


@pytest.fixture
def plain(tmp_path):
    """A plain set with two snapshots of 24 files in 9 folders (one file changed: an object)."""
    src = make_tree(tmp_path / "src" / "Data", {**FILES, "top.txt": b"top v1"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    (src / "top.txt").write_bytes(b"top v2")
    backup_path(set_path, [src])
    return set_path


def _reports(set_path, monkeypatch, read_all=True, **options):
    """(report with the workers, report in threads), each as comparable tuples; the workers were used."""
    started = []

    class Spy(verify_latest.Early):
        def __init__(self, *args):
            started.append(args[1])
            super().__init__(*args)

    monkeypatch.setattr(verify_latest, "Early", Spy)
    monkeypatch.setattr(verify_latest, "POOL_BATCH", 3)
    monkeypatch.setattr(verify_latest, "POOL_FROM", 0)
    monkeypatch.setattr(verify_latest, "QUICK_POOL_FROM", 0)
    pooled = verify_path(set_path, read_all=read_all, **options)
    assert started, "the worker processes were not used"
    monkeypatch.setattr(verify_latest, "POOL_FROM", 10 ** 9)
    monkeypatch.setattr(verify_latest, "QUICK_POOL_FROM", 10 ** 9)
    threads = verify_path(set_path, read_all=read_all, **options)
    assert len(started) == 1
    return [(r.damaged, r.contents, r.bytes_read, r.snapshots, r.notices) for r in (pooled, threads)]


def _latest(set_path, rel="Data/f1/s0/n2.txt"):
    return set_path / "Latest" / rel


def _flip(p):
    data = bytearray(p.read_bytes())
    data[1] ^= 1
    p.write_bytes(bytes(data))


def _fifo(p):
    p.unlink()
    os.mkfifo(p)


def _symlink(p):
    p.unlink()
    p.symlink_to(p.parent / "n0.txt")


def _folder(p):
    p.unlink()
    p.mkdir()


def _object(set_path):
    (obj,) = [p for p in (set_path / "objects").rglob("*") if p.is_file()]
    _flip(obj)


def _newest_manifest(set_path):
    newest = sorted((set_path / "snapshots").glob("*.json.gz"))[-1]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) - 9])


DAMAGE = {
    "none": lambda s: None,
    "flipped byte": lambda s: _flip(_latest(s)),
    "truncated": lambda s: _latest(s).write_bytes(b"x"),
    "grown": lambda s: _latest(s).write_bytes(_latest(s).read_bytes() + b"more"),
    "deleted file": lambda s: _latest(s).unlink(),
    "deleted folder": lambda s: shutil.rmtree(_latest(s, "Data/f1")),
    "folder a file": lambda s: (shutil.rmtree(_latest(s, "Data/f2/s1")), _latest(s, "Data/f2/s1").write_bytes(b"")),
    "FIFO": lambda s: _fifo(_latest(s)),
    "symlink": lambda s: _symlink(_latest(s)),
    "folder in its place": lambda s: _folder(_latest(s)),
    "several": lambda s: (_flip(_latest(s)), _latest(s, "Data/f0/s0/n0.txt").unlink(), _fifo(_latest(s, "Data/top.txt"))),
    "object": _object,
    "newest manifest": _newest_manifest,
    "interrupted backup": lambda s: SetLayout(s).journal.write_bytes(b"{}"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_the_workers_report_what_the_threads_report(plain, monkeypatch, case):
    if case == "interrupted backup":
        DAMAGE[case](plain)
        monkeypatch.setattr(verify_latest, "POOL_FROM", 0)
        assert verify_path(plain, read_all=True).notices   # no Latest/ checks, no workers
        return
    DAMAGE[case](plain)
    pooled, threads = _reports(plain, monkeypatch)
    assert pooled == threads
    damaged = pooled[0]
    if case == "none":
        assert not damaged and pooled[1] == 26
    elif case not in ("object", "newest manifest"):
        assert damaged and all(p.startswith("Latest/Data/") for p, _ in damaged)


@pytest.mark.parametrize("case", [c for c in DAMAGE if c != "interrupted backup"])
def test_a_quick_verify_checks_the_sizes_in_the_workers(plain, monkeypatch, case):
    """Without --read-all the workers check each file's size (nothing read): the report is the threads',
    except where ``Latest/`` holds no regular file (the threads' ``stat`` followed a symlink, took a
    FIFO's or a folder's size): the workers name the same files, as --read-all words them."""
    DAMAGE[case](plain)
    pooled, threads = _reports(plain, monkeypatch, read_all=False)
    assert pooled[2] == 0   # (nothing read)
    if case in ("FIFO", "symlink", "folder in its place", "several"):
        assert [p for p, _ in pooled[0]] == [p for p, _ in threads[0]] and pooled[1:] == threads[1:]
        assert any("not a regular file" in why for _, why in pooled[0])
    else:
        assert pooled == threads
    if case in ("truncated", "grown"):
        assert pooled[0] and "its stored copy has" in pooled[0][0][1]


def test_the_reasons_are_worded_as_before(plain, monkeypatch):
    _flip(_latest(plain))
    _fifo(_latest(plain, "Data/f0/s1/n3.txt"))
    _latest(plain, "Data/f2/s0/n1.txt").unlink()
    pooled, _ = _reports(plain, monkeypatch)
    reasons = dict(pooled[0])
    assert reasons["Latest/Data/f1/s0/n2.txt"] == readpool.MISMATCH
    assert reasons["Latest/Data/f2/s0/n1.txt"] == "its content is missing from the drive"
    fifo = str(plain / "Latest" / "Data" / "f0" / "s1" / "n3.txt")
    assert reasons["Latest/Data/f0/s1/n3.txt"].startswith(f"The backup is damaged: {fifo}: it is a named pipe")


def test_a_symlinked_folder_in_latest_is_not_followed(plain, tmp_path, monkeypatch):
    """Its files are reported (the threads followed it; the workers open folders without following)."""
    outside = tmp_path / "outside"
    shutil.copytree(_latest(plain, "Data/f1"), outside)
    shutil.rmtree(_latest(plain, "Data/f1"))
    _latest(plain, "Data/f1").symlink_to(outside)
    monkeypatch.setattr(verify_latest, "POOL_FROM", 0)
    result = verify_path(plain, read_all=True)
    assert len(result.damaged) == 8
    assert all("the folder 'f1' on its way is a symbolic link" in why for _, why in result.damaged)


def test_format_1_and_encrypted_sets_verify(tmp_path, monkeypatch):
    monkeypatch.setattr(verify_latest, "POOL_FROM", 0)
    src = make_tree(tmp_path / "src" / "Data", FILES)
    old = tmp_path / "old"
    backup_path(old, [src])
    bset = open_set(old)
    bset.meta["version"] = 1
    bset.write_meta()
    backup_path(old, [src])
    assert open_set(old).version == 1
    result = verify_path(old, read_all=True)
    assert result.ok and result.contents == 24
    _flip(_latest(old))
    assert [p for p, _ in verify_path(old, read_all=True).damaged] == ["Latest/Data/f1/s0/n2.txt"]
    enc = tmp_path / "enc"   # an encrypted set: no Latest/, its objects read in threads as before
    backup_path(enc, [src], passphrase="correct horse")
    assert verify_path(enc, read_all=True, unlock=make_unlocker(Secret.passphrase("correct horse"))).ok


def test_cancel_stops_the_workers(plain, monkeypatch):
    monkeypatch.setattr(verify_latest, "POOL_FROM", 0)
    monkeypatch.setattr(verify_latest, "POOL_BATCH", 1)
    cancel = CancelToken()
    seen = []

    def progress(p):
        seen.append(p.files_done)
        cancel.cancel()

    with pytest.raises(Cancelled):
        verify(open_set(plain), VerifyOptions(read_all=True, progress=progress, cancel=cancel))
    assert not psutil.Process().children(recursive=True)


def test_without_worker_processes_threads_check_the_same(plain, monkeypatch):
    """A system where processes cannot be started (a fault): the batches are checked by threads."""
    _flip(_latest(plain))

    def refuse(self, processes):
        raise OSError("no processes here")

    monkeypatch.setattr(readpool.HashPool, "_spawn", refuse)
    pooled, threads = _reports(plain, monkeypatch)
    assert pooled == threads and pooled[0]


def test_split_files_are_read_part_by_part(tmp_path):
    latest = tmp_path / "Latest"
    (latest / "d").mkdir(parents=True)
    data = os.urandom(3000)
    for i, at in enumerate((0, 1000, 2000), 1):
        (latest / "d" / f"big.bin.{i:03d}").write_bytes(data[at:at + 1000])
    sha = hashlib.sha256(data).hexdigest()
    checker = readpool.Checker(str(latest))
    try:
        assert checker.check([("d/big.bin", 3, 3000, sha)]) == []
        assert checker.check([("d/big.bin", 3, 3001, sha)]) == [(0, "its stored copy has 3000 bytes instead of 3001")]
        (latest / "d" / "big.bin.002").write_bytes(b"y" * 1000)
        assert checker.check([("d/big.bin", 3, 3000, sha)]) == [(0, readpool.MISMATCH)]
        (latest / "d" / "big.bin.003").unlink()
        assert checker.check([("d/big.bin", 3, 3000, sha)]) == [(0, "its content is missing from the drive")]
    finally:
        checker.close()


def test_the_pool_answers_in_order_and_ends_its_workers(tmp_path):
    latest = make_tree(tmp_path / "Latest", {f"d{i % 5}/f{i}": str(i).encode() for i in range(60)})
    items = [(f"d{i % 5}/f{i}", 0, len(str(i)), hashlib.sha256(str(i).encode()).hexdigest()) for i in range(60)]
    items[7] = (items[7][0], 0, items[7][2], "0" * 64)
    with readpool.HashPool(str(latest), 3) as pool:
        workers = psutil.Process().children()
        assert len(workers) == 3
        out = list(pool.map([items[i:i + 4] for i in range(0, 60, 4)]))
    assert [b for b, _ in out] == [items[i:i + 4] for i in range(0, 60, 4)]
    assert [p for _, p in out if p] == [[(3, readpool.MISMATCH)]]
    for w in workers:
        assert not w.is_running() or w.status() == psutil.STATUS_ZOMBIE


def test_a_batch_waiting_for_a_worker_that_ends_is_still_checked(tmp_path):
    """A fault, made likely: the one worker is killed while it is busy (each batch is a 64 MiB
    file), so the next batch finds it gone while waiting for room. That batch was once lost:
    verify would have reported the files in it as checked."""
    size = 64 << 20
    latest = tmp_path / "Latest"
    latest.mkdir()
    digest = hashlib.sha256(bytes(size)).hexdigest()
    batches = []
    for i in range(10):
        with open(latest / f"big{i}", "wb") as f:
            f.truncate(size)   # sparse: no disk, the same bytes (zeros) to hash
        batches.append([(f"big{i}", 0, size, digest)])
    batches[9] = [("big9", 0, size, "0" * 64)]   # the last batch has a finding: it must be reported
    with readpool.HashPool(str(latest), 1) as pool:
        answers = pool.map(batches)
        out = [next(answers)]
        psutil.Process().children()[0].kill()
        out += list(answers)
    assert [b for b, _ in out] == batches
    assert [p for _, p in out if p] == [[(0, readpool.MISMATCH)]]
    assert not psutil.Process().children()


def test_a_worker_that_ends_is_replaced_by_threads(tmp_path):
    """A fault: a worker process is killed while it has batches; every batch is still answered, in order."""
    latest = make_tree(tmp_path / "Latest", {f"d{i % 5}/f{i}": str(i).encode() for i in range(60)})
    items = [(f"d{i % 5}/f{i}", 0, len(str(i)), hashlib.sha256(str(i).encode()).hexdigest()) for i in range(60)]
    items[50] = (items[50][0], 0, 9, items[50][3])
    batches = [items[i:i + 4] for i in range(0, 60, 4)]
    with readpool.HashPool(str(latest), 2) as pool:
        answers = pool.map(batches)
        out = [next(answers)]
        psutil.Process().children()[0].kill()
        out += list(answers)
    assert [b for b, _ in out] == batches
    assert [p for _, p in out if p] == [[(2, "it has 2 bytes instead of 9")]]
    assert not psutil.Process().children()


def test_the_workers_words_for_a_non_regular_file_are_safeios():
    import stat

    from core.engine import safeio

    for mode in (stat.S_IFLNK, stat.S_IFDIR, stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK, 0):
        assert readpool._kind(mode) == safeio._kind(mode), oct(mode)
