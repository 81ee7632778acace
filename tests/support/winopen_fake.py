"""Windows' CreateFileW and its handle queries, faked over real files (core/engine/winopen.py's
``Api``), for the branch of the engine that runs on Windows only.

A handle is a real descriptor of the real path. Opened with ``FILE_FLAG_OPEN_REPARSE_POINT``, a
real symlink is opened itself (``O_PATH | O_NOFOLLOW``: a descriptor that cannot be read) and
reported as a reparse point with the symlink tag; without the flag it is followed, as Windows
follows it. A folder (or a link to one) opens only with ``FILE_FLAG_BACKUP_SEMANTICS``, as on
Windows (else "access denied", winerror 5). ``tags`` gives a real entry another reparse tag: a
regular file a tag that is no name surrogate (a cloud placeholder), a symlink one that is (a
junction); each applies only to an entry of its kind (a placeholder swapped for a link is a link).
``locked``: paths another program holds without sharing (winerror 32). ``before_open``: called
with (path, flags) before each open, to swap a name at the moment it matters. Errors are built
as Python builds them on Windows (``winerror`` set; 2 and 3 FileNotFoundError, 5, 32 and 33
PermissionError). ``handles`` is what is open and not yet handed to a descriptor or closed.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Callable

from core.engine import winopen

_ERRNO = {2: (FileNotFoundError, errno.ENOENT), 3: (FileNotFoundError, errno.ENOENT),
          5: (PermissionError, errno.EACCES), 32: (PermissionError, errno.EACCES),
          33: (PermissionError, errno.EACCES)}
NORMAL = 0x80


class FakeKernel:
    """:class:`core.engine.winopen.Api` over real files (see the module)."""

    def __init__(self, tags: dict[str, int] | None = None, locked=(), no_tag_info: bool = False,
                 before_open: Callable[[str, int], None] | None = None):
        self.tags = {str(k): v for k, v in (tags or {}).items()}
        self.locked = {str(p) for p in locked}
        self.no_tag_info = no_tag_info
        self.before_open = before_open
        self.handles: dict[int, tuple[int, str]] = {}     # handle -> its descriptor, the path it was opened by
        self.opens: list[tuple[str, int]] = []   # (path, flags) of every CreateFileW
        self.closed = 0
        self._last = 0
        self._next = 1000

    def CreateFileW(self, path, access, share, security, disposition, flags, template):  # noqa: N802
        assert (access, share, disposition) == (winopen.GENERIC_READ, winopen.FILE_SHARE_ALL, winopen.OPEN_EXISTING)
        self.opens.append((path, flags))
        if self.before_open is not None:
            self.before_open(path, flags)
        try:
            fd = self._open(path, flags)
        except OSError as err:
            self._last = {errno.ENOENT: 2, errno.ENOTDIR: 3}.get(err.errno or 0, 5)
            return winopen.INVALID_HANDLE_VALUE
        if fd is None:
            return winopen.INVALID_HANDLE_VALUE
        self._next += 4
        self.handles[self._next] = fd, path
        return self._next

    def _open(self, path: str, flags: int) -> int | None:
        if path in self.locked:
            self._last = 32
            return None
        st = os.lstat(path)
        if flags & winopen.FILE_FLAG_OPEN_REPARSE_POINT and stat.S_ISLNK(st.st_mode):
            if stat.S_ISDIR(_stat_or(path, st).st_mode) and not flags & winopen.FILE_FLAG_BACKUP_SEMANTICS:
                self._last = 5   # a directory link is a directory to Windows
                return None
            return os.open(path, os.O_PATH | os.O_NOFOLLOW)   # the link itself
        if stat.S_ISDIR(os.stat(path).st_mode):
            if not flags & winopen.FILE_FLAG_BACKUP_SEMANTICS:
                self._last = 5
                return None
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        return os.open(path, os.O_RDONLY)   # (a link without the flag: followed)

    def _fd(self, handle: int) -> tuple[int, str]:
        assert handle in self.handles, f"handle {handle} is not open"
        return self.handles[handle]

    def GetFileInformationByHandleEx(self, handle, info_class, info, size):  # noqa: N802
        assert info_class == winopen.FILE_ATTRIBUTE_TAG_INFO_CLASS and size == 8
        fd, path = self._fd(handle)
        if self.no_tag_info:
            self._last = 87   # ERROR_INVALID_PARAMETER: a file system without the class
            return 0
        st = os.fstat(fd)
        if stat.S_ISLNK(st.st_mode):   # (opened with the flag: the link itself)
            folder = winopen.FILE_ATTRIBUTE_DIRECTORY if stat.S_ISDIR(_stat_or(path, st).st_mode) else 0
            info.FileAttributes = winopen.FILE_ATTRIBUTE_REPARSE_POINT | folder
            tag = self.tags.get(path, 0)
            info.ReparseTag = tag if tag & winopen.NAME_SURROGATE else winopen.IO_REPARSE_TAG_SYMLINK
        elif stat.S_ISDIR(st.st_mode):
            info.FileAttributes, info.ReparseTag = winopen.FILE_ATTRIBUTE_DIRECTORY, 0
        elif not self.tags.get(path, winopen.NAME_SURROGATE) & winopen.NAME_SURROGATE:
            info.FileAttributes, info.ReparseTag = winopen.FILE_ATTRIBUTE_REPARSE_POINT, self.tags[path]
        else:
            info.FileAttributes, info.ReparseTag = NORMAL, 0
        return 1

    def GetFileInformationByHandle(self, handle, info):  # noqa: N802
        st = os.fstat(self._fd(handle)[0])
        info.dwVolumeSerialNumber = st.st_dev & 0xFFFFFFFF
        info.nFileIndexHigh, info.nFileIndexLow = st.st_ino >> 32, st.st_ino & 0xFFFFFFFF
        return 1

    def CloseHandle(self, handle):  # noqa: N802
        os.close(self.handles.pop(handle)[0])
        self.closed += 1
        return 1

    def open_osfhandle(self, handle, flags):
        assert flags == os.O_RDONLY | getattr(os, "O_BINARY", 0)
        fd = self._fd(handle)[0]
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            raise AssertionError("a handle to a link itself was made a descriptor")
        del self.handles[handle]   # (the descriptor owns it now: os.close closes it)
        return fd

    def last_error(self) -> int:
        return self._last

    def error(self, code: int, path: str) -> OSError:
        kind, number = _ERRNO.get(code, (OSError, errno.EINVAL))
        err = kind(number, f"[WinError {code}]", path)
        err.winerror = code   # (what Windows sets; POSIX exceptions have no such attribute)
        return err


def _stat_or(path: str, st: os.stat_result) -> os.stat_result:
    """What ``path`` leads to (``st``, the link's own, when it leads nowhere)."""
    try:
        return os.stat(path)
    except OSError:
        return st
