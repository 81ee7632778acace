"""Small files of ``Latest/`` read a group at a time through io_uring (core/engine/readring.py,
core/engine/uring.py) find what the one-file-at-a-time reads find, in the same words.

Each case checks real files on disk twice with ``readpool.Checker``: with its group reader (the
ring) and without it (``Checker._one`` per file, as before), and the two answers must be equal;
the drive-read guarantee (each file's cache dropped before its read) is held by
test_verify_drive_read.py, whose reader processes read through the ring.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys

import pytest

from core.engine import readring, uring
from core.engine.readpool import MISMATCH, Checker


def _kernel_offers_io_uring() -> bool:
    """Asked of the kernel directly (io_uring_setup, 425), not through ``uring``: where the kernel
    gives a ring, these tests run, so an ``open_ring`` that broke fails them instead of skipping."""
    if not sys.platform.startswith("linux") or os.uname().machine not in ("x86_64", "aarch64"):
        return False   # (uring's reads are for these two: its docstring)
    import ctypes

    params = (ctypes.c_uint32 * 30)()   # (struct io_uring_params: 120 bytes)
    fd = ctypes.CDLL(None, use_errno=True).syscall(425, 4, ctypes.byref(params))
    if fd < 0:
        return False
    os.close(fd)
    return True


pytestmark = pytest.mark.skipif(not _kernel_offers_io_uring(), reason="the kernel gives no io_uring here "
                                "(another system or architecture, an old kernel, io_uring_disabled or a seccomp filter)")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def latest(tmp_path):
    """``Latest/`` with 40 small files in two folders, and their items (mirror, parts, size, SHA-256)."""
    root = tmp_path / "Latest"
    items = []
    for d in ("a", "b/c"):
        (root / d).mkdir(parents=True)
        for i in range(20):
            data = f"{d} {i} ".encode() * (i * 7 + 1)
            (root / d / f"n{i:02d}.txt").write_bytes(data)
            items.append((f"{d}/n{i:02d}.txt", 0, len(data), _sha(data)))
    return root, items


def _both(root, items) -> tuple[list, list]:
    """(problems through the ring, problems one file at a time); the ring was used."""
    ringed = Checker(str(root))
    plain = Checker(str(root))
    try:
        assert isinstance(ringed.group, readring.GroupReader)
        plain.group.close()
        plain.group = None
        return ringed.check(items), plain.check(items)
    finally:
        ringed.close()
        plain.close()


def test_the_ring_opens_where_the_kernel_offers_one():
    ring = uring.open_ring(4)
    assert ring is not None, "uring.open_ring gave no ring where io_uring_setup works"
    ring.close()


def test_intact_files_check_out_and_their_reads_go_through_the_ring(latest, monkeypatch):
    root, items = latest
    sent = []
    read = uring.Ring.read
    monkeypatch.setattr(uring.Ring, "read", lambda self, reqs: sent.append(len(reqs)) or read(self, reqs))
    assert _both(root, items) == ([], [])
    assert sent == [20, 20]   # each folder's files submitted together


def _damage(root, how: str) -> None:
    target = root / "a" / "n05.txt"
    if how == "byte":
        data = bytearray(target.read_bytes())
        data[3] ^= 1
        target.write_bytes(bytes(data))
    elif how == "missing":
        target.unlink()
    elif how == "longer":
        target.write_bytes(target.read_bytes() + b"more")
    elif how == "far longer":   # larger than a group's room: read alone
        target.write_bytes(b"x" * (readring.ROOM + 10))
    elif how == "shorter":
        target.write_bytes(b"x")
    elif how == "symlink":
        target.unlink()
        target.symlink_to(root / "a" / "n06.txt")
    elif how == "fifo":
        target.unlink()
        os.mkfifo(target)
    elif how == "folder":
        target.unlink()
        target.mkdir()
    elif how == "folder link":
        os.rename(root / "b", root / "b2")
        (root / "b").symlink_to(root / "b2")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX files")
@pytest.mark.parametrize("how", ["byte", "missing", "longer", "far longer", "shorter", "symlink", "fifo", "folder",
                                 "folder link"])
def test_a_damaged_file_is_reported_as_one_at_a_time_reports_it(latest, how):
    root, items = latest
    _damage(root, how)
    ringed, plain = _both(root, items)
    assert ringed == plain
    assert ringed, "the damage was not found"
    if how == "byte":
        assert ringed == [(5, MISMATCH)]
    if how == "folder link":
        assert [i for i, _ in ringed] == list(range(20, 40))


def test_split_files_large_files_and_sizes_only_go_the_old_way(latest):
    root, items = latest
    big = b"B" * (readring.LARGEST + 1)
    (root / "a" / "big.bin").write_bytes(big)
    (root / "a" / "split.bin.001").write_bytes(b"one")
    (root / "a" / "split.bin.002").write_bytes(b"two")
    more = [("a/big.bin", 0, len(big), _sha(big)), ("a/split.bin", 2, 6, _sha(b"onetwo")),
            ("a/n01.txt", 0, items[1][2], None), ("a/big.bin", 0, len(big), _sha(b"other"))]
    assert _both(root, items[:3] + more + items[3:]) == ([(6, MISMATCH)], [(6, MISMATCH)])


def test_a_ring_that_fails_leaves_each_file_read_alone(latest, monkeypatch):
    root, items = latest
    (root / "a" / "n07.txt").write_bytes(b"changed")

    def broken(self, reqs):
        self.close()
        raise OSError(errno.EIO, "io_uring_enter")

    monkeypatch.setattr(uring.Ring, "read", broken)
    checker = Checker(str(root))
    try:
        assert checker.check(items) == [(7, "it has 7 bytes instead of 200")]
        assert checker.group is not None and checker.group.ring.fd < 0
        assert checker.check(items) == [(7, "it has 7 bytes instead of 200")]   # then the old way
    finally:
        checker.close()


def test_an_interrupt_between_two_waits_ends_the_ring_and_keeps_its_buffer(latest, monkeypatch):
    """A KeyboardInterrupt raised between two io_uring_enter calls may leave reads in flight into the
    group's buffer: the ring is ended and the buffer kept for the process's life (never freed or
    reused while the kernel may still write into it); the interrupt reaches the caller."""
    root, items = latest
    checker = Checker(str(root))
    ring = checker.group.ring
    real = ring._syscall

    def interrupted(*args):
        real(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(ring, "_syscall", interrupted)
    room = checker.group.room
    try:
        with pytest.raises(KeyboardInterrupt):
            checker.check(items)
        assert ring.fd < 0 and any(kept is room for kept in readring._ABANDONED)
    finally:
        checker.close()


def test_the_ring_reads_each_descriptor_into_its_place(tmp_path):
    import ctypes

    fds = []
    for i, data in enumerate((b"first", b"", b"third file" * 100)):
        (tmp_path / str(i)).write_bytes(data)
        fds.append(os.open(tmp_path / str(i), os.O_RDONLY))
    room = bytearray(4096)
    base = ctypes.addressof(ctypes.c_char.from_buffer(room))
    ring = uring.open_ring(4)
    assert ring is not None
    try:
        got = ring.read([(fds[0], base, 10), (fds[1], base + 10, 10), (fds[2], base + 20, 2000), (-1, base, 1)])
        assert got == [5, 0, 1000, -errno.EBADF]
        assert room[:5] == b"first" and room[20:1020] == b"third file" * 100
        assert ring.read([(fds[0], base + 3000, 3)]) == [3]   # the ring is used again
        assert room[3000:3003] == b"fir"
    finally:
        ring.close()
        for fd in fds:
            os.close(fd)
