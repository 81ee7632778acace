"""Files in the way on Windows: read-only ones, and ones another program holds open.

On Windows a file with ``FILE_ATTRIBUTE_READONLY`` cannot be deleted or be the
target of a rename (``PermissionError``, winerror 5), whoever owns it; on POSIX
only the folder's permissions matter. So a restore that overwrites a read-only
file, and a backup that replaces or removes a read-only copy in ``Latest/``,
clear the attribute first, and only when the operation was refused (no extra
call per file otherwise). If the second try fails too, the file gets its old
mode back and the first error stands.

A file another program opened without sharing refuses the same way, with winerror
32 (ERROR_SHARING_VIOLATION) or 33 (ERROR_LOCK_VIOLATION). Virus scanners and
indexers open a file just written for a moment, so such a refusal is tried again a
few times (about 1.5 s in all) before it stands.

What is recorded: Python's ``st_mode`` on Windows has no write bits for a
read-only file, so a manifest's ``mode`` already carries the attribute, and a
restore on Windows sets it again (:func:`keep_readonly`; POSIX sets the whole mode
through the descriptor). The hidden and system attributes are not recorded: they
belong to the folder that holds them on the source computer (``desktop.ini``,
``Thumbs.db`` are excluded anyway) and a format-1 reader has no field for them.
"""

from __future__ import annotations

import os
import stat
import sys
import time

READONLY = getattr(stat, "FILE_ATTRIBUTE_READONLY", 0x1)
ERROR_SHARING_VIOLATION = 32
ERROR_LOCK_VIOLATION = 33
#: Waits before trying a locked file in the way again.
LOCKED_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8)


def is_locked(err: OSError) -> bool:
    """Whether ``err`` says another program holds the file (Windows sharing or lock violation)."""
    return isinstance(err, PermissionError) and getattr(err, "winerror", None) in (
        ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION)


def is_readonly(st: os.stat_result) -> bool:
    """Whether a file with this ``lstat`` is read-only (Windows' attribute, else no owner write bit)."""
    attrs = getattr(st, "st_file_attributes", None)
    if attrs is not None:
        return bool(attrs & READONLY)
    return not st.st_mode & stat.S_IWUSR


def clear_readonly(path) -> int | None:
    """Make the read-only file ``path`` writable; its mode before (None: it was not read-only).

    Never through a symlink: a link's own attributes are not what is in the way.
    """
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode) or not is_readonly(st):
        return None
    os.chmod(path, stat.S_IMODE(st.st_mode) | stat.S_IWUSR)   # Windows: clears FILE_ATTRIBUTE_READONLY
    return stat.S_IMODE(st.st_mode)


def _retry_writable(op, path, waits) -> None:
    pending = iter(waits)
    while True:
        try:
            op()
            return
        except PermissionError as err:
            wait = next(pending, None) if is_locked(err) else None
            if wait is not None:
                time.sleep(wait)
                continue
            before = clear_readonly(path)
            if before is None:
                raise
            break
    try:
        op()
    except OSError:
        try:
            os.chmod(path, before)
        except OSError:
            pass
        raise


def replace_over(src, dst, waits=LOCKED_WAITS) -> None:
    """``os.replace(src, dst)``; a read-only ``dst`` that refuses it is made writable and tried again,
    a locked one is waited for (``waits``: the pauses; () when the caller retries itself)."""
    _retry_writable(lambda: os.replace(src, dst), dst, waits)


def unlink(path, waits=LOCKED_WAITS) -> None:
    """``os.unlink(path)``; a read-only file that refuses it is made writable and tried again, a
    locked one is waited for."""
    _retry_writable(lambda: os.unlink(path), path, waits)


def keep_readonly(path, mode: int) -> None:
    """Windows: give a restored file its read-only attribute back when ``mode`` (as recorded) has no
    write bit. POSIX restores set the whole mode through the descriptor instead."""
    if sys.platform == "win32" and not mode & 0o222:
        try:
            os.chmod(path, stat.S_IREAD)
        except OSError:
            pass
