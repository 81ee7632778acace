"""How bytes reach the destination: the file-system interface the engine writes through.

Every write to a set goes through a :class:`FileSystem`. It maps OS errors to
the user-facing errors of ``core.errors`` (a full disk, a read-only or vanished
drive, an I/O error), retries the transient ones that virus scanners and
indexers cause on Windows, and knows each platform's way to make data durable.
Tests wrap it (``tests/support/faults.py``) to inject ENOSPC, EIO,
PermissionError or a crash at the Nth call.
"""

from __future__ import annotations

import ctypes
import errno
import ntpath
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from core import errors
from core.engine import source_open, winattrs

# Windows: scanners/indexers briefly hold files open; these clear in milliseconds.
_TRANSIENT = {errno.EACCES, errno.EBUSY, errno.EAGAIN}
_DRIVE_GONE = {errno.ENODEV, errno.ENXIO, getattr(errno, "ENOTCONN", -1), getattr(errno, "ESTALE", -1),
               getattr(errno, "ENOMEDIUM", -1)}
RETRIES = 5
COPY_BLOCK = 1 << 20
# Threads for copying and restoring: one per core. More only trade the GIL back and
# forth (futex storms measured with strace), fewer leave the drive's queue empty.
WORKERS = max(2, min(8, os.cpu_count() or 2))


def _default_file_mode() -> int:
    # Read once at import (os.umask can only be read by setting it, which is racy later on).
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


DEFAULT_FILE_MODE = _default_file_mode()
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)   # Windows: no newline translation
READ_FLAGS = os.O_RDONLY | _CLOEXEC | _BINARY
# A source file's flags and its one opener (never waited on, never followed; Windows too) are
# core/engine/source_open.py's; the name stays here for older callers.
SOURCE_FLAGS = source_open.SOURCE_FLAGS


# A path as the engine's per-file code passes it: a plain string (cheaper) or a Path.
StrPath = str | os.PathLike

# CreateDirectoryW's limit (MAX_PATH 260 less room for an 8.3 name); files go to 259. From here on
# a Windows path needs the \\?\ prefix, unless long paths are enabled system-wide (off by default).
WIN_PATH_LIMIT = 248


