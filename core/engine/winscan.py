r"""Listing a source folder on Windows through its handle: a folder swapped for a link after its parent
was listed is not listed, and every entry gets the identity its readers check (issue #11).

On Linux and macOS the scan lists a folder through its descriptor, only if it is the folder its
parent's listing found, and records each entry's device and inode; every reader then compares the
file it opened with that record (``lean_child.check_same``, on the ``fstat`` it makes anyway), so a
folder on the way swapped for a symbolic link leads nowhere. On Windows the scan listed a folder by
its path (``os.scandir``), which follows a folder swapped for a junction since its parent was listed,
and it recorded no identity (a ``DirEntry``'s stat has no file ID there), so no reader checked one.

Here a folder is opened with ``CreateFileW`` (``FILE_FLAG_BACKUP_SEMANTICS``, and
``FILE_FLAG_OPEN_REPARSE_POINT`` below a source's own folder) and listed through that handle
(``GetFileInformationByHandleEx`` with a directory class: the ``NtQueryDirectoryFile`` that
``FindFirstFileW`` makes too, each entry's file ID in it, no call more per entry):

* **The folder opened must be the one its parent's listing found**: its (volume serial number, file
  ID) equal to the record's, else it is not listed (:func:`listing` gives None; scan.py warns). A
  folder above it swapped for a link leads the path elsewhere: another file ID. A name surrogate in
  the folder's own place (a junction or directory symlink, opened itself) that *is* the one its
  parent listed is a junction present at the scan (a junction ``lstat``\ s as a folder: the scan
  records and enters it, as ``os.scandir`` did): it is opened again, followed, and listed.
* **Each entry's identity is what this Python's ``os.fstat`` will give for it**, so that
  ``check_same`` compares like with like: CPython 3.12 and later take ``FileIdInfo`` (a 128-bit file
  ID, a 64-bit volume serial number), earlier versions ``BY_HANDLE_FILE_INFORMATION`` (the 64-bit
  file index, the 32-bit serial). The listing class is chosen to match
  (``FileIdExtdDirectoryInfo``: the 128-bit ID; ``FileIdBothDirectoryInfo``: the 64-bit one), the
  serial is the listed folder's, read as ``os.fstat`` reads it (:func:`identity`). A source's own
  folder is read both ways (this and ``os.stat``): if they differ, nothing below it gets an identity
  (0: not checked, as before) rather than every file being called replaced.
* **Where the file system lists no file IDs** (FAT, exFAT: no reparse points there either), the
  folder is listed with ``FileFullDirectoryInfo``: entries without identity, as before. A folder
  listed without its own check (no record to compare with) gives its entries none either, so a
  folder never vouches for more than was checked.

The ``stat`` results are those ``os.scandir``'s ``DirEntry.stat(follow_symlinks=False)`` gives on
Windows (``attributes_to_mode``; ``S_IFLNK`` for ``IO_REPARSE_TAG_SYMLINK`` only; the attributes and
the reparse tag), with ``st_ino`` and ``st_dev`` added. The calls go through ``winopen``'s
:class:`~core.engine.winopen.Api` (a fake backed by real files in the tests).
"""

from __future__ import annotations

import ctypes
import errno
import operator
import os
import stat
import struct
import sys
from typing import NamedTuple

from core.engine import winopen

#: Whether this Python's ``os.fstat`` gives ``FileIdInfo``'s identity (3.12+) or the older one.
ID_128 = sys.version_info >= (3, 12)
BUFFER = 64 << 10            # bytes of entries per call (a long name takes ~600 of them)
NO_MORE_FILES = 18           # ERROR_NO_MORE_FILES: the listing is done
EPOCH_AS_FILETIME = 116444736000000000   # 1970-01-01 in 100 ns since 1601
_READONLY = 0x1
_REPARSE = winopen.FILE_ATTRIBUTE_REPARSE_POINT
_FOLDER = winopen.FILE_FLAG_BACKUP_SEMANTICS


class Layout(NamedTuple):
    """Where a directory class puts an entry's reparse tag, file ID and name."""

    info_class: int
    tag_at: int
    id_at: int
    id_size: int    # 0: the class has no file ID
    name_at: int


EXTD = Layout(19, 68, 72, 16, 88)    # FILE_ID_EXTD_DIR_INFO (ReparsePointTag, FILE_ID_128)
BOTH = Layout(10, 64, 96, 8, 104)    # FILE_ID_BOTH_DIR_INFO (EaSize holds the tag; LARGE_INTEGER FileId)
FULL = Layout(14, 64, 0, 0, 68)      # FILE_FULL_DIR_INFO (EaSize holds the tag; no file ID)
# NextEntryOffset, (FileIndex), CreationTime, LastAccessTime, LastWriteTime, (ChangeTime), EndOfFile,
# (AllocationSize), FileAttributes, FileNameLength: the 64 bytes every class above starts with.
_HEAD = struct.Struct("<I4xqqq8xq8xII")
_TAG = struct.Struct("<I")
_NAME = operator.itemgetter(0)
_INVALID = {0: -1, 8: (1 << 64) - 1, 16: (1 << 128) - 1}   # FILE_INVALID_FILE_ID by the ID's size


