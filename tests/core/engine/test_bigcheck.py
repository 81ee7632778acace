"""A big file's copy read back from the drive as soon as it is written (core/engine/bigcheck.py,
issue #11): proven copies leave the read-back after the commit; anything in doubt stays in it."""

from __future__ import annotations

import hashlib
import os

import pytest

from core.engine import bigcheck, readback
from tests.support.engine import backup_path, verify_path
from tests.support.trees import make_tree, read_tree

pytestmark = pytest.mark.skipif(not bigcheck.ENABLED, reason="cached pages are dropped on Linux only")

BIG = 2 * bigcheck.EARLY_BYTES


def _spec() -> dict[str, bytes]:
    spec = {f"small/f{i:02}.txt": b"small %d" % i for i in range(40)}
    spec.update({"big/a.bin": os.urandom(BIG), "big/b.bin": os.urandom(BIG + 12345)})
    return spec


def _spy(monkeypatch) -> tuple[dict[str, bool], list[str]]:
    """(what each early check said, by size; the paths the read-back after the commit checked)."""
    early: dict[str, bool] = {}
    late: list[str] = []
    real_check, real_written = bigcheck.read_back_now, readback._written

    def check(paths, size, sha256):
        early[sha256] = ok = real_check(paths, size, sha256)
        return ok

    def written(run):
        for e, se in real_written(run):
            late.append(e.path)
            yield e, se

    monkeypatch.setattr(bigcheck, "read_back_now", check)
    monkeypatch.setattr(readback, "_written", written)
    return early, late


def test_a_written_copy_reads_back_and_nothing_else_does(tmp_path):
    data = os.urandom(3 * bigcheck.EARLY_BYTES + 7)
    sha = hashlib.sha256(data).hexdigest()
    (tmp_path / "copy").write_bytes(data)
    one = [str(tmp_path / "copy")]
    assert bigcheck.read_back_now(one, len(data), sha)
    assert not bigcheck.read_back_now(one, len(data), "0" * 64)          # another hash
    assert not bigcheck.read_back_now(one, len(data) + 1, sha)           # another size
    (tmp_path / "p1").write_bytes(data[:1000])
    (tmp_path / "p2").write_bytes(data[1000:])
    assert bigcheck.read_back_now([str(tmp_path / "p1"), str(tmp_path / "p2")], len(data), sha)   # in parts
    os.symlink(tmp_path / "copy", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    for bad in ("link", "fifo", "missing"):   # never followed, never waited on, never an error
        assert not bigcheck.read_back_now([str(tmp_path / bad)], len(data), sha), bad
    assert not bigcheck.read_back_now([], 0, hashlib.sha256(b"").hexdigest())


def test_writeback_is_started_every_so_many_bytes_written(tmp_path, monkeypatch):
    """The sink asks the OS to write the copy's pages out as it goes (small files: never)."""
    started: list[int] = []
    monkeypatch.setattr(bigcheck, "WRITEBACK_EVERY", 1 << 20)
    monkeypatch.setattr(bigcheck, "start_writeback", started.append)
    spec = {"big.bin": os.urandom((3 << 20) + 500), "small.txt": b"x" * 1000}
    src = make_tree(tmp_path / "src" / "Data", spec)
    r = backup_path(tmp_path / "set", [src])
    assert r.status == "ok" and not r.damaged
    assert len(started) == 3 and all(type(fd) is int for fd in started)   # 1, 2 and 3 MiB into big.bin
    assert read_tree(tmp_path / "set" / "Latest" / "Data") == read_tree(src)


def test_big_copies_are_read_back_as_written_and_left_out_of_the_read_back_after_the_commit(tmp_path, monkeypatch):
    early, late = _spy(monkeypatch)
    spec = _spec()
    src = make_tree(tmp_path / "src" / "Data", spec)
    r = backup_path(tmp_path / "set", [src])
    assert r.status == "ok" and not r.damaged and r.files_copied == len(spec)
    big = {hashlib.sha256(spec[k]).hexdigest() for k in ("big/a.bin", "big/b.bin")}
    assert early == dict.fromkeys(big, True)   # only the big ones, both proven
    assert sorted(late) == sorted(f"Data/{k}" for k in spec if k.startswith("small/"))
    assert read_tree(tmp_path / "set" / "Latest" / "Data") == read_tree(src)
    monkeypatch.undo()
    assert verify_path(tmp_path / "set", read_all=True).ok


def test_a_big_copy_damaged_before_its_check_stays_in_the_read_back_and_is_copied_again(tmp_path, monkeypatch):
    """The drive's copy is changed between its write and its early check: the check says no, so the
    read-back after the commit checks it, finds it wrong and copies it again from the source."""
    early, late = _spy(monkeypatch)
    check = bigcheck.read_back_now

    def damage_then_check(paths, size, sha256):
        with open(paths[0], "r+b") as f:
            f.seek(1000)
            byte = f.read(1)
            f.seek(1000)
            f.write(bytes([byte[0] ^ 0xFF]))
        return check(paths, size, sha256)

    monkeypatch.setattr(bigcheck, "read_back_now", damage_then_check)
    spec = _spec()
    src = make_tree(tmp_path / "src" / "Data", spec)
    r = backup_path(tmp_path / "set", [src])
    assert r.status == "ok" and not r.damaged, r.damaged
    assert list(early.values()) == [False, False]
    assert {"Data/big/a.bin", "Data/big/b.bin"} <= set(late)
    assert read_tree(tmp_path / "set" / "Latest" / "Data") == read_tree(src)   # the repair's copies
    monkeypatch.undo()
    assert verify_path(tmp_path / "set", read_all=True).ok


def test_without_the_read_back_nothing_is_checked_early(tmp_path, monkeypatch):
    early, _ = _spy(monkeypatch)
    src = make_tree(tmp_path / "src" / "Data", _spec())
    r = backup_path(tmp_path / "set", [src], verify=False)
    assert r.status == "ok" and early == {}