def host_name() -> str:
    """This computer's name as sets and locks record it (``socket.gethostname()``): on POSIX the
    same name read from ``uname``, without importing socket (~5 ms of a backup on a cold cache)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


def long_path(path, *, windows: bool = sys.platform == "win32", force: bool = False) -> str:
    r"""``path`` as Windows can open it however long: ``\\?\`` + the absolute, normalised path
    (``\\?\UNC\server\share\...`` for a network path) when it is long.

    Short paths, paths that already have a prefix (or are device paths), and every path
    on other systems come back as they are (as ``str``), so only long Windows paths take
    the prefixed form (which skips Windows' normalising: '/' is not a separator there, so
    the path is normalised first). ``force``: the prefix however short the path is (the top
    of a tree walk, whose children inherit it). ``windows``: decide as on Windows (tests).
    """
    p = os.fspath(path)
    if not windows:
        return p   # (first: this runs for every file a run touches)
    short = not force and len(p) < WIN_PATH_LIMIT and ntpath.isabs(p)
    if p.startswith(("\\\\?\\", "\\\\.\\")) or short:
        return p
    # GetFullPathNameW on Windows; elsewhere (the table tests) the caller gives absolute paths.
    full = ntpath.abspath(p) if sys.platform == "win32" else ntpath.normpath(p)
    if len(full) < WIN_PATH_LIMIT and not force:
        return p
    if full.startswith("\\\\"):
        return "\\\\?\\UNC\\" + full[2:]
    return "\\\\?\\" + full


def real_path(path) -> str:
    r"""``os.path.realpath(path)``, also past Windows' path limit: there both the question and the
    answer are in the ``\?\`` form, so two answers compare (containment checks)."""
    return os.path.realpath(long_path(path, force=True))


def translate(err: OSError, path, root: Path | None = None) -> errors.PlugbackError:
    """The user-facing error for an OS error at ``path`` (``root``: the set, to detect a pulled drive)."""
    code = err.errno
    if code == errno.ENOSPC or code == getattr(errno, "EDQUOT", -1):
        return errors.DiskFull(path=str(path))
    if code == errno.EROFS:
        return errors.ReadOnlyDestination(path=str(path))
    if code in _DRIVE_GONE:
        return errors.DriveGone(path=str(path))
    if root is not None and not Path(root).exists():
        return errors.DriveGone(path=str(path))
    if code == errno.EIO:
        return errors.IOFailure(path=str(path), reason=err.strerror or "I/O error")
    if isinstance(err, PermissionError):
        return errors.DestinationUnwritable(path=str(path), reason="permission denied")
    return errors.DestinationUnwritable(path=str(path), reason=err.strerror or str(err))


class FileSystem:
    """The destination's file operations. Subclass (or wrap) to inject faults."""

    def __init__(self, root: Path | None = None, sleep=time.sleep):
        self.root = root
        self._sleep = sleep

    # --- primitive operations; each maps OSError to a PlugbackError -----------------
    def open_write(self, path: StrPath):
        """A new file for writing (binary); fails if it exists."""
        return self._call(lambda: open(long_path(path), "xb", buffering=0), path)

    def write(self, f, data) -> None:
        view = memoryview(data)
        while view:
            n = self._call(lambda v=view: f.write(v), getattr(f, "name", "?"))
            view = view[n:]

    # --- raw descriptors: the per-file hot path (no file object, no extra fstat) ---------
    def create(self, path) -> int:
        """A new file (fails if it exists), as a descriptor for ``write_fd``."""
        try:
            return os.open(long_path(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC | _BINARY, 0o666)
        except OSError as err:
            raise self._translate(err, path) from err

    def write_fd(self, fd: int, data) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as err:
            raise self._translate(err, f"descriptor {fd}") from err

    def finish_fd(self, fd: int, mtime_ns: int | None = None, mode: int | None = None) -> None:
        """Set a new file's time and permissions through its descriptor, then close it."""
        try:
            if mtime_ns is not None:
                try:
                    os.utime(fd, ns=(mtime_ns, mtime_ns))
                except (NotImplementedError, OSError):
                    pass   # FAT and some FUSE file systems refuse; manifests hold the truth
            if mode is not None and mode & 0o7777 != DEFAULT_FILE_MODE and hasattr(os, "fchmod"):
                try:
                    os.fchmod(fd, mode & 0o7777)
                except OSError:
                    pass   # exFAT/FAT have no POSIX modes
        finally:
            try:
                os.close(fd)
            except OSError as err:
                raise self._translate(err, f"descriptor {fd}") from err

    def fsync(self, f) -> None:
        self._call(lambda: os.fsync(f.fileno()), getattr(f, "name", "?"))

    def close(self, f) -> None:
        self._call(f.close, getattr(f, "name", "?"))

    def mkdir(self, path: StrPath) -> None:
        """One folder, fine if it is there already; its parent must exist (never re-creates a
        vanished drive's folders)."""
        if not self._make(path) and not os.path.isdir(long_path(path)):
            raise self._translate(FileExistsError(errno.EEXIST, "a file is in the way"), path)

    def make_dir(self, path) -> bool:
        """Create a folder; False when something (folder or not) is already there."""
        return self._make(path)

    def _make(self, path) -> bool:
        try:
            os.mkdir(long_path(path))
        except FileExistsError:
            return False
        except OSError as err:
            raise self._translate(err, path) from err
        return True

    def replace(self, src: StrPath, dst: StrPath) -> None:
        """``os.replace`` with bounded retries on transient errors (never on ENOSPC/EROFS); a read-only
        file in the way (which Windows refuses to replace) is made writable first."""
        self._call(lambda: winattrs.replace_over(long_path(src), long_path(dst), waits=()), dst, retry=True)

    def unlink(self, path: StrPath, missing_ok: bool = True) -> None:
        try:
            winattrs.unlink(long_path(path))   # (a read-only file: Windows refuses until it is writable)
        except FileNotFoundError:
            if not missing_ok:
                raise
        except OSError as err:
            raise self._translate(err, path) from err

    def rmdir(self, path: StrPath) -> None:
        self._call(lambda: os.rmdir(long_path(path)), path)

    def remove_dir(self, path: StrPath) -> bool:
        """Remove an empty folder; False (and nothing done) when something is still in it.

        A file where the folder was is what an interrupted run put there; it goes too.
        """
        try:
            os.rmdir(long_path(path))
        except FileNotFoundError:
            pass
        except NotADirectoryError:
            self.unlink(path)
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise self._translate(err, path) from err
        return True

    def symlink(self, target: str, path: StrPath) -> None:
        self._call(lambda: os.symlink(target, long_path(path)), path)

    def set_times(self, path: StrPath, mtime_ns: int, follow: bool = True) -> None:
        try:
            os.utime(long_path(path), ns=(mtime_ns, mtime_ns), follow_symlinks=follow)
        except (NotImplementedError, OSError):
            pass  # FAT and some FUSE file systems refuse or round; manifests hold the truth

    def chmod(self, path: StrPath, mode: int) -> None:
        """Set POSIX permissions where the file system has them."""
        try:
            os.chmod(long_path(path), mode & 0o7777)
        except (NotImplementedError, OSError):
            pass  # exFAT/FAT have no POSIX modes; the manifest keeps them for restore

    def fsync_dir(self, path: Path) -> None:
        """Make a rename in ``path`` durable (POSIX); a no-op where directories cannot be opened."""
        if sys.platform == "win32":
            return
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
                raise self._translate(err, path) from err
        finally:
            os.close(fd)

    def flush_volume(self, path: Path) -> None:
        """Make everything written to the volume holding ``path`` durable, in one call.

        One ``syncfs`` replaces an fsync per file (which costs milliseconds each on
        USB drives). Where syncfs does not exist, ``os.sync`` flushes everything.
        """
        fn = _syncfs()
        if fn is not None:
            fd = self._call(lambda: os.open(path, os.O_RDONLY), path)
            try:
                if fn(fd) != 0:
                    e = ctypes.get_errno()
                    raise self._translate(OSError(e, os.strerror(e)), path)
            finally:
                os.close(fd)
        elif hasattr(os, "sync"):
            os.sync()

    # --- helpers ---------------------------------------------------------------------
    def _translate(self, err: OSError, path) -> errors.PlugbackError:
        return translate(err, path, self.root)

    def _call(self, fn, path, retry: bool = False):
        delay = 0.05
        for attempt in range(RETRIES if retry else 1):
            try:
                return fn()
            except OSError as err:
                last = attempt == (RETRIES if retry else 1) - 1
                if retry and not last and err.errno in _TRANSIENT and sys.platform == "win32":
                    self._sleep(delay)
                    delay *= 2
                    continue
                raise self._translate(err, path) from err
        raise AssertionError("unreachable")


_local = threading.local()


def read_buffer() -> memoryview:
    """This thread's reusable read buffer (a fresh 1 MiB object per read costs page faults)."""
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = memoryview(bytearray(COPY_BLOCK))
    return buf


def read_into(fd: int, buf: memoryview) -> int:
    """Read from ``fd`` into ``buf`` (a :func:`read_buffer`); the count, 0 at the end of the file.

    ``os.readv`` fills the buffer without a new bytes object; Windows has no readv, so there
    a read is copied in.
    """
    if sys.platform != "win32":
        return os.readv(fd, [buf])
    data = os.read(fd, len(buf))
    buf[:len(data)] = data
    return len(data)


def blocks(fd: int, buf: memoryview) -> Iterator[memoryview]:
    """The rest of ``fd`` as views of ``buf``: use each block before asking for the next."""
    while True:
        n = read_into(fd, buf)
        if not n:
            return
        yield buf[:n]


_SYNCFS = None


def _syncfs():
    """libc's syncfs(2) on Linux, or None."""
    global _SYNCFS
    if _SYNCFS is None:
        _SYNCFS = False
        if sys.platform.startswith("linux"):
            try:
                # The process's own symbols (libc's among them): no ``ctypes.util.find_library``,
                # which runs ``ldconfig -p`` (a process, ~10 ms) on every run (issue #11).
                _SYNCFS = ctypes.CDLL(None, use_errno=True).syncfs
            except (OSError, AttributeError):
                _SYNCFS = False
    return _SYNCFS or None


def drop_cache(f) -> None:
    """Ask the OS to forget a file's cached pages so a read-back really reads the drive.

    ``f``: a file object or a descriptor."""
    # Linux (not on Windows or macOS; written so mypy sees it for each platform)
    if sys.platform != "win32" and sys.platform != "darwin" and hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(f if isinstance(f, int) else f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


# Whether :func:`read_ahead` starts reads (Linux): then one thread can keep a drive's queue full.
READS_AHEAD = sys.platform.startswith("linux") and hasattr(os, "posix_fadvise")


def read_ahead(fd: int) -> None:
    """Ask the OS to start reading all of ``fd`` now, without waiting (Linux; elsewhere nothing)."""
    if sys.platform != "win32" and sys.platform != "darwin" and hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass


@dataclass(frozen=True)
class VolumeInfo:
    """What the destination file system can hold."""

    fstype: str
    case_insensitive: bool
    windows_names: bool          # must avoid <>:"\|?* , reserved names, trailing dot/space
    symlinks: bool
    max_file_size: int | None    # None: no practical limit
    ascii_only: bool = False     # refuses names outside ASCII (fusefat without a codepage)


FAT32_MAX = (1 << 32) - 1
_WINDOWS_FS = {"vfat", "fat", "fat32", "msdos", "exfat", "ntfs", "ntfs3", "fuseblk", "fuse.fusefat",
               "fusefat", "fuse.exfat", "fuse.exfat-fuse", "fuse.ntfs-3g"}


def fstype_of(path: Path) -> str:
    """The file-system type of the volume holding ``path`` ('' when unknown)."""
    best, best_len = "", -1
    real = os.path.realpath(path)
    for mp, fstype in _mounts():
        if (real == mp or real.startswith(mp.rstrip(os.sep) + os.sep)) and len(mp) > best_len:
            best, best_len = fstype.lower(), len(mp)
    return best


def _mounts() -> list[tuple[str, str]]:
    """(mount point, file-system type) of every mount: on Linux read from ``/proc/self/mounts`` (what
    psutil reads there too; importing psutil cost ~16-30 ms of every backup's start: issue #11),
    elsewhere from psutil."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/mounts", "rb") as f:
                return parse_mounts(f.read())
        except OSError:
            pass
    import psutil

    return [(part.mountpoint, part.fstype) for part in psutil.disk_partitions(all=True)]


_OCTAL = re.compile(rb"\\([0-7]{3})")


def parse_mounts(text: bytes) -> list[tuple[str, str]]:
    """The (mount point, type) pairs of a ``/proc/self/mounts`` text (fstab(5)'s format: a space, tab,
    newline or backslash in a mount point is written as an octal escape such as ``\\040``)."""
    out = []
    for line in text.split(b"\n"):
        fields = line.split()
        if len(fields) >= 3:
            mp = _OCTAL.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), fields[1])
            out.append((os.fsdecode(mp), fields[2].decode("utf-8", "replace")))
    return out


def probe_volume(tmp_dir: Path) -> VolumeInfo:
    """Find out what the volume holding ``tmp_dir`` accepts, by trying (in ``tmp_dir``)."""
    fstype = fstype_of(tmp_dir)
    probe = tmp_dir / "probe-case-a"
    case_insensitive = ascii_only = False
    try:
        probe.write_bytes(b"")
        case_insensitive = (tmp_dir / "PROBE-CASE-A").exists()
    except OSError:
        pass
    else:
        # Some FAT drivers (fusefat; vfat mounted without utf8) refuse every non-ASCII name.
        wide = tmp_dir / "probe-\u00e9"
        try:
            wide.write_bytes(b"")
        except (OSError, UnicodeEncodeError):
            ascii_only = True
        finally:
            _silent_unlink(wide)
    finally:
        _silent_unlink(probe)
    symlinks = True
    link = tmp_dir / "probe-link"
    try:
        os.symlink("probe-target", link)
    except (OSError, NotImplementedError):
        symlinks = False
    finally:
        _silent_unlink(link)
    windows = fstype in _WINDOWS_FS or sys.platform == "win32"
    if not windows:
        colon = tmp_dir / "probe:colon"
        try:
            colon.write_bytes(b"")
        except OSError:
            windows = True
        finally:
            _silent_unlink(colon)
    max_size = FAT32_MAX if fstype in {"vfat", "fat", "fat32", "msdos", "fuse.fusefat", "fusefat"} else None
    return VolumeInfo(fstype, case_insensitive, windows, symlinks, max_size, ascii_only)


def _silent_unlink(p: Path) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass
