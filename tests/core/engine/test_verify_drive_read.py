"""``verify --read-all`` reads the drive, never a cached page (issue #11, branch ``readall10``).

A real ext4 file system on a loop device: a ``Latest/`` file is read once (its page is then
in the mounted file system's cache), then one byte of it is changed in the drive's image
beneath the mount, where only a read of the device sees it. The page still cached holds the
old, matching bytes: a verify that hashed the cache would call the damaged file verified.
Both ways ``Latest/`` is read are held to it: the reader processes (readpool, from
``verify_latest.POOL_FROM`` files) and the checks in threads.
"""

from __future__ import annotations

import os

import pytest

from core.engine import verify_latest
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

