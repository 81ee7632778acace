"""A source file swapped for a symbolic link or junction is never followed on Windows either
(core/engine/winopen.py, core/engine/source_open.py).

The Windows branch runs here through a fake of kernel32 and msvcrt backed by real files
(tests/support/winopen_fake.py): a real symlink is what Windows reports as a reparse point with
the symlink tag, a real file a normal one. The old code opened a source on Windows with
``os.open`` and no ``O_NOFOLLOW`` (Windows has none): a link's target was read as the file.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import sys

import pytest

from core.engine import safeio, sealpool, store, winopen
from core.engine.progress import WarningCode
from core.engine.remote import ahead as remote_ahead
from core.engine.winattrs import is_locked
from core.errors import DriveFileDamaged, refused_symlink
from tests.support.engine import backup_path, verify_path
from tests.support.trees import make_tree
from tests.support.winopen_fake import FakeKernel, windows_opens

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fake's handles are Linux descriptors")
SECRET = b"a secret of 19 byte"   # (the same size as the file it stands in for)
REPARSE = winopen.FILE_FLAG_OPEN_REPARSE_POINT


def _secret(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    return secret


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 1000)
    finally:
        os.close(fd)


def test_a_regular_file_opens_and_its_bytes_read(tmp_path):
    (tmp_path / "notes.txt").write_bytes(b"my notes")
    k = FakeKernel()
    assert _read(winopen.open_no_follow(str(tmp_path / "notes.txt"), k)) == b"my notes"
    assert k.handles == {} and k.closed == 0   # (the descriptor took the one handle, and is closed)
    assert [flags & REPARSE for _, flags in k.opens] == [REPARSE]   # one open, the link not followed


@pytest.mark.parametrize("kind", ["file symlink", "folder symlink", "junction"])
def test_a_link_is_refused_with_eloop_and_its_handle_closed(tmp_path, kind):
    """The old code (os.open, no O_NOFOLLOW on Windows) opened the link's target."""
    target = _secret(tmp_path) if kind == "file symlink" else tmp_path / "elsewhere"
    if kind != "file symlink":
        target.mkdir()
    link = tmp_path / "was-a-file"
    link.symlink_to(target)
    k = FakeKernel(tags={link: winopen.IO_REPARSE_TAG_MOUNT_POINT} if kind == "junction" else None)
    with pytest.raises(OSError) as refused:
        winopen.open_no_follow(str(link), k)
    assert refused.value.errno == errno.ELOOP and refused_symlink(refused.value)
    assert k.handles == {} and k.closed == 1


@pytest.mark.parametrize("tag", [winopen.IO_REPARSE_TAG_CLOUD, 0x9000601A, winopen.IO_REPARSE_TAG_DEDUP])
def test_a_placeholder_or_deduplicated_file_is_read_through_its_filter(tmp_path, tag):
    """A reparse point that is no name surrogate (OneDrive placeholders, deduplicated files) is an
    ordinary file to its user: opened again without the flag, its bytes are the filter's."""
    path = tmp_path / "report.docx"
    path.write_bytes(b"the report")
    k = FakeKernel(tags={path: tag})
    assert _read(winopen.open_no_follow(str(path), k)) == b"the report"
    assert [flags & REPARSE for _, flags in k.opens] == [REPARSE, 0]
    assert k.handles == {} and k.closed == 1   # (the first handle)


def test_a_placeholder_swapped_for_a_link_between_its_two_opens_is_not_followed(tmp_path):
    path = tmp_path / "report.docx"
    path.write_bytes(b"the report")
    secret = _secret(tmp_path)

    def swap(where, flags):
        if not flags & REPARSE and not path.is_symlink():
            path.unlink()
            path.symlink_to(secret)

    k = FakeKernel(tags={path: winopen.IO_REPARSE_TAG_CLOUD}, before_open=swap)
    with pytest.raises(OSError) as refused:
        winopen.open_no_follow(str(path), k)
    assert refused_symlink(refused.value)
    assert [flags & REPARSE for _, flags in k.opens] == [REPARSE, 0, REPARSE]   # then tried again: a link
    assert k.handles == {} and k.closed == 3


def test_a_name_that_keeps_changing_is_refused_after_a_few_tries(tmp_path):
    path = tmp_path / "report.docx"
    path.write_bytes(b"the report")

    def swap(where, flags):
        if not flags & REPARSE:   # another file renamed over it before every second open
            (tmp_path / "new").write_bytes(b"another one")
            os.replace(tmp_path / "new", path)

    k = FakeKernel(tags={path: winopen.IO_REPARSE_TAG_CLOUD}, before_open=swap)
    with pytest.raises(OSError) as refused:
        winopen.open_no_follow(str(path), k)
    assert refused.value.errno == errno.ELOOP and len(k.opens) == 2 * winopen.TRIES
    assert k.handles == {}


