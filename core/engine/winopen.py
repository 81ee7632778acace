r"""Opening a file on Windows without following a symbolic link or a junction (issue #11).

POSIX opens a source file with ``O_NOFOLLOW`` (core/engine/source_open.py): a file swapped for a
symlink between the scan and the copy is refused (ELOOP), and the snapshot keeps the previous
version with a warning (core/engine/sourceread.py). Windows has no such flag for ``os.open``, so
there the copy followed the link and stored its target's bytes under the file's name. Here the
file is opened through ``CreateFileW`` with ``FILE_FLAG_OPEN_REPARSE_POINT``, which opens a
reparse point itself instead of what it points to, and the handle is asked what it is
(``GetFileInformationByHandleEx``, ``FileAttributeTagInfo``):

* no reparse point: the file itself; the handle becomes a C runtime descriptor
  (``msvcrt.open_osfhandle``), read and closed as ``os.open``'s would be;
* a reparse point whose tag is a *name surrogate* (``IsReparseTagNameSurrogate``: bit 29 of the
  tag; symlinks, junctions and mount points, and any other tag that names another place):
  the handle is closed and ``OSError(ELOOP)`` raised, which ``core.errors.refused_symlink``
  and sourceread's warning treat as on POSIX;
* a reparse point whose tag is not a name surrogate (a OneDrive or other cloud-files
  placeholder, a deduplicated file, a WOF-compressed file, an HSM stub): to the user that is
  an ordinary file, and the bytes are the file system filter's to give. Opened with the flag,
  the filter is bypassed (a deduplicated file would read as its sparse stub: zeros), so the
  name is opened again without the flag, as CPython's ``os.stat`` traverses such tags. The
  first handle stays open meanwhile and both handles must name the same file (volume serial
  number and file index): a name swapped for a link between the two opens is not taken; the
  whole open is tried again (:data:`TRIES` in all), then refused as a link.

A failed ``CreateFileW`` raises the ``OSError`` Windows would (``ctypes.WinError``, the path
as its ``filename``): winerror 32 and 33 reach ``winattrs.is_locked`` and the locked-file
retries, 2 and 3 are ``FileNotFoundError``. ``FILE_FLAG_BACKUP_SEMANTICS`` lets the name open
whatever it is now, so it is classified as above: a junction or a directory symlink (directories
to Windows, which ``CreateFileW`` refuses without that flag: "access denied", retried and
reported as an unreadable file) is refused as a link, a folder raises ``IsADirectoryError``. (The
flag also lets a process whose backup privilege is *enabled* read past permissions; Plugback
never enables it, so nothing is read that ``os.open`` could not read.) The handle is opened for
reading and shares read, write and delete with other programs (``os.open`` shared no delete: a
program deleting or renaming a file was refused while it was being read);
``FILE_FLAG_SEQUENTIAL_SCAN``: every source is read once from start to end.

The calls go through a small object (:class:`Api`): the real kernel32 and msvcrt on Windows,
a fake backed by real files in the tests (tests/support/winopen_fake.py), since this branch
never runs on the machines the suite runs on.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from typing import Any, Protocol

GENERIC_READ = 0x80000000
# A folder listed (core/engine/winscan.py): what FindFirstFileW asks, and its attributes' reading.
LIST_FOLDER = 0x1 | 0x80 | 0x100000         # FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES | SYNCHRONIZE
FILE_SHARE_ALL = 0x1 | 0x2 | 0x4            # FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE
OPEN_EXISTING = 3
FILE_FLAG_SEQUENTIAL_SCAN = 0x08000000
FILE_FLAG_OPEN_REPARSE_POINT = 0x00200000
FILE_FLAG_BACKUP_SEMANTICS = 0x02000000
FILE_ATTRIBUTE_DIRECTORY = 0x10
FILE_ATTRIBUTE_REPARSE_POINT = 0x400
FILE_ATTRIBUTE_TAG_INFO_CLASS = 9           # FILE_INFO_BY_HANDLE_CLASS.FileAttributeTagInfo
FILE_ID_INFO_CLASS = 18                     # FILE_INFO_BY_HANDLE_CLASS.FileIdInfo
NAME_SURROGATE = 0x20000000                 # IsReparseTagNameSurrogate's bit
IO_REPARSE_TAG_SYMLINK = 0xA000000C
IO_REPARSE_TAG_MOUNT_POINT = 0xA0000003     # a junction, or a volume mounted on a folder
IO_REPARSE_TAG_CLOUD = 0x9000001A           # cloud-files placeholders (OneDrive): 0x9000x01A
IO_REPARSE_TAG_DEDUP = 0x80000013
# What a file system without FileAttributeTagInfo answers (CPython's os.stat: then no reparse point).
NO_TAG_INFO = frozenset({1, 50, 87})        # ERROR_INVALID_FUNCTION, ERROR_NOT_SUPPORTED, ERROR_INVALID_PARAMETER
INVALID_HANDLE_VALUE = ctypes.c_void_p(-1).value
FINAL_PATH_CHARS = 32768   # GetFinalPathNameByHandleW's buffer: the longest path Windows has
TRIES = 3   # opens of a non-surrogate reparse point whose name kept changing between its two opens
_FLAGS = FILE_FLAG_SEQUENTIAL_SCAN | FILE_FLAG_BACKUP_SEMANTICS
_FD_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)


class FILE_ATTRIBUTE_TAG_INFO(ctypes.Structure):  # noqa: N801 - the Windows SDK's name
    _fields_ = [("FileAttributes", ctypes.c_uint32), ("ReparseTag", ctypes.c_uint32)]


class FILE_ID_INFO(ctypes.Structure):  # noqa: N801 - the Windows SDK's name
    _fields_ = [("VolumeSerialNumber", ctypes.c_uint64), ("FileId", ctypes.c_ubyte * 16)]


class FILETIME(ctypes.Structure):
    _fields_ = [("dwLowDateTime", ctypes.c_uint32), ("dwHighDateTime", ctypes.c_uint32)]


class BY_HANDLE_FILE_INFORMATION(ctypes.Structure):  # noqa: N801
    _fields_ = [("dwFileAttributes", ctypes.c_uint32), ("ftCreationTime", FILETIME),
                ("ftLastAccessTime", FILETIME), ("ftLastWriteTime", FILETIME),
                ("dwVolumeSerialNumber", ctypes.c_uint32), ("nFileSizeHigh", ctypes.c_uint32),
                ("nFileSizeLow", ctypes.c_uint32), ("nNumberOfLinks", ctypes.c_uint32),
                ("nFileIndexHigh", ctypes.c_uint32), ("nFileIndexLow", ctypes.c_uint32)]


class Api(Protocol):
    """The kernel32 and msvcrt calls this module makes, by their Windows names."""

    def CreateFileW(self, path: str, access: int, share: int, security: Any, disposition: int,  # noqa: N802
                    flags: int, template: Any) -> int | None: ...

    def GetFileInformationByHandleEx(self, handle: int, info_class: int,  # noqa: N802
                                     info: Any, size: int) -> int:
        """``info``: ``ctypes.byref`` of the structure or buffer the class fills."""

    def GetFileInformationByHandle(self, handle: int, info: BY_HANDLE_FILE_INFORMATION) -> int: ...  # noqa: N802

    def CloseHandle(self, handle: int) -> int: ...  # noqa: N802

    def GetFinalPathNameByHandleW(self, handle: int, buffer: Any, size: int, flags: int) -> int:  # noqa: N802
        """``buffer``: a ``ctypes.create_unicode_buffer`` of ``size`` characters; flags 0 (normalized,
        the drive letter's form). Its length on success, 0 on failure, more than ``size`` if short."""

    def open_osfhandle(self, handle: int, flags: int) -> int: ...

    def last_error(self) -> int: ...

    def error(self, code: int, path: str) -> OSError: ...


def open_no_follow(path: str, api: Api | None = None, at: str | None = None) -> int:
    """A read descriptor of the file ``path`` (in ``fs.long_path`` form), not followed if it is a
    symbolic link, a junction or another name surrogate: those raise ``OSError(ELOOP)``. See the
    module for what else it refuses and why. ``api``: the calls (default: Windows' own).

    ``at``: the final path (:func:`final_path`'s form) the opened file must have. Windows follows
    a link or junction in a folder on the way, and a check of those folders before the open leaves
    a window in which one can be swapped in; the handle's own final path shows where the open
    really went: anywhere else is refused with ``OSError(ELOOP)`` (:func:`_check_at`)."""
    k = api if api is not None else _windows()
    for _ in range(TRIES):
        first = _create(k, path, _FLAGS | FILE_FLAG_OPEN_REPARSE_POINT)
        try:
            placeholder = _placeholder(k, first, path)
            if not placeholder and at is not None:
                _check_at(k, first, path, at)
        except BaseException:
            k.CloseHandle(first)
            raise
        if not placeholder:
            return _descriptor(k, first)
        try:
            fd = _reopened(k, first, path, at)
        finally:
            k.CloseHandle(first)
        if fd is not None:
            return fd
    raise OSError(errno.ELOOP, "it changed while it was opened, more than once (not followed)", path)


def _reopened(k: Api, first: int, path: str, at: str | None) -> int | None:
    """The placeholder ``first`` opened again through the filter that owns its tag: a descriptor, or
    None when ``path`` names another file by now (swapped since ``first`` was opened)."""
    second = _create(k, path, _FLAGS)
    try:
        same = _identity(k, first, path) == _identity(k, second, path)
        if same and at is not None:
            _check_at(k, second, path, at)
    except BaseException:
        k.CloseHandle(second)
        raise
    if same:
        return _descriptor(k, second)
    k.CloseHandle(second)
    return None


def final_path(k: Api, handle: int) -> str | None:
    """Where ``handle``'s file really is (``GetFinalPathNameByHandleW``: links and junctions on the
    way resolved, long names, the drive letter's form); None where the file system cannot say."""
    buffer = ctypes.create_unicode_buffer(FINAL_PATH_CHARS)
    n = k.GetFinalPathNameByHandleW(handle, buffer, FINAL_PATH_CHARS, 0)
    if n <= 0 or n >= FINAL_PATH_CHARS:
        return None
    return buffer.value


def folder_final_path(folder: str, api: Api | None = None) -> str | None:
    """:func:`final_path` of ``folder`` (in ``fs.long_path`` form), or None where it cannot be had
    (then a caller opens below it unchecked, as before this check existed)."""
    k = api if api is not None else _windows()
    try:
        handle = _create(k, folder, FILE_FLAG_BACKUP_SEMANTICS, LIST_FOLDER)
    except OSError:
        return None
    try:
        return final_path(k, handle)
    finally:
        k.CloseHandle(handle)


class OnTheWay(OSError):
    """A file opened somewhere else than where it was asked for: a folder on its way is a link or a
    junction (swapped in after it was checked). Its errno is ELOOP: refused as a link is."""


def _check_at(k: Api, handle: int, path: str, at: str) -> None:
    """Refuse a file that is not where ``at`` says (:class:`OnTheWay`)."""
    real = final_path(k, handle)
    if real is None or os.path.normcase(real) != os.path.normcase(at):
        raise OnTheWay(errno.ELOOP, "a folder on its way is a link or junction now (not followed)", path)


def _descriptor(k: Api, handle: int) -> int:
    """``handle`` as a C runtime descriptor, which owns it from then on (closed with ``os.close``)."""
    try:
        return k.open_osfhandle(handle, _FD_FLAGS)
    except BaseException:
        k.CloseHandle(handle)
        raise


def _create(k: Api, path: str, flags: int, access: int = GENERIC_READ) -> int:
    handle = k.CreateFileW(path, access, FILE_SHARE_ALL, None, OPEN_EXISTING, flags, None)
    if handle is None or handle == INVALID_HANDLE_VALUE:
        raise k.error(k.last_error(), path)
    return handle


def _placeholder(k: Api, handle: int, path: str) -> bool:
    """Whether the file ``handle`` opened (not followed) is a reparse point to open again through its
    filter; raises ELOOP for a name surrogate, EISDIR for a folder."""
    info = FILE_ATTRIBUTE_TAG_INFO()
    if not k.GetFileInformationByHandleEx(handle, FILE_ATTRIBUTE_TAG_INFO_CLASS, ctypes.byref(info),
                                          ctypes.sizeof(info)):
        code = k.last_error()
        if code in NO_TAG_INFO:
            return False   # a file system without reparse points
        raise k.error(code, path)
    if info.FileAttributes & FILE_ATTRIBUTE_REPARSE_POINT:
        if info.ReparseTag & NAME_SURROGATE:
            raise OSError(errno.ELOOP, f"it is a symbolic link or junction (reparse tag {info.ReparseTag:#010x}), "
                          "not followed", path)
    if info.FileAttributes & FILE_ATTRIBUTE_DIRECTORY:
        raise IsADirectoryError(errno.EISDIR, "it is a folder", path)
    return bool(info.FileAttributes & FILE_ATTRIBUTE_REPARSE_POINT)


def _identity(k: Api, handle: int, path: str) -> tuple[int, int, int]:
    info = BY_HANDLE_FILE_INFORMATION()
    if not k.GetFileInformationByHandle(handle, info):
        raise k.error(k.last_error(), path)
    return info.dwVolumeSerialNumber, info.nFileIndexHigh, info.nFileIndexLow


if sys.platform == "win32":
    import msvcrt
    from ctypes import wintypes

    class _Kernel:
        """kernel32's and msvcrt's calls, their prototypes set (Windows only)."""

        def __init__(self) -> None:
            k = ctypes.WinDLL("kernel32", use_last_error=True)
            k.CreateFileW.restype = wintypes.HANDLE
            k.CreateFileW.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, wintypes.LPVOID,
                                      wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]
            # (a structure passed where its POINTER is declared goes by reference; the Ex call's
            # classes fill different structures, each passed with ctypes.byref)
            k.GetFileInformationByHandleEx.restype = wintypes.BOOL
            k.GetFileInformationByHandleEx.argtypes = [wintypes.HANDLE, ctypes.c_int, wintypes.LPVOID,
                                                       wintypes.DWORD]
            k.GetFileInformationByHandle.restype = wintypes.BOOL
            k.GetFileInformationByHandle.argtypes = [wintypes.HANDLE, ctypes.POINTER(BY_HANDLE_FILE_INFORMATION)]
            k.CloseHandle.restype = wintypes.BOOL
            k.CloseHandle.argtypes = [wintypes.HANDLE]
            k.GetFinalPathNameByHandleW.restype = wintypes.DWORD
            k.GetFinalPathNameByHandleW.argtypes = [wintypes.HANDLE, wintypes.LPWSTR, wintypes.DWORD, wintypes.DWORD]
            self.CreateFileW = k.CreateFileW
            self.GetFileInformationByHandleEx = k.GetFileInformationByHandleEx
            self.GetFileInformationByHandle = k.GetFileInformationByHandle
            self.CloseHandle = k.CloseHandle
            self.GetFinalPathNameByHandleW = k.GetFinalPathNameByHandleW
            self.open_osfhandle = msvcrt.open_osfhandle

        @staticmethod
        def last_error() -> int:
            return ctypes.get_last_error()

        @staticmethod
        def error(code: int, path: str) -> OSError:
            err = ctypes.WinError(code)   # (its errno and subclass from the winerror: 2 -> FileNotFoundError...)
            err.filename = path
            return err

    _API: list[Api] = []

    def _windows() -> Api:
        """Windows' own calls, made ready on first use."""
        if not _API:
            _API.append(_Kernel())
        return _API[0]
else:
    def _windows() -> Api:
        """No kernel32 here: the tests pass their own :class:`Api`."""
        raise OSError(errno.ENOSYS, f"CreateFileW is Windows' (this is {sys.platform})")
