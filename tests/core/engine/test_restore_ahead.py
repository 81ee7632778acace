"""A plain local set's restore on Linux (core/engine/restore_ahead.py): small files opened in the
restoring thread, their reads started ahead, and written by two writer threads; big files in two
worker threads; every file still checked before it is renamed into place (issue #11)."""

from __future__ import annotations

import errno
import os
import sys
import threading

import pytest

from core.engine import restore_ahead, restore_file
from core.engine.progress import CancelToken
from core.engine.restore import OnConflict
from core.errors import Cancelled, UsageError
from tests.support.engine import backup_path, open_set, restore_path
from tests.support.trees import make_tree, read_tree

pytestmark = pytest.mark.skipif(not restore_ahead.READS_AHEAD, reason="reads are started ahead on Linux only")

BIG = 4096   # files this big go to the workers in these tests (restore_ahead.BIG_FILE is patched down)
TREE = {f"small/{i:03d}.txt": f"small file {i}".encode() * (i % 7 + 1) for i in range(150)}
TREE.update({f"big/{i}.bin": bytes([i]) * (BIG + i * 1000) for i in range(9)})
TREE.update({"mixed/a.txt": b"alpha", "mixed/b.bin": b"b" * (BIG * 3), "mixed/c.txt": b"charlie"})


@pytest.fixture
def backed_up(tmp_path, monkeypatch):
    monkeypatch.setattr(restore_ahead, "BIG_FILE", BIG)
    src = make_tree(tmp_path / "Docs", TREE)
    os.chmod(src / "mixed" / "a.txt", 0o600)
    os.utime(src / "big" / "3.bin", ns=(1_500_000_000_123_456_789,) * 2)
    set_path = tmp_path / "set"
    backup_path(set_path, [src], job="Docs")
    return src, set_path


