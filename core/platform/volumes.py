"""Windows: the local volumes by drive letter, without psutil (issue #16).

``psutil.disk_partitions(all=True)`` asks every letter for its volume information,
network drives and CD/DVD drives included: slow (psutil issue 262) and, on a share
that does not answer, a long hang. Here the letters come from ``GetLogicalDrives``
and their kind from ``GetDriveTypeW`` (neither touches the medium); only removable
and fixed drives are then asked ``GetVolumeInformationW`` (file system, read-only),
with critical-error boxes off, so an empty card-reader slot is skipped instead of
asking the user to insert a disk. The records have psutil's fields, so the rest of
``core.agent.drives`` reads them alike on every OS.
"""

from __future__ import annotations

import ctypes
import sys
from ctypes import wintypes
from typing import NamedTuple

DRIVE_UNKNOWN, DRIVE_NO_ROOT_DIR, DRIVE_REMOVABLE, DRIVE_FIXED, DRIVE_REMOTE, DRIVE_CDROM, DRIVE_RAMDISK = range(7)
SEM_FAILCRITICALERRORS = 0x0001
FILE_READ_ONLY_VOLUME = 0x00080000
MAX_PATH = 260


class Partition(NamedTuple):
    """One mounted volume, with the fields of psutil's ``sdiskpart``."""

    device: str
    mountpoint: str
    fstype: str
    opts: str


def drive_letters(unitmask: int) -> list[str]:
    """The letters a 26-bit mask names (bit 0 = A), as in ``GetLogicalDrives`` and ``dbcv_unitmask``."""
    return [chr(ord("A") + i) for i in range(26) if unitmask >> i & 1]


def _kernel32():
    """kernel32 with the prototypes used here (Windows only)."""
    if sys.platform != "win32":
        raise OSError("drive letters exist on Windows only")
    k = ctypes.WinDLL("kernel32", use_last_error=True)
    k.GetLogicalDrives.restype = wintypes.DWORD
    k.GetLogicalDrives.argtypes = []
    k.GetDriveTypeW.restype = wintypes.UINT
    k.GetDriveTypeW.argtypes = [wintypes.LPCWSTR]
    k.GetVolumeInformationW.restype = wintypes.BOOL
    k.GetVolumeInformationW.argtypes = [wintypes.LPCWSTR, wintypes.LPWSTR, wintypes.DWORD, wintypes.LPDWORD,
                                        wintypes.LPDWORD, wintypes.LPDWORD, wintypes.LPWSTR, wintypes.DWORD]
    k.SetThreadErrorMode.restype = wintypes.BOOL
    k.SetThreadErrorMode.argtypes = [wintypes.DWORD, wintypes.LPDWORD]
    return k


def windows_partitions(kernel32=None) -> list[Partition]:
    """Removable and fixed drives that hold a medium, as ``C:\\`` roots; network drives, CD/DVD
    drives and RAM disks are left out before anything is asked of them."""
    k = kernel32 if kernel32 is not None else _kernel32()
    previous = wintypes.DWORD(0)
    k.SetThreadErrorMode(SEM_FAILCRITICALERRORS, ctypes.byref(previous))
    try:
        out = []
        for letter in drive_letters(k.GetLogicalDrives()):
            root = f"{letter}:\\"
            kind = k.GetDriveTypeW(root)
            if kind not in (DRIVE_REMOVABLE, DRIVE_FIXED):
                continue
            fstype = ctypes.create_unicode_buffer(MAX_PATH + 1)
            flags = wintypes.DWORD(0)
            if not k.GetVolumeInformationW(root, None, 0, None, None, ctypes.byref(flags), fstype, MAX_PATH + 1):
                continue   # no medium (card reader, empty slot) or unreadable
            mode = "ro" if flags.value & FILE_READ_ONLY_VOLUME else "rw"
            out.append(Partition(root, root, fstype.value,
                                 f"{mode},{'removable' if kind == DRIVE_REMOVABLE else 'fixed'}"))
        return out
    finally:
        k.SetThreadErrorMode(previous.value, None)
