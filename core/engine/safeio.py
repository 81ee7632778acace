"""Reading a file from a drive or a set, safely: the one way the engine opens untrusted files.

Everything on a backup drive is untrusted input (a found stick, a damaged drive,
another computer's backups). A file Plugback reads from it must be a regular
file, reached without following a symlink, opened without blocking, and not
bigger than a cap the caller names, so that a FIFO cannot hang the agent, a
symlink to ``/dev/zero`` cannot fill memory, and a 2 GB file cannot be read
where 2 KB are expected. What the bytes *mean* is the decoders' concern
(``manifest.decode``, ``repo.decode_meta``, ``journal.load``, ...).

POSIX: the final component is checked with ``lstat`` first (a device node or a
FIFO is never even opened), then opened with ``O_NOFOLLOW | O_NONBLOCK`` and
checked again with ``fstat`` (the name may have been swapped in between). When
a ``root`` is given, every folder from ``root`` down is opened with
``O_NOFOLLOW | O_DIRECTORY`` relative to its parent, so no symlink inside the
set (or below a drive's mount point) is followed either.

Windows has no FIFOs or device nodes in a file system and no ``O_NOFOLLOW``:
each component is checked with ``lstat`` for a symlink or another reparse point
(junction, mount point), and the file is then opened with ``FILE_FLAG_OPEN_REPARSE_POINT``
(``core/engine/winopen.py``), so a last component swapped for a link after its check
is refused too. Below a ``root``, a folder on the way swapped between its check and the
open (only a local process racing us could do it) is caught after the open: the handle's
final path must be the root's own plus the names asked for.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import sys
from pathlib import Path

from core.engine import winopen
from core.engine.fs import READ_FLAGS, long_path, translate
from core.errors import DriveFileDamaged, refused_symlink

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NOCTTY = getattr(os, "O_NOCTTY", 0)
_REPARSE = getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0x400)
# Walking folders by descriptor needs openat(); Windows (and exotic systems) check names instead.
_BY_FD = bool(_NOFOLLOW and _DIRECTORY) and os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd


def _kind(mode: int) -> str:
    """What a non-regular file is, in words for a message."""
    for test, words in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"),
                        (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a device"),
                        (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def read_bytes(path: Path, limit: int, *, root: Path | None = None, error=DriveFileDamaged) -> bytes:
    """The content of the regular file ``path``: at most ``limit`` bytes, or ``error``.

    ``root``: a folder above ``path`` that is trusted (the set, or a drive's mount
    point); no symlink between it and ``path`` is followed. ``error`` is the
    ``PlugbackError`` type raised (with ``path`` and ``reason``) when the file is
    not a regular file, is reached through a symlink, or is bigger than
    ``limit``. A missing file raises ``FileNotFoundError`` (callers decide what
    that means); other OS errors become the usual translated errors (DriveGone,
    IOFailure...).
    """
    path = Path(path)
    try:
        fd = _open_regular(path, root, error)
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(errno.ENOENT, "No such file", str(path)) from None
    except OSError as err:
        if refused_symlink(err):
            raise error(path=str(path), reason="it is a symbolic link") from None
        raise translate(err, path, root) from err
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise error(path=str(path), reason=f"it is {size} bytes, more than the {limit} such a file may have")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(limit + 1 - total, 1 << 20) or 1)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:   # it grew while we read it
                raise error(path=str(path), reason=f"it is more than the {limit} bytes such a file may have")
        return b"".join(chunks)
    except OSError as err:
        raise translate(err, path, root) from err
    finally:
        os.close(fd)


def open_regular(path: str | Path, error=DriveFileDamaged, root: Path | None = None) -> int:
    """A read descriptor of the regular file ``path`` (last component not followed), for streaming.

    Content files (``objects/``, ``Latest/``) and streamed manifests are read
    through this: a FIFO put in their place must not hang a verify or a restore.
    With ``root``, no folder from there down may be a symlink either. Raises like read_bytes.
    ``path`` may be a plain string (no ``Path`` is built for it then without a ``root``: a
    read-back opens every file a backup copied).
    """
    try:
        return _open_regular(path if root is None else Path(path), Path(root) if root is not None else None, error)
    except OSError as err:
        if refused_symlink(err):
            raise error(path=str(path), reason="it is a symbolic link") from None
        raise


def open_written(path: str, error=DriveFileDamaged) -> tuple[int, int]:
    """(descriptor, size) of the regular file ``path`` that this very run wrote, for its read-back:
    as :func:`open_regular`, without the ``lstat`` before the open where ``O_NOFOLLOW`` exists.

    That ``lstat`` keeps a device node or a FIFO the drive already held from being opened at all.
    A file the run has just renamed into place is neither: only a process racing the run could
    put one there, and it could do so between an ``lstat`` and the open just as well. What holds
    either way: the last component is never followed (``O_NOFOLLOW``), the open never waits
    (``O_NONBLOCK``; ``O_NOCTTY``: no terminal is adopted) and ``fstat`` on the descriptor must
    find a regular file. Its size is that ``fstat``'s: a read-back that reads exactly that many
    bytes needs no read at the end of the file to learn that it ended (issue #11: two calls of
    the ~21 a small file's backup made). Raises like :func:`open_regular`.
    """
    if sys.platform == "win32" or not _NOFOLLOW:
        fd = open_regular(path, error)
        try:
            return fd, os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
    try:
        fd = os.open(long_path(path), READ_FLAGS | _NOFOLLOW | _NONBLOCK | _NOCTTY)
    except OSError as err:
        if refused_symlink(err):
            raise error(path=str(path), reason="it is a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(path=str(path), reason=f"it is {_kind(st.st_mode)}, not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def _open_regular(path: str | Path, root: Path | None, error) -> int:
    if root is not None:
        rel = Path(path).relative_to(root).parts
        if not rel:
            raise error(path=str(path), reason="it is a folder")
    if sys.platform == "win32":
        fd = _open_windows(path, root, error)
    elif root is not None and _BY_FD:
        fd = _open_below(Path(root), rel, path, error)
    else:
        st = os.lstat(long_path(path))
        if not stat.S_ISREG(st.st_mode):
            raise error(path=str(path), reason=f"it is {_kind(st.st_mode)}, not a regular file")
        fd = os.open(long_path(path), READ_FLAGS | _NOFOLLOW | _NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):   # swapped between the check and the open
            raise error(path=str(path), reason=f"it is {_kind(mode)}, not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_below(root: Path, rel: tuple[str, ...], path: str | Path, error) -> int:
    """Open ``root/rel`` folder by folder relative to descriptors, following no symlink."""
    dir_fd = os.open(long_path(root), os.O_RDONLY | _DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for name in rel[:-1]:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                if stat.S_ISLNK(st.st_mode):
                    raise error(path=str(path), reason=f"the folder '{name}' on its way is a symbolic link")
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(path))
            nxt = os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = nxt
        st = os.stat(rel[-1], dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise error(path=str(path), reason=f"it is {_kind(st.st_mode)}, not a regular file")
        return os.open(rel[-1], READ_FLAGS | _NOFOLLOW | _NONBLOCK, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def _open_windows(path: str | Path, root: Path | None, error, api: winopen.Api | None = None) -> int:
    """Windows: the folders on the way and the file checked (:func:`_check_windows`), then the file
    opened without following it (``winopen``: a name swapped for a symlink or junction since its
    check is refused with ELOOP, as ``O_NOFOLLOW`` refuses it on POSIX), and, below a ``root``, only
    where it really is ``root``'s real place plus the names asked for: a folder on the way swapped
    for a link or junction after its check is refused too (the handle's final path says where the
    open went). A file system that cannot tell a handle's final path opens unchecked there, as
    before. ``api``: for the tests."""
    _check_windows(Path(path), root, error)
    at = None
    if root is not None:
        base = winopen.folder_final_path(long_path(root), api) if api is not None else _real_place(long_path(root))
        if base is not None:
            at = os.path.join(base, *Path(path).relative_to(root).parts)
    try:
        return winopen.open_no_follow(long_path(path), api, at)
    except winopen.OnTheWay:
        raise error(path=str(path), reason="a folder on its way became a symbolic link or junction "
                    "while it was opened (not followed)") from None


@functools.lru_cache(maxsize=16)
def _real_place(root: str) -> str | None:
    """A trusted root's final path, asked once per root: a stale answer can only refuse a file (its
    real place would have to equal the old one plus the names asked for), never accept another."""
    return winopen.folder_final_path(root)


def _check_windows(path: Path, root: Path | None, error) -> None:
    """Windows: refuse symlinks, junctions and other reparse points on the way (no O_NOFOLLOW)."""
    here = Path(root) if root is not None else path.parent
    for name in (path.relative_to(root).parts if root is not None else (path.name,)):
        here = here / name
        st = os.lstat(long_path(here))
        if stat.S_ISLNK(st.st_mode) or getattr(st, "st_file_attributes", 0) & _REPARSE:
            raise error(path=str(path), reason=f"'{here.name}' is a symbolic link or junction")
    st = os.lstat(long_path(path))
    if not stat.S_ISREG(st.st_mode):
        raise error(path=str(path), reason=f"it is {_kind(st.st_mode)}, not a regular file")


KEPT = 64   # folders' descriptors a SetFolders keeps open, at most


class SetFolders:
    """Files below a trusted ``root`` (a set's folder) opened folder by folder, no symlink followed
    anywhere below the root: each folder is opened relative to its parent's descriptor with
    ``O_NOFOLLOW | O_DIRECTORY``, and the file relative to its folder's, checked as
    :func:`open_regular` checks it (``lstat`` first: a FIFO or device node is never opened;
    ``O_NOFOLLOW | O_NONBLOCK | O_NOCTTY``; ``fstat``). A plain path opened by name follows a
    symlink in a folder on its way: a drive whose ``Latest/x`` was a symlink to ``/proc`` or to a
    user's folder had a restore read files from there (issue #11, branch ``restore9``).

    The folders' descriptors are kept, at most ``kept`` (the oldest closed first), so that
    files that come folder by folder (a restore's) cost a path walk of one name each. One thread's
    (not locked). POSIX with ``openat`` only (:data:`USABLE`); ``close`` at the end.
    """

    USABLE = _BY_FD

    def __init__(self, root: str | Path, error=DriveFileDamaged, kept: int = KEPT):
        self.root = os.fspath(root).rstrip(os.sep) or os.sep
        self.error, self.kept = error, kept
        self._fds: dict[str, int] = {}   # folder -> its descriptor, oldest first
        self._last: tuple[str, int] = ("", -1)

    def open(self, path: str | Path) -> int:
        """A read descriptor of the regular file ``path`` (below the root); raises like :func:`open_regular`
        (``error`` for a symlink on the way or a file that is not regular; FileNotFoundError when
        missing, or when a folder on its way is a file)."""
        path = os.fspath(path)
        folder, _, name = path.rpartition(os.sep)
        dir_fd = self._last[1] if folder == self._last[0] else self._folder(folder, path)
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except NotADirectoryError:
            raise FileNotFoundError(errno.ENOENT, "No such file", path) from None
        if not stat.S_ISREG(st.st_mode):
            raise self.error(path=path, reason=f"it is {_kind(st.st_mode)}, not a regular file")
        try:
            fd = os.open(name, READ_FLAGS | _NOFOLLOW | _NONBLOCK | _NOCTTY, dir_fd=dir_fd)
        except OSError as err:
            if refused_symlink(err):   # swapped for a symlink since the stat
                raise self.error(path=path, reason="it is a symbolic link") from None
            raise
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):   # swapped between the check and the open
                raise self.error(path=path, reason=f"it is {_kind(mode)}, not a regular file")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _folder(self, folder: str, path: str) -> int:
        """The descriptor of ``folder`` (the root, or below it), opened by its parent's."""
        fd = self._fds.get(folder)
        if fd is None:
            if folder == self.root:
                fd = os.open(self.root, os.O_RDONLY | _DIRECTORY | getattr(os, "O_CLOEXEC", 0))
            elif not folder.startswith(self.root.rstrip(os.sep) + os.sep):
                raise self.error(path=path, reason="it is not inside the set")
            else:
                parent, _, name = folder.rpartition(os.sep)
                parent_fd = self._folder(parent or os.sep, path)
                try:
                    fd = os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                                 dir_fd=parent_fd)
                except OSError as err:
                    if err.errno == errno.ELOOP or err.errno == errno.ENOTDIR and _is_link(name, parent_fd):
                        raise self.error(path=path, reason=f"the folder '{name}' on its way is a symbolic link") from None
                    if err.errno == errno.ENOTDIR:
                        raise FileNotFoundError(errno.ENOENT, "No such file", path) from None
                    raise
            self._fds[folder] = fd
            while len(self._fds) > self.kept:
                old = next(iter(self._fds))
                os.close(self._fds.pop(old))
                if self._last[0] == old:
                    self._last = ("", -1)
        self._last = (folder, fd)
        return fd

    def close(self) -> None:
        """Close every folder's descriptor."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._last = ("", -1)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


class CheckedFolders:
    """Content files below a trusted ``root`` (a set's folder) opened by their paths, each folder
    on the way found a real folder (``lstat``: not a symlink, not a Windows junction or other
    name-surrogate reparse point) once, then remembered; the file itself checked as
    :func:`open_regular` checks it. :func:`open_regular` without a root follows a symlinked folder
    on the way (a drive whose ``objects/ab`` or ``Latest/x`` was a link to a user's folder had a
    restore or a verify read from there: issue #11, found by ``restore9``); with a root it walks
    descriptors at ~20 µs more a file. This costs one ``lstat`` per folder per run.

    What it is for: a drive at rest, damaged or hostile. A folder swapped for a link by another
    process *while* this run reads the drive is not seen (the restore's own hot path,
    :class:`SetFolders`, and verify's readers walk descriptors and do see it). Memory: at most
    :attr:`MAX` folders remembered (forgotten all at once when full). Safe from several threads
    (a set's adds and lookups only)."""

    MAX = 4096

    def __init__(self, root: str | Path, error=DriveFileDamaged):
        self.root = os.fspath(root).rstrip(os.sep) or os.sep
        self.error = error
        self._ok: set[str] = set()

    def open(self, path: str | Path) -> int:
        """A read descriptor of the regular file ``path`` (below the root); raises like :func:`open_regular`."""
        p = os.fspath(path)
        folder = os.path.dirname(p)
        if folder not in self._ok:
            self._check(folder, p)
        return open_regular(p, error=self.error)

    def _check(self, folder: str, path: str) -> None:
        prefix = self.root.rstrip(os.sep) + os.sep
        if folder != self.root and not folder.startswith(prefix):
            raise self.error(path=path, reason="it is not inside the set")
        if len(self._ok) >= self.MAX:
            self._ok.clear()
        here = self.root
        for name in folder[len(prefix):].split(os.sep) if folder != self.root else ():
            if name in ("", ".", ".."):
                raise self.error(path=path, reason="its path leaves the set")
            here = os.path.join(here, name)
            if here in self._ok:
                continue
            st = os.lstat(long_path(here))   # (missing: FileNotFoundError, as open_regular's)
            surrogate = getattr(st, "st_reparse_tag", 0) & 0x20000000   # (Windows: a link or a junction)
            if stat.S_ISLNK(st.st_mode) or surrogate:
                raise self.error(path=path, reason=f"the folder '{name}' on its way is a symbolic link")
            if not stat.S_ISDIR(st.st_mode):
                raise FileNotFoundError(errno.ENOENT, "No such file", path)
            self._ok.add(here)
