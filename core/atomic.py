"""The atomic writer: write to the set's ``tmp/``, flush + fsync, replace into place, fsync the folder.

A reader sees the old file or the new one, never a torn one, whatever moment
the process dies or the drive is pulled. Retries on transient errors live in
``FileSystem.replace``; ENOSPC, EROFS and a vanished drive fail at once.
"""

from __future__ import annotations

import itertools
import os
import secrets
from pathlib import Path

from core.fs import FileSystem


_RUN = secrets.token_hex(6)   # per process; O_EXCL creation refuses any clash anyway
_COUNTER = itertools.count()


def tmp_name(tmp_dir: Path, hint: str = "") -> Path:
    """A fresh name in ``tmp/`` (cleared when a run starts, so leftovers never accumulate)."""
    # A counter, not random bytes per file: getrandom() for every small file shows in profiles.
    return Path(tmp_dir) / f"{_RUN}-{next(_COUNTER)}{hint}"


def write_atomic(fs: FileSystem, tmp_dir: Path, dest: Path, data: bytes, durable: bool = True) -> None:
    """Put ``data`` at ``dest`` atomically; with ``durable`` it survives a power cut once this returns."""
    tmp = tmp_name(tmp_dir, ".part")
    f = fs.open_write(tmp)
    try:
        fs.write(f, data)
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


def clear_tmp(fs: FileSystem, tmp_dir: Path) -> None:
    """Remove what an interrupted run left in ``tmp/`` (nothing there is referenced)."""
    if not tmp_dir.is_dir():
        fs.mkdir(tmp_dir)
        return
    for name in os.listdir(tmp_dir):
        p = tmp_dir / name
        if p.is_dir() and not p.is_symlink():
            for sub in os.listdir(p):
                fs.unlink(p / sub)
            fs.rmdir(p)
        else:
            fs.unlink(p)