def test_a_file_another_program_holds_is_a_sharing_violation(tmp_path):
    path = tmp_path / "mail.pst"
    path.write_bytes(b"x")
    k = FakeKernel(locked=[path])
    with pytest.raises(PermissionError) as locked:
        winopen.open_no_follow(str(path), k)
    assert locked.value.winerror == 32 and is_locked(locked.value) and locked.value.filename == str(path)
    assert k.handles == {}


@pytest.mark.parametrize("where", ["gone.txt", "gone/notes.txt"])
def test_a_missing_file_is_file_not_found(tmp_path, where):
    with pytest.raises(FileNotFoundError):
        winopen.open_no_follow(str(tmp_path / where), FakeKernel())


def test_a_folder_is_not_read_as_a_file(tmp_path):
    (tmp_path / "folder").mkdir()
    k = FakeKernel()
    with pytest.raises(IsADirectoryError):
        winopen.open_no_follow(str(tmp_path / "folder"), k)
    assert k.handles == {} and k.closed == 1


def test_a_file_system_without_tag_queries_opens_files_as_they_are(tmp_path):
    """FAT32 and exFAT have no reparse points (CPython's os.stat reads the same errors so)."""
    (tmp_path / "photo.jpg").write_bytes(b"jpeg")
    assert _read(winopen.open_no_follow(str(tmp_path / "photo.jpg"), FakeKernel(no_tag_info=True))) == b"jpeg"


def test_a_handle_the_c_runtime_refuses_is_closed(tmp_path):
    (tmp_path / "notes.txt").write_bytes(b"x")

    class Full(FakeKernel):
        def open_osfhandle(self, handle, flags):
            raise OSError(errno.EMFILE, "Too many open files")

    k = Full()
    with pytest.raises(OSError):
        winopen.open_no_follow(str(tmp_path / "notes.txt"), k)
    assert k.handles == {} and k.closed == 1


_windows_opens = windows_opens   # (tests/support/winopen_fake.py)


def test_the_copy_the_seal_worker_and_the_remote_reader_refuse_a_symlink_on_windows(tmp_path, monkeypatch):
    link = tmp_path / "notes.txt"
    link.symlink_to(_secret(tmp_path))
    k = FakeKernel()
    _windows_opens(monkeypatch, k)
    mtime = os.stat(link).st_mtime_ns
    for read in (lambda: store.read_source(str(link), io.BytesIO(), hashlib.sha256(), len(SECRET), mtime),
                 lambda: store.read_whole(str(link), len(SECRET), mtime),
                 lambda: remote_ahead.read_content(str(link), len(SECRET), lambda _: None)):
        with pytest.raises(OSError) as refused:
            read()
        assert refused_symlink(refused.value)
    assert sealpool.Worker._open(str(link)) is None   # (the run reads it itself, and refuses it)
    assert len(k.opens) == 4 and k.handles == {}


def test_a_source_swapped_for_a_symlink_after_the_scan_keeps_its_previous_version_on_windows(tmp_path, monkeypatch):
    """The whole backup on the Windows branch: the old code stored the secret's bytes as the file's."""
    spec = {f"f{i:03}.txt": b"content %03d 19 byte" % i for i in range(30)}
    src = make_tree(tmp_path / "src" / "Data", spec)
    assert backup_path(tmp_path / "set", [src]).status == "ok"
    victim = src / "f010.txt"
    victim.write_bytes(b"changed 010 19 byte")   # (read again by the next run)
    secret = _secret(tmp_path)

    def swap(path, flags):
        if path == str(victim) and not victim.is_symlink():
            victim.unlink()
            victim.symlink_to(secret)

    k = FakeKernel(before_open=swap)
    _windows_opens(monkeypatch, k)
    r = backup_path(tmp_path / "set", [src])
    copy = tmp_path / "set" / "Latest" / "Data" / "f010.txt"
    assert copy.read_bytes() == spec["f010.txt"], "the symlink was followed"   # the previous version
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.KEPT_PREVIOUS, str(victim))]
    assert "became a symbolic link after it was scanned" in r.warnings[0].message
    assert any(path == str(victim) for path, _ in k.opens) and k.handles == {}
    monkeypatch.undo()
    assert verify_path(tmp_path / "set", read_all=True).ok


