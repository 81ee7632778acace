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
import struct
from typing import Callable

from core.engine import winopen

EPOCH_AS_FILETIME = 116444736000000000   # 1970-01-01 in 100 ns since 1601
BOTH, FULL, EXTD = 10, 14, 19            # FileIdBothDirectoryInfo, FileFullDirectoryInfo, FileIdExtdDirectoryInfo
LISTINGS = (BOTH, BOTH + 1, FULL, FULL + 1, EXTD, EXTD + 1)   # (each with its "restart" class)
_ERRNO = {2: (FileNotFoundError, errno.ENOENT), 3: (FileNotFoundError, errno.ENOENT),
          5: (PermissionError, errno.EACCES), 32: (PermissionError, errno.EACCES),
          33: (PermissionError, errno.EACCES)}
NORMAL = 0x80


class FakeKernel:
    """:class:`core.engine.winopen.Api` over real files (see the module)."""

    def __init__(self, tags: dict[str, int] | None = None, locked=(), no_tag_info: bool = False,
                 before_open: Callable[[str, int], None] | None = None, no_ids: bool = False,
                 listed_ids: int = 0, no_final_path: bool = False):
        self.tags = {str(k): v for k, v in (tags or {}).items()}
        self.locked = {str(p) for p in locked}
        self.no_tag_info = no_tag_info
        self.no_ids = no_ids
        self.listed_ids = listed_ids   # added to the file IDs a listing gives (a server numbering otherwise)
        self.before_open = before_open
        self.no_final_path = no_final_path   # a file system that cannot say where a handle's file is
        self.final_paths = 0                 # GetFinalPathNameByHandleW calls answered
        self.handles: dict[int, tuple[int, str]] = {}     # handle -> its descriptor, the path it was opened by
        self._listed: dict[int, list[str]] = {}          # handle -> the names its listing has still to give
        self.opens: list[tuple[str, int]] = []   # (path, flags) of every CreateFileW
        self.closed = 0
        self._last = 0
        self._next = 1000

    def CreateFileW(self, path, access, share, security, disposition, flags, template):  # noqa: N802
        assert (share, disposition) == (winopen.FILE_SHARE_ALL, winopen.OPEN_EXISTING)
        assert access == (winopen.LIST_FOLDER if flags & winopen.FILE_FLAG_BACKUP_SEMANTICS and not
                          flags & winopen.FILE_FLAG_SEQUENTIAL_SCAN else winopen.GENERIC_READ)
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
        info = info._obj   # (passed by ctypes.byref, as the real call's LPVOID wants)
        if info_class == winopen.FILE_ID_INFO_CLASS:
            return self._id_info(handle, info, size)
        if info_class in LISTINGS:
            return self._listing(handle, info_class, info, size)
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

    def _id_info(self, handle, info, size):
        assert size == 24
        if self.no_ids:
            self._last = 87
            return 0
        st = os.fstat(self._fd(handle)[0])
        info.VolumeSerialNumber = st.st_dev
        info.FileId[:] = list(st.st_ino.to_bytes(16, "little"))
        return 1

    def _listing(self, handle, info_class, buffer, size):
        """A folder's entries as Windows' directory classes give them: "." and ".." first, as many
        as fit in ``buffer`` each call, then ERROR_NO_MORE_FILES (18)."""
        fd, path = self._fd(handle)
        if self.no_ids and info_class not in (FULL, FULL + 1):
            self._last = 87   # a file system without the file-ID classes (FAT)
            return 0
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            self._last = 267   # ERROR_DIRECTORY: not a folder (a link opened itself)
            return 0
        if handle not in self._listed or info_class in (BOTH + 1, EXTD + 1, FULL + 1):
            self._listed[handle] = [".", ".."] + os.listdir(fd)
        names, at, previous = self._listed[handle], 0, None
        if not names:
            self._last = 18
            return 0
        while names:
            name = names[0]
            st = os.stat(name, dir_fd=fd, follow_symlinks=False) if name != ".." else os.stat(path + "/..")
            record = self._entry(info_class, os.path.join(path, name), name, st, fd)
            if at + len(record) > size:
                break
            if previous is not None:
                struct.pack_into("<I", buffer, previous, at - previous)
            buffer[at:at + len(record)] = record
            previous, at = at, at + (len(record) + 7) // 8 * 8
            names.pop(0)
        assert previous is not None, "the buffer holds no entry"
        return 1

    def _entry(self, info_class, path, name, st, fd) -> bytes:
        attrs, tag = self._attributes(path, st)
        t = lambda ns: ns // 100 + EPOCH_AS_FILETIME  # noqa: E731
        raw = name.encode("utf-16-le", "surrogatepass")
        head = struct.pack("<II6qII", 0, 0, t(st.st_ctime_ns), t(st.st_atime_ns), t(st.st_mtime_ns),
                           t(st.st_ctime_ns), st.st_size if not stat.S_ISDIR(st.st_mode) else 0, 0, attrs, len(raw))
        ino = st.st_ino + self.listed_ids
        if info_class in (EXTD, EXTD + 1):
            return head + struct.pack("<II", 0, tag) + ino.to_bytes(16, "little") + raw
        if info_class in (BOTH, BOTH + 1):   # EaSize (the tag), ShortNameLength, ShortName, FileId
            return head + struct.pack("<IB27xq", tag, 0, ino) + raw
        return head + struct.pack("<I", tag) + raw

    def _attributes(self, path: str, st: os.stat_result) -> tuple[int, int]:
        """What Windows would list as ``path``'s attributes and reparse tag (see GetFileInformationByHandleEx)."""
        readonly = 0 if st.st_mode & stat.S_IWUSR else 0x1
        if stat.S_ISLNK(st.st_mode):
            folder = winopen.FILE_ATTRIBUTE_DIRECTORY if stat.S_ISDIR(_stat_or(path, st).st_mode) else 0
            tag = self.tags.get(path, 0)
            return (winopen.FILE_ATTRIBUTE_REPARSE_POINT | folder | readonly,
                    tag if tag & winopen.NAME_SURROGATE else winopen.IO_REPARSE_TAG_SYMLINK)
        if stat.S_ISDIR(st.st_mode):
            return winopen.FILE_ATTRIBUTE_DIRECTORY | readonly, 0
        tag = self.tags.get(path, 0)
        if tag and not tag & winopen.NAME_SURROGATE:
            return winopen.FILE_ATTRIBUTE_REPARSE_POINT | readonly, tag
        return (readonly or NORMAL), 0

    def GetFinalPathNameByHandleW(self, handle, buffer, size, flags):  # noqa: N802
        """Where the handle's file is: the kernel's own answer (/proc/self/fd), links resolved as
        Windows resolves links and junctions on the way."""
        assert flags == 0 and size == len(buffer)
        fd = self._fd(handle)[0]
        if self.no_final_path:
            self._last = 1   # ERROR_INVALID_FUNCTION
            return 0
        real = os.readlink(f"/proc/self/fd/{fd}")
        if len(real) >= size:
            return len(real) + 1
        buffer.value = real
        self.final_paths += 1
        return len(real)

    def CloseHandle(self, handle):  # noqa: N802
        self._listed.pop(handle, None)
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


