"""A plain set's restore reads its content below the set's folder only (core/engine/restore_ahead.py,
safeio.SetFolders): a folder in ``Latest/`` swapped for a symlink is not followed, for small files
and big ones; a content file longer than the manifest says is not read to its end (issue #11,
branch ``restore9``)."""

from __future__ import annotations

import os
import shutil

import pytest

from core.engine import fs, restore_ahead, safeio
from core.errors import DriveFileDamaged
from tests.support.engine import backup_path, restore_path
from tests.support.trees import make_tree

pytestmark = pytest.mark.skipif(not (restore_ahead.READS_AHEAD and safeio.SetFolders.USABLE),
                                reason="reads are started ahead, below descriptors, on Linux")

BIG = 4096   # restore_ahead.BIG_FILE in these tests
SECRET = b"not the backup's: a file outside the set " * 200   # (bigger than BIG)
TREE = {"a/one.txt": b"one", "a/two.txt": b"two", "sub/small.txt": b"top secret",
        "sub/big.bin": SECRET, "z/last.bin": b"L" * (BIG * 3)}
TREE.update({f"m/{i:03d}.txt": f"middle {i}".encode() for i in range(40)})


@pytest.fixture
def backed_up(tmp_path, monkeypatch):
    monkeypatch.setattr(restore_ahead, "BIG_FILE", BIG)
    src = make_tree(tmp_path / "Docs", TREE)
    set_path = tmp_path / "set"
    backup_path(set_path, [src], job="Docs")
    return src, set_path


def test_a_folder_in_latest_swapped_for_a_symlink_is_not_followed(backed_up, tmp_path):
    """The same names and bytes outside the set, reached through a symlink in place of Latest/Docs/sub:
    the restore read them before (the hashes matched) and restored what the link pointed to."""
    _, set_path = backed_up
    outside = make_tree(tmp_path / "outside", {"small.txt": b"top secret", "big.bin": SECRET})
    shutil.rmtree(set_path / "Latest" / "Docs" / "sub")
    os.symlink(outside, set_path / "Latest" / "Docs" / "sub")
    result = restore_path(set_path, tmp_path / "out")
    damaged = dict(result.damaged)
    assert sorted(damaged) == ["Docs/sub/big.bin", "Docs/sub/small.txt"]
    assert all("symbolic link" in why for why in damaged.values())
    assert not (tmp_path / "out" / "Docs" / "sub" / "small.txt").exists()
    assert not (tmp_path / "out" / "Docs" / "sub" / "big.bin").exists()
    assert (tmp_path / "out" / "Docs" / "a" / "one.txt").read_bytes() == b"one"


@pytest.mark.parametrize("rel", ["a/two.txt", "z/last.bin"], ids=["small", "big"])
def test_content_longer_than_the_manifest_says_is_not_read_to_its_end(backed_up, tmp_path, monkeypatch, rel):
    """A content file 8 MiB long where the manifest says a few bytes (or 12 KiB): at most its size and
    one byte are read (a file in /proc that never ends is no longer read forever)."""
    _, set_path = backed_up
    content = set_path / "Latest" / "Docs" / rel
    with open(content, "r+b") as f:
        f.truncate(8 << 20)
    reads: list[int] = []
    real = fs.read_into

    def counting(fd, buf):
        n = real(fd, buf)
        if os.fstat(fd).st_size == 8 << 20:
            reads.append(n)
        return n

    monkeypatch.setattr("core.engine.restore_file.read_into", counting)
    result = restore_path(set_path, tmp_path / "out")
    assert [p for p, _ in result.damaged] == [f"Docs/{rel}"]
    assert "does not match its checksum" in result.damaged[0][1]
    assert 0 < sum(reads) <= len(TREE[rel]) + 1


def test_set_folders_refuses_what_open_regular_refuses(tmp_path):
    root = make_tree(tmp_path / "set", {"d/e/f.txt": b"f", "d/g.txt": b"g", "h.txt": b"h"})
    os.mkfifo(root / "d" / "fifo")
    os.symlink(root / "d" / "e", root / "link")
    os.symlink(root / "h.txt", root / "d" / "hlink")
    folders = safeio.SetFolders(str(root), kept=2)   # (folders closed and opened again on the way)
    try:
        for rel, want in (("d/e/f.txt", b"f"), ("d/g.txt", b"g"), ("h.txt", b"h"), ("d/e/f.txt", b"f")):
            fd = folders.open(f"{root}/{rel}")
            assert os.read(fd, 10) == want
            os.close(fd)
        with pytest.raises(DriveFileDamaged, match="FIFO"):
            folders.open(f"{root}/d/fifo")
        with pytest.raises(DriveFileDamaged, match="folder 'link' on its way is a symbolic link"):
            folders.open(f"{root}/link/f.txt")
        with pytest.raises(DriveFileDamaged, match="symbolic link"):
            folders.open(f"{root}/d/hlink")
        with pytest.raises(FileNotFoundError):
            folders.open(f"{root}/d/missing.txt")
        with pytest.raises(FileNotFoundError):
            folders.open(f"{root}/h.txt/under-a-file")
        with pytest.raises(DriveFileDamaged, match="not inside the set"):
            folders.open(f"{tmp_path}/elsewhere.txt")
    finally:
        folders.close()


def test_a_full_disk_is_told_as_the_file_that_could_not_be_written(tmp_path):
    """On a full disk the folders' spool could not flush when it was closed: its ENOSPC replaced the
    restore's own message ("Cannot write ...: No space left on device") with a traceback (seen in
    this branch's benchmark when the disk filled)."""
    from core.engine.restore_dirs import DirSpool
    from core.errors import UsageError

    class Full:
        def __init__(self, f):
            self.f = f

        def close(self):
            self.f.close()
            raise OSError(28, "No space left on device")

    spool = DirSpool()
    spool._f = Full(spool._f)
    with pytest.raises(UsageError, match="Cannot write"):
        with spool:
            raise UsageError("Cannot write x: No space left on device. Check the restore folder.")
    spool = DirSpool()
    spool._f = Full(spool._f)
    with pytest.raises(OSError, match="No space"):
        with spool:
            pass
