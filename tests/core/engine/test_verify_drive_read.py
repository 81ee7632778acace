"""``verify --read-all`` reads the drive, never a cached page (issue #11, branch ``readall10``).

A real ext4 file system on a loop device: a ``Latest/`` file is read once (its page is then
in the mounted file system's cache), then one byte of it is changed in the drive's image
beneath the mount, where only a read of the device sees it. The page still cached holds the
old, matching bytes: a verify that hashed the cache would call the damaged file verified.
Both ways ``Latest/`` is read are held to it: the reader processes (readpool, from
``verify_latest.POOL_FROM`` files) and the checks in threads.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys

import pytest

from core.engine import readpool, verify_latest
from core.engine.readpool import MISMATCH
from tests.support.engine import backup_path, verify_path
from tests.support.trees import make_tree

MARK = b"readall10-" + os.urandom(16).hex().encode()   # found once in the image: the file's block


def _change_beneath(image, path) -> None:
    """``path``'s first byte changed in the drive's ``image`` (the device), not through the mount."""
    with open(path, "rb") as f:   # its page cached now, with the old bytes
        assert f.read().startswith(MARK)
    os.sync()
    data = image.read_bytes()
    at = data.find(MARK)
    assert at >= 0 and data.find(MARK, at + 1) < 0, "the file's block is not found once in the image"
    with open(image, "r+b") as img:
        img.seek(at)
        img.write(b"R")
        img.flush()
        os.fsync(img.fileno())
    with open(path, "rb") as f:   # the mount still answers from its cache: the old byte
        assert f.read(1) == MARK[:1], "the page was not cached: this test proves nothing here"


@pytest.mark.parametrize("pooled", [True, False], ids=["reader processes", "threads"])
def test_read_all_fails_a_byte_changed_on_the_drive_beneath_a_cached_page(ext4_drive, tmp_path, monkeypatch,
                                                                         pooled):
    src = make_tree(tmp_path / "src" / "Data", {"a.bin": MARK + b"x" * 3000, "b.txt": b"other"})
    set_path = ext4_drive.mount_point / "set"
    backup_path(set_path, [src])
    monkeypatch.setattr(verify_latest, "POOL_FROM", 0 if pooled else 10 ** 9)
    assert verify_path(set_path, read_all=True).ok
    _change_beneath(ext4_drive.image, set_path / "Latest" / "Data" / "a.bin")
    result = verify_path(set_path, read_all=True)
    assert not result.ok
    assert result.damaged == [("Latest/Data/a.bin", MISMATCH)]


@pytest.fixture
def nodev(tmp_path):
    """A folder on a file system mounted ``nodev`` (as desktops mount a USB drive): a tmpfs."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a nodev tmpfs needs Linux and root")
    where = tmp_path / "nodev"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "nodev,size=8m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


GOOD = b"good bytes " * 40


def _odd_tree(latest):
    """Latest/d/ with a good file, a changed one and one of each thing verify must not read."""
    d = latest / "d"
    d.mkdir(parents=True)
    (d / "good").write_bytes(GOOD)
    (d / "changed").write_bytes(b"X" + GOOD[1:])
    os.mkfifo(d / "fifo")
    (d / "link").symlink_to(d / "good")
    (d / "folder").mkdir()
    os.mknod(d / "device", 0o600 | stat.S_IFCHR, os.makedev(1, 3))   # (/dev/null's numbers)
    sha = hashlib.sha256(GOOD).hexdigest()
    return [(f"d/{n}", 0, len(GOOD), sha) for n in ("good", "changed", "fifo", "link", "folder", "device", "gone")]


def test_on_a_nodev_mount_a_file_is_opened_without_an_lstat_and_the_report_is_the_same(nodev, tmp_path, monkeypatch):
    """The ``lstat`` before each open is left out where the kernel opens no device node; what is found, and its
    words, are those of a folder where it is not (a device there is never opened: the lstat stops it)."""
    assert readpool.BY_FD
    reports = {}
    for name, latest in (("nodev", nodev / "Latest"), ("dev", tmp_path / "dev" / "Latest")):
        items = _odd_tree(latest)
        checker = readpool.Checker(str(latest))
        try:
            reports[name] = [(i, why.replace(str(latest), "LATEST")) for i, why in checker.check(items)]
            assert _stat_calls(checker, items[0], monkeypatch) == (0 if name == "nodev" else 1)
            assert checker.folder.nodev == (name == "nodev")
        finally:
            checker.close()
    assert reports["nodev"] == reports["dev"]
    words = dict(reports["nodev"])
    assert words[1] == readpool.MISMATCH and words[6] == readpool.MISSING
    for i, kind in ((2, "a named pipe (FIFO)"), (3, "a symbolic link"), (4, "a folder"), (5, "a device")):
        assert f"LATEST{os.sep}d{os.sep}{_odd_name(i)}: it is {kind}, not a regular file." in words[i], words[i]


def _odd_name(i: int) -> str:
    return ("good", "changed", "fifo", "link", "folder", "device", "gone")[i]


def _stat_calls(checker, item, monkeypatch) -> int:
    """How many ``os.stat`` calls the checker makes for the good file ``item`` (found good)."""
    calls = []
    real = os.stat

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(os, "stat", counted)
    try:
        assert checker.check([item]) == []
    finally:
        monkeypatch.undo()
    return len(calls)