def windows_opens(monkeypatch, k: FakeKernel) -> None:
    """The engine's source opens through the Windows branch, answered by ``k``; and os.open's flags
    as they are on Windows (no O_NOFOLLOW), for what the old code opened with."""
    from core.engine import sealpool, store, winopen
    from core.engine.remote import ahead as remote_ahead

    def opener(path: str) -> int:
        return winopen.open_no_follow(path, k)

    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    for module in (store, sealpool, remote_ahead):
        monkeypatch.setattr(module, "open_source", opener, raising=False)
        monkeypatch.setattr(module, "SOURCE_FLAGS", flags, raising=False)
    monkeypatch.setattr(sealpool, "_READ", flags, raising=False)


def windows_branch(monkeypatch, k: FakeKernel) -> None:
    """The engine's Windows branch for the rest of a test, answered by ``k``: source files opened by
    ``winopen`` (os.open's flags as on Windows: no O_NOFOLLOW, for what older code opened with), the
    scan's folders listed through their handles (``scan.BY_HANDLE``), its records made as on Windows
    (no ctime; the identity only where the listing gives one)."""
    import types

    from core.engine import scan, winopen

    windows_opens(monkeypatch, k)
    monkeypatch.setattr(winopen, "_windows", lambda: k)
    monkeypatch.setattr(scan, "BY_DESCRIPTOR", False)
    monkeypatch.setattr(scan, "BY_HANDLE", True, raising=False)
    monkeypatch.setattr(scan, "sys", types.SimpleNamespace(platform="win32"))


def coarse_times(root) -> None:
    """Every file's and folder's mtime below ``root`` cut to Windows' 100 ns (the fake's listing
    gives FILETIMEs, the readers' fstat Linux's nanoseconds: they must agree as on Windows)."""
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode):
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns // 100 * 100))
