"""Read-only files in the way: Windows refuses to replace or delete them.

On Windows a file with ``FILE_ATTRIBUTE_READONLY`` cannot be deleted or be the
target of a rename (``PermissionError``, winerror 5), whoever owns it; on POSIX
only the folder's permissions matter. So a restore that overwrites a read-only
file, and a backup that replaces or removes a read-only copy in ``Latest/``,
clear the attribute first, and only when the operation was refused (no extra
call per file otherwise). If the second try fails too, the file gets its old
mode back and the first error stands.

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

READONLY = getattr(stat, "FILE_ATTRIBUTE_READONLY", 0x1)


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


def _retry_writable(op, path) -> None:
    try:
        op()
        return
    except PermissionError:
        before = clear_readonly(path)
        if before is None:
            raise
    try:
        op()
    except OSError:
        try:
            os.chmod(path, before)
        except OSError:
            pass
        raise


def replace_over(src, dst) -> None:
    """``os.replace(src, dst)``; a read-only ``dst`` that refuses it is made writable and tried again."""
    _retry_writable(lambda: os.replace(src, dst), dst)


def unlink(path) -> None:
    """``os.unlink(path)``; a read-only file that refuses it is made writable and tried again."""
    _retry_writable(lambda: os.unlink(path), path)


def keep_readonly(path, mode: int) -> None:
    """Windows: give a restored file its read-only attribute back when ``mode`` (as recorded) has no
    write bit. POSIX restores set the whole mode through the descriptor instead."""
    if sys.platform == "win32" and not mode & 0o222:
        try:
            os.chmod(path, stat.S_IREAD)
        except OSError:
            pass