def test_a_drive_file_swapped_for_a_symlink_after_its_check_is_refused_on_windows(tmp_path):
    """safeio's Windows branch checked the name with lstat and then opened it by path (a window the
    old code left open); now the open itself refuses the link."""
    meta = tmp_path / "set" / "meta.json"
    meta.parent.mkdir()
    meta.write_bytes(b"{}")
    secret = _secret(tmp_path)

    def swap(path, flags):
        meta.unlink()
        meta.symlink_to(secret)

    assert _read(safeio._open_windows(str(meta), meta.parent, DriveFileDamaged, FakeKernel())) == b"{}"
    k = FakeKernel(before_open=swap)
    with pytest.raises(OSError) as refused:
        safeio._open_windows(str(meta), meta.parent, DriveFileDamaged, k)
    assert refused_symlink(refused.value) and k.handles == {}


def _set_with_folder(tmp_path):
    """A set's file two folders down, and an outside folder holding a file of the same name."""
    root = tmp_path / "set"
    (root / "objects" / "ab").mkdir(parents=True)
    inside = root / "objects" / "ab" / "cd"
    inside.write_bytes(b"the set's own")
    outside = tmp_path / "elsewhere" / "ab"
    outside.mkdir(parents=True)
    (outside / "cd").write_bytes(SECRET)
    return root, inside, outside


def test_a_drive_folder_swapped_for_a_link_after_its_check_is_refused_on_windows(tmp_path):
    """safeio's Windows branch checked each folder on the way with lstat and opened the file by
    path: a folder swapped for a link (a junction on Windows) in between was followed, and a file
    from outside the set was read. Now the handle's final path must be the root's plus the names:
    the open is refused, the handle closed."""
    root, inside, outside = _set_with_folder(tmp_path)

    def swap(path, flags):
        if path.endswith("cd"):
            (root / "objects" / "ab").rename(tmp_path / "moved")
            (root / "objects" / "ab").symlink_to(outside)

    k = FakeKernel(before_open=swap)
    with pytest.raises(DriveFileDamaged) as refused:
        safeio._open_windows(str(inside), root, DriveFileDamaged, k)
    assert "a folder on its way became a symbolic link or junction" in str(refused.value)
    assert k.handles == {}
    (root / "objects" / "ab").unlink()
    (tmp_path / "moved").rename(root / "objects" / "ab")
    k = FakeKernel()
    assert _read(safeio._open_windows(str(inside), root, DriveFileDamaged, k)) == b"the set's own"
    assert k.final_paths == 2   # (the root's and the file's)


def test_a_root_reached_through_a_link_still_opens_its_files_on_windows(tmp_path):
    """The root is trusted and may itself be reached through a link (a drive mounted in a folder):
    its own final path is what its files' must start with, not the name it was given."""
    real_root, inside, _ = _set_with_folder(tmp_path)
    alias = tmp_path / "alias"
    alias.symlink_to(real_root)
    k = FakeKernel()
    path = alias / "objects" / "ab" / "cd"
    assert _read(safeio._open_windows(str(path), alias, DriveFileDamaged, k)) == b"the set's own"
    assert k.handles == {}


def test_where_final_paths_cannot_be_had_files_open_unchecked_as_before(tmp_path):
    """A file system that cannot say where a handle's file is (GetFinalPathNameByHandleW fails):
    nothing to compare, so the file opens as it did before the check existed; a link present at
    the check is still refused by the lstat of each folder."""
    root, inside, outside = _set_with_folder(tmp_path)
    k = FakeKernel(no_final_path=True)
    assert _read(safeio._open_windows(str(inside), root, DriveFileDamaged, k)) == b"the set's own"
    (root / "objects" / "ab").rename(tmp_path / "moved")
    (root / "objects" / "ab").symlink_to(outside)
    with pytest.raises(DriveFileDamaged, match="symbolic link or junction"):
        safeio._open_windows(str(inside), root, DriveFileDamaged, k)


def test_a_placeholder_below_a_root_is_checked_where_it_really_is_on_windows(tmp_path):
    """A cloud placeholder is opened twice (itself, then through its filter): the second handle, the
    one read, is the one whose final path is checked."""
    root, inside, _ = _set_with_folder(tmp_path)
    k = FakeKernel(tags={str(inside): winopen.IO_REPARSE_TAG_CLOUD})
    assert _read(safeio._open_windows(str(inside), root, DriveFileDamaged, k)) == b"the set's own"
    assert k.final_paths == 2 and k.handles == {}
