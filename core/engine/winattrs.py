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
through the descriptor).

The hidden and system attributes (``FILE_ATTRIBUTE_HIDDEN`` 0x2, ``FILE_ATTRIBUTE_SYSTEM``
0x4) are recorded in the entry's optional ``attrs`` (docs/format.md), only where one is set,
so a set made elsewhere never has the field. A restore on Windows sets them again after the
content, times and mode are in place (:func:`set_recorded`); on Linux and macOS they are
left alone (a dot-name is what hides a file there; macOS's ``UF_HIDDEN`` is not set: a file
hidden in Finder that was only hidden in Explorer surprises more than it helps). A backup never
sets them on its copies in ``Latest/``: that copy is for browsing (docs/architecture.md).
"""

from __future__ import annotations

import os
import stat
import sys
import time

READONLY = getattr(stat, "FILE_ATTRIBUTE_READONLY", 0x1)
HIDDEN = getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0x2)
SYSTEM = getattr(stat, "FILE_ATTRIBUTE_SYSTEM", 0x4)
#: What a manifest's ``attrs`` holds and a restore sets again; other bits are never recorded or set.
RECORDED = HIDDEN | SYSTEM
_NORMAL = 0x80   # FILE_ATTRIBUTE_NORMAL: valid only alone, so never OR'ed into others
#: Whether a restore sets the recorded attributes (Windows; tests simulate it).
SETS_ATTRIBUTES = sys.platform == "win32"
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


def attributes(st: os.stat_result) -> int:
    """Windows' file attributes in an ``lstat`` (0 elsewhere: POSIX results have none)."""
    return getattr(st, "st_file_attributes", 0)


def recorded(st: os.stat_result) -> int:
    """The attributes a scan records for a file or folder with this ``lstat``: hidden and system."""
    return attributes(st) & RECORDED


def set_recorded(path: str, attrs: int) -> None:
    """Windows: add the recorded hidden and system attributes to the restored ``path`` (already in
    ``fs.long_path`` form), keeping the ones it has (read-only, archive...). No call when ``attrs``
    has neither or they are set already; a refusal is ignored, as for a folder's time."""
    attrs &= RECORDED
    if not attrs or not SETS_ATTRIBUTES:
        return
    try:
        now = attributes(os.lstat(path))
        if now & attrs != attrs:
            _set_attributes(path, (now & ~_NORMAL) | attrs)
    except OSError:
        pass


if sys.platform == "win32":
    import ctypes
    from ctypes import wintypes

    _SetFileAttributesW = ctypes.WinDLL("kernel32", use_last_error=True).SetFileAttributesW
    _SetFileAttributesW.argtypes = (wintypes.LPCWSTR, wintypes.DWORD)
    _SetFileAttributesW.restype = wintypes.BOOL

    def _set_attributes(path: str, attrs: int) -> None:
        """SetFileAttributesW (Python's os has no call for the hidden and system attributes)."""
        if not _SetFileAttributesW(path, attrs):
            raise ctypes.WinError(ctypes.get_last_error())
else:
    def _set_attributes(path: str, attrs: int) -> None:
        """No such attributes here (SETS_ATTRIBUTES is False; tests replace this)."""
        raise OSError(f"file attributes cannot be set on {sys.platform}")