def listing(folder: str, top: bool = False, expect: tuple[int, int] | None = None,
            api: winopen.Api | None = None, junction: bool = True) -> list[tuple[str, os.stat_result]] | None:
    """``(name, lstat)`` of every entry of ``folder`` (``fs.long_path`` form), sorted by name, or None
    when the folder opened is not ``expect`` (its (``st_dev``, ``st_ino``) as its parent's listing
    recorded them; None: not known). ``top``: a source's own folder (followed if it is a link).
    ``junction``: whether a junction in the folder's place is followed (the one its parent listed),
    else None. An ``OSError`` when it cannot be opened or read. ``api``: the calls (default:
    Windows' own)."""
    k = api if api is not None else winopen._windows()
    handle: int | None = winopen._create(k, folder, _FOLDER if top else _FOLDER | winopen.FILE_FLAG_OPEN_REPARSE_POINT,
                                         winopen.LIST_FOLDER)
    assert handle is not None
    try:
        dev, ino = identity(k, handle, folder)
        if top:
            checked = bool(ino) and _agrees(folder, os.stat_result((0, ino, dev) + (0,) * 7))
        elif expect is None:
            checked = False
        elif not same(dev, ino, expect):
            return None
        else:
            checked = True
        if not top and _surrogate(k, handle, folder):
            # A junction or directory link in the folder's place: the one the parent listed (same
            # file ID), or, with no record to compare, as os.scandir would: followed.
            if not junction:
                return None
            k.CloseHandle(handle)
            handle = None
            handle = winopen._create(k, folder, _FOLDER, winopen.LIST_FOLDER)
            dev = identity(k, handle, folder)[0]
        found = _entries(k, handle, folder, dev if checked else None)
        if top and checked and found and not _agrees(os.path.join(folder, found[0][0]), found[0][1], lstat=True):
            found = _entries(k, handle, folder, None, again=True)   # (the listing's IDs are not fstat's)
        return found
    finally:
        if handle is not None:
            k.CloseHandle(handle)


def stat_beneath(root: str, rel: str, api: winopen.Api | None = None) -> os.stat_result:
    """The record a scan makes of the source folder ``root``'s ``rel`` ('/'-separated, not empty)
    (``root`` in ``fs.long_path`` form), reached as the scan reaches it: each folder on the way listed
    through its handle and checked against its parent's listing (:func:`listing`), the entry taken
    from its parent's listing. For a path found without listing its folders (a journal scan's named
    folder): ``os.lstat`` would follow a folder on its way swapped for a link, and the record it made
    would be the link target's. A folder on the way that is not the one listed, or is a junction (not
    told here from one swapped in since the parent snapshot), raises ``OSError`` (ELOOP: the journal
    scan warns, and the next one tries again); a name not there, ``FileNotFoundError``. One listing
    per folder on the way."""
    found = listing(root, top=True, api=api)
    here = root
    *folders, name = rel.split("/")
    for part in folders:
        st = _named(found, part, here)
        here = os.path.join(here, part)
        found = listing(here, expect=(st.st_dev, st.st_ino) if st.st_ino else None, api=api, junction=False)
        if found is None:
            raise OSError(errno.ELOOP, "a folder on its way was replaced since it was listed (a link?): "
                          "not followed", here)
    return _named(found, name, here)


def _named(found: list[tuple[str, os.stat_result]] | None, name: str, folder: str) -> os.stat_result:
    for entry, st in found or ():
        if entry == name:
            return st
    raise FileNotFoundError(errno.ENOENT, "not found", os.path.join(folder, name))


def same(dev: int, ino: int, expect: tuple[int, int]) -> bool:
    """Whether (``dev``, ``ino``) is the recorded ``expect`` (a recorded device of 0: not known)."""
    return ino == expect[1] and (not expect[0] or dev == expect[0])


def identity(k: winopen.Api, handle: int, path: str) -> tuple[int, int]:
    """(``st_dev``, ``st_ino``) of the file ``handle`` opened, as this Python's ``os.fstat`` gives them
    (CPython's ``_Py_fstat_noraise`` and ``_Py_attribute_data_to_stat``)."""
    info = winopen.BY_HANDLE_FILE_INFORMATION()
    if not k.GetFileInformationByHandle(handle, info):
        raise k.error(k.last_error(), path)
    dev, ino = info.dwVolumeSerialNumber, (info.nFileIndexHigh << 32) | info.nFileIndexLow
    if ID_128:
        ids = winopen.FILE_ID_INFO()
        if k.GetFileInformationByHandleEx(handle, winopen.FILE_ID_INFO_CLASS, ctypes.byref(ids), ctypes.sizeof(ids)):
            dev = ids.VolumeSerialNumber
            ino = int.from_bytes(bytes(ids.FileId), "little") or ino
    return dev, ino