def _latest(set_path, rel: str):
    return set_path / "Latest" / "Docs" / rel


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _names(folder) -> dict[str, bytes]:
    """Every file under ``folder`` with a name, and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_plain_local_set_is_restored_this_way_with_few_threads(backed_up, tmp_path):
    src, set_path = backed_up
    assert restore_ahead.usable(open_set(set_path))
    threads: list[int] = []
    result = restore_path(set_path, tmp_path / "out", progress=lambda p: threads.append(threading.active_count()))
    assert result.files_restored == len(TREE) and not result.damaged
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)
    assert max(threads) <= threading.active_count() + restore_ahead.BIG_WORKERS + restore_ahead.WRITERS
    for rel in ("mixed/a.txt", "big/3.bin", "small/005.txt"):
        want, got = os.stat(src / rel), os.stat(tmp_path / "out" / "Docs" / rel)
        assert (got.st_mode, got.st_mtime_ns) == (want.st_mode, want.st_mtime_ns)


def test_damaged_and_missing_content_small_and_big_is_not_restored(backed_up, tmp_path):
    src, set_path = backed_up
    _latest(set_path, "small/010.txt").write_bytes(b"not what was backed up")
    _latest(set_path, "big/2.bin").write_bytes(b"x" * (BIG + 2000))   # the right size, the wrong bytes
    _latest(set_path, "small/020.txt").unlink()
    _latest(set_path, "big/5.bin").unlink()
    result = restore_path(set_path, tmp_path / "out")
    damaged = dict(result.damaged)
    assert sorted(damaged) == ["Docs/big/2.bin", "Docs/big/5.bin", "Docs/small/010.txt", "Docs/small/020.txt"]
    assert "does not match its checksum" in damaged["Docs/small/010.txt"]
    assert "does not match its checksum" in damaged["Docs/big/2.bin"]
    assert "missing" in damaged["Docs/small/020.txt"] and "missing" in damaged["Docs/big/5.bin"]
    out = tmp_path / "out" / "Docs"
    for rel in ("small/010.txt", "big/2.bin", "small/020.txt", "big/5.bin"):
        assert not (out / rel).exists()
    assert result.files_restored == len(TREE) - 4
    assert [p.name for p in out.rglob(".plugback-restore-*")] == []   # no temporary file left
    assert (out / "small" / "011.txt").read_bytes() == TREE["small/011.txt"]


def test_a_symlink_in_place_of_small_content_is_not_followed(backed_up, tmp_path):
    _, set_path = backed_up
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"small file 30" * 3)   # even the right bytes: never read through a link
    _latest(set_path, "small/030.txt").unlink()
    _latest(set_path, "small/030.txt").symlink_to(secret)
    result = restore_path(set_path, tmp_path / "out")
    assert [p for p, _ in result.damaged] == ["Docs/small/030.txt"]
    assert "symbolic link" in result.damaged[0][1]
    assert not (tmp_path / "out" / "Docs" / "small" / "030.txt").exists()


def test_a_kept_name_is_looked_for_after_the_files_before_it_are_written(tmp_path, monkeypatch):
    """"x (restored).txt" sorts before "x.txt": still waiting to be written when x.txt, in the way of
    the user's own x.txt, looks for a free name. It must not take the waiting file's name."""
    monkeypatch.setattr(restore_ahead, "BIG_FILE", BIG)
    src = make_tree(tmp_path / "Docs", {"x (restored).txt": b"its own file", "x.txt": b"backed up x",
                                        "y (restored).bin": b"b" * BIG, "y.bin": b"backed up y"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src], job="Docs")
    mine = make_tree(tmp_path / "out" / "Docs", {"x.txt": b"mine", "y.bin": b"mine too"})
    result = restore_path(set_path, tmp_path / "out", on_conflict=OnConflict.KEEP_BOTH)
    assert result.kept_both == 2 and not result.damaged
    assert read_tree(mine) == {"x.txt": b"mine", "x (restored).txt": b"its own file",
                               "x (restored 2).txt": b"backed up x", "y.bin": b"mine too",
                               "y (restored).bin": b"b" * BIG, "y (restored 2).bin": b"backed up y"}


def test_no_descriptor_is_left_open_when_a_restore_stops_halfway(backed_up, tmp_path, monkeypatch):
    _, set_path = backed_up
    monkeypatch.setattr(restore_ahead, "AHEAD", 64)   # fewer than the tree's small files: some still to open
    before = _open_fds()
    token = CancelToken()
    seen = []

    def progress(p):
        seen.append(p)
        if len(seen) == 40:   # small files opened ahead and big ones handed out are waiting now
            token.cancel()

    with pytest.raises(Cancelled):
        restore_path(set_path, tmp_path / "out", progress=progress, cancel=token)
    assert _open_fds() == before
    assert len(seen) < len(TREE)


@pytest.mark.skipif(sys.platform == "win32", reason="no RLIMIT_NOFILE on Windows")
def test_the_read_ahead_stays_within_a_quarter_of_the_open_file_limit():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))   # (macOS's default soft limit)
        assert restore_ahead._ahead() == 64
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard) if hard == resource.RLIM_INFINITY or hard >= 4096
                           else (hard, hard))
        assert restore_ahead._ahead() == min(256, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_error_in_the_writer_thread_stops_the_restore_with_no_descriptor_open(backed_up, tmp_path, monkeypatch):
    _, set_path = backed_up
    monkeypatch.setattr(restore_ahead, "AHEAD", 64)   # fewer than the tree's files: some handed, some opened
    real_write, writes = os.write, []

    def full_disk_on_the_50th_write(fd, data):
        writes.append(fd)
        if len(writes) == 50:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(restore_file.os, "write", full_disk_on_the_50th_write)
    before = _open_fds()
    with pytest.raises(UsageError, match="No space left"):
        restore_path(set_path, tmp_path / "out")
    assert _open_fds() == before
    named = _names(tmp_path / "out")
    assert 0 < len(named) < len(TREE)
    assert all(data == TREE[rel.removeprefix("Docs/")] for rel, data in named.items())


def test_no_more_small_files_are_open_at_once_than_the_read_ahead_allows(backed_up, tmp_path, monkeypatch):
    _, set_path = backed_up
    monkeypatch.setattr(restore_ahead, "AHEAD", 64)
    base = len(_open_fds())
    most = []
    real_open = restore_file.open_ahead

    def counting(paths, *rest):
        most.append(len(_open_fds()) - base)
        return real_open(paths, *rest)

    monkeypatch.setattr(restore_ahead, "open_ahead", counting)
    result = restore_path(set_path, tmp_path / "out")
    assert result.files_restored == len(TREE)
    # the files opened ahead, handed to the writer or waiting here; a few more for the restore's own
    # files (the manifest, the spools, a file being written, the set's lock)
    assert max(most) <= 64 + 8


def test_small_files_are_still_opened_ahead_under_a_low_descriptor_limit(backed_up, tmp_path, monkeypatch):
    """With 64 descriptors to spend (a quarter of a soft limit of 256), half go to the files opened
    and waiting: the first small file is written only once 32 are open."""
    _, set_path = backed_up
    monkeypatch.setattr(restore_ahead, "AHEAD", 64)
    opened: list[int] = []
    at_first_write: list[int] = []
    real_open, real_write = restore_ahead.open_ahead, restore_ahead.write_file

    def counting_open(paths, *rest):
        opened.append(1)
        return real_open(paths, *rest)

    def first_write(*args, **kwargs):
        if not at_first_write and args[1].size < BIG:   # (a big file's write, in a worker, may come first)
            at_first_write.append(len(opened))
        return real_write(*args, **kwargs)

    monkeypatch.setattr(restore_ahead, "open_ahead", counting_open)
    monkeypatch.setattr(restore_ahead, "write_file", first_write)
    result = restore_path(set_path, tmp_path / "out")
    assert result.files_restored == len(TREE) and not result.damaged
    assert at_first_write[0] >= 32
