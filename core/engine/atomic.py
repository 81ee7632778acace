"""The one atomic writer: write a temp file, flush + fsync, replace into place, fsync the folder.

Every file Plugback replaces goes through :func:`replace_file`: set files
(manifests, ``plugback.json``, ``Latest.sha256``, via :func:`write_atomic`
and the set's ``tmp/``), the lock, ``drive.json``, and the local state files
(config, the IPC key). A reader sees the old file or the new one, never a
torn one, whatever moment the process dies or the drive is pulled. The temp
file is created exclusively (``O_EXCL``: never through a symlink planted
there). Retries on transient errors live in ``FileSystem.replace``; ENOSPC,
EROFS and a vanished drive fail at once.
"""

from __future__ import annotations

import itertools
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import Iterable, Iterator

from core.engine.fs import FileSystem
from core.errors import UnsafeSet

_RUN = secrets.token_hex(6)   # per process; O_EXCL creation refuses any clash anyway
_COUNTER = itertools.count()


def tmp_name(tmp_dir: str | Path, hint: str = "") -> str:
    """A fresh name in ``tmp/`` (cleared when a run starts, so leftovers never accumulate).

    A plain string: this runs for every file a backup copies, where building a ``Path``
    cost more than the file's own copy.
    """
    # A counter, not random bytes per file: getrandom() for every small file shows in profiles.
    return f"{tmp_dir}{os.sep}{_RUN}-{next(_COUNTER)}{hint}"


class LocalFS(FileSystem):
    """File operations on this computer's own disk (state files): OS errors pass through as they
    are, since the drive's messages ("the backup drive is full") would be wrong there."""

    def _translate(self, err: OSError, path) -> OSError:  # type: ignore[override]
        return err

    def _call(self, fn, path, retry: bool = False):
        try:
            return super()._call(fn, path, retry)
        except OSError as err:   # super() raised ``err from err``: drop the self-reference
            err.__cause__ = None
            raise


def replace_file(dest: Path, data: bytes | Iterable[bytes], *, fs: FileSystem | None = None,
                 tmp_dir: Path | None = None, mode: int | None = None, durable: bool = True) -> None:
    """Put ``data`` (bytes, or an iterable of byte chunks for a stream) at ``dest`` atomically;
    with ``durable`` it survives a power cut once this returns.

    ``fs``: a set's file system (drive errors, fault injection); default :class:`LocalFS`.
    ``tmp_dir``: where the temp file goes (a set's ``tmp/``); default ``dest``'s own folder,
    as a hidden name. ``mode``: permissions of the new file (e.g. 0o600 for secrets), set
    before any byte is written.
    """
    fs = fs or LocalFS()
    dest = Path(dest)
    tmp: str | Path = tmp_name(tmp_dir, ".part") if tmp_dir is not None else \
        dest.parent / f".{dest.name}.{_RUN}-{next(_COUNTER)}.tmp"
    f = fs.open_write(tmp)
    try:
        if mode is not None and sys.platform != "win32":
            os.fchmod(f.fileno(), mode)
        for chunk in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else _coalesced(data)):
            fs.write(f, chunk)
        if durable:
            fs.fsync(f)
    finally:
        fs.close(f)
    try:
        fs.replace(tmp, dest)
    except BaseException:
        fs.unlink(tmp)
        raise
    if durable:
        fs.fsync_dir(dest.parent)


def _coalesced(chunks: Iterable[bytes], size: int = 1 << 20) -> Iterator[bytes | bytearray]:
    """``chunks`` joined into writes of ``size`` bytes or more (the last one less): a stream of
    many small pieces (``Latest.sha256`` rewritten around a day's ~400 changed lines came as ~1,000)
    costs a system call a write, not a piece."""
    held = bytearray()
    for chunk in chunks:
        if not held and len(chunk) >= size:
            yield chunk
            continue
        held += chunk
        if len(held) >= size:
            yield held
            held = bytearray()
    if held:
        yield held


def write_atomic(fs: FileSystem, tmp_dir: Path, dest: Path, data: bytes | Iterable[bytes],
                 durable: bool = True) -> None:
    """A set file through the set's ``tmp/`` (see :func:`replace_file`)."""
    replace_file(dest, data, fs=fs, tmp_dir=tmp_dir, durable=durable)


def clear_tmp(fs: FileSystem, tmp_dir: Path, keep: str | None = None) -> None:
    """Remove what an interrupted run left in ``tmp/`` (nothing there is referenced), but ``keep`` (a
    name in it: a backup keeps a first backup's ``Latest/`` being built, core/engine/fresh_latest.py,
    and decides itself).

    A symlink where ``tmp/`` belongs is refused, never followed: clearing it would
    empty whatever folder it points to (issue #10).
    """
    try:
        st = os.lstat(tmp_dir)
    except FileNotFoundError:
        fs.mkdir(tmp_dir)
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeSet(path=str(tmp_dir), reason="is not a real folder (a symbolic link or a file), so "
                        "Plugback did not clear it")
    with os.scandir(tmp_dir) as it:
        entries = [e.path for e in it if e.name != keep]
    for path in entries:
        remove_tree(fs, path)


def remove_tree(fs: FileSystem, path: str | Path) -> None:
    """Remove ``path`` and, if it is a real folder, everything below it; a symlink is removed, never
    followed (``os.walk`` does not enter one; ``unlink`` removes the link itself)."""
    if not os.path.isdir(path) or os.path.islink(path):
        fs.unlink(Path(path))
        return
    for folder, dirs, files in os.walk(path, topdown=False):
        for name in files:
            fs.unlink(Path(folder) / name)
        for name in dirs:
            sub = Path(folder) / name
            fs.unlink(sub) if os.path.islink(sub) else fs.rmdir(sub)
    fs.rmdir(Path(path))