def _agrees(path: str, found: os.stat_result, lstat: bool = False) -> bool:
    """Whether ``os.stat`` (``os.lstat``) finds ``path`` with the identity in ``found``. A source's
    own folder (as :func:`identity` read it) and its first entry (as its listing gave it) are asked:
    the identities recorded below it are those its readers' ``fstat`` will give only if both agree
    (a network server whose listing numbers files otherwise would else have every file called
    replaced, and none stored). One call each, once per source."""
    try:
        st = os.lstat(path) if lstat else os.stat(path)
    except OSError:
        return False
    return same(found.st_dev, found.st_ino, (st.st_dev, st.st_ino))


def _surrogate(k: winopen.Api, handle: int, path: str) -> bool:
    """Whether ``handle`` (opened not followed) is a junction, a symlink or another name surrogate."""
    info = winopen.FILE_ATTRIBUTE_TAG_INFO()
    if not k.GetFileInformationByHandleEx(handle, winopen.FILE_ATTRIBUTE_TAG_INFO_CLASS, ctypes.byref(info),
                                          ctypes.sizeof(info)):
        code = k.last_error()
        if code in winopen.NO_TAG_INFO:
            return False   # a file system without reparse points
        raise k.error(code, path)
    return bool(info.FileAttributes & _REPARSE and info.ReparseTag & winopen.NAME_SURROGATE)


def _entries(k: winopen.Api, handle: int, folder: str, dev: int | None,
             again: bool = False) -> list[tuple[str, os.stat_result]]:
    """The folder ``handle``'s entries, sorted by name; with their identity on volume ``dev`` (None:
    without any). ``again``: listed once already (the first call restarts the listing)."""
    layout = FULL if dev is None else EXTD if ID_128 else BOTH
    buffer = ctypes.create_string_buffer(BUFFER)
    view = memoryview(buffer)
    out: list[tuple[str, os.stat_result]] = []
    first = True
    while True:
        info_class = layout.info_class + 1 if first and again else layout.info_class   # (its "Restart" class)
        if not k.GetFileInformationByHandleEx(handle, info_class, ctypes.byref(buffer), BUFFER):
            code = k.last_error()
            if code == NO_MORE_FILES:
                break
            if first and layout is not FULL and code in winopen.NO_TAG_INFO:
                layout, dev = FULL, None   # no file-ID classes here (FAT, exFAT)
                continue
            raise k.error(code, folder)
        first = False
        _parse(view, layout, dev or 0, out)
    out.sort(key=_NAME)
    return out


def _parse(view: memoryview, layout: Layout, dev: int, out: list[tuple[str, os.stat_result]]) -> None:
    """Append the entries one call put in ``view`` (but "." and "..")."""
    at = 0
    while True:
        step, created, accessed, written, size, attrs, length = _HEAD.unpack_from(view, at)
        name = str(view[at + layout.name_at:at + layout.name_at + length], "utf-16-le", "surrogatepass")
        if name != "." and name != "..":
            tag = _TAG.unpack_from(view, at + layout.tag_at)[0] if attrs & _REPARSE else 0
            ino = int.from_bytes(view[at + layout.id_at:at + layout.id_at + layout.id_size], "little") \
                if layout.id_size else 0
            if ino == _INVALID[layout.id_size]:
                ino = 0   # FILE_INVALID_FILE_ID: an ID this class cannot give (ReFS's 64-bit one)
            out.append((name, lstat_of(attrs, tag, size, created, accessed, written, ino, dev if ino else 0)))
        if not step:
            return
        at += step


def lstat_of(attrs: int, tag: int, size: int, created: int, accessed: int, written: int,
             ino: int = 0, dev: int = 0) -> os.stat_result:
    """What ``DirEntry.stat(follow_symlinks=False)`` gives on Windows for an entry listed with these
    attributes, reparse tag, size and times (FILETIME units), plus its identity."""
    mode = (stat.S_IFDIR | 0o111) if attrs & winopen.FILE_ATTRIBUTE_DIRECTORY else stat.S_IFREG
    mode |= 0o444 if attrs & _READONLY else 0o666
    if attrs & _REPARSE and tag == winopen.IO_REPARSE_TAG_SYMLINK:
        mode = stat.S_IFLNK | stat.S_IMODE(mode)
    a, m, c = ((t - EPOCH_AS_FILETIME) * 100 for t in (accessed, written, created))
    return os.stat_result((mode, ino, dev, 0, 0, 0, size, a // 10**9, m // 10**9, c // 10**9),
                          {"st_atime": a / 1e9, "st_mtime": m / 1e9, "st_ctime": c / 1e9, "st_atime_ns": a,
                           "st_mtime_ns": m, "st_ctime_ns": c, "st_file_attributes": attrs, "st_reparse_tag": tag})
