"""Windows: the local volumes by drive letter, without psutil (issue #16).

``psutil.disk_partitions(all=True)`` asks every letter for its volume information,
network drives and CD/DVD drives included: slow (psutil issue 262) and, on a share
that does not answer, a long hang. Here the letters come from ``GetLogicalDrives``
and their kind from ``GetDriveTypeW`` (neither touches the medium); only removable
and fixed drives are then asked ``GetVolumeInformationW`` (file system, read-only),
with critical-error boxes off, so an empty card-reader slot is skipped instead of
asking the user to insert a disk. The records have psutil's fields, so the rest of
``core.agent.drives`` reads them alike on every OS.

External disks (USB, FireWire, SD) usually say ``DRIVE_FIXED``, like the internal
one: their bus, asked of the volume with ``IOCTL_STORAGE_QUERY_PROPERTY`` (no read
access needed), adds ``external`` to their options.
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
GENERIC_NONE = 0                    # CreateFileW access: metadata queries only
FILE_SHARE_READ_WRITE = 0x1 | 0x2
OPEN_EXISTING = 3
IOCTL_STORAGE_QUERY_PROPERTY = 0x2D1400
BUS_1394, BUS_USB, BUS_SD, BUS_MMC = 0x4, 0x7, 0xC, 0xD
#: Buses a disk is plugged into from outside (Thunderbolt NVMe enclosures say NVMe: not told apart).
EXTERNAL_BUSES = {BUS_1394, BUS_USB, BUS_SD, BUS_MMC}
INVALID_HANDLE_VALUE = ctypes.c_void_p(-1).value


class STORAGE_PROPERTY_QUERY(ctypes.Structure):  # noqa: N801 - the Windows SDK's name
    _fields_ = [("PropertyId", ctypes.c_int), ("QueryType", ctypes.c_int),   # StorageDeviceProperty, standard
                ("AdditionalParameters", ctypes.c_ubyte * 1)]


class STORAGE_DEVICE_DESCRIPTOR(ctypes.Structure):  # noqa: N801
    _fields_ = [("Version", wintypes.DWORD), ("Size", wintypes.DWORD), ("DeviceType", ctypes.c_ubyte),
                ("DeviceTypeModifier", ctypes.c_ubyte), ("RemovableMedia", ctypes.c_ubyte),
                ("CommandQueueing", ctypes.c_ubyte), ("VendorIdOffset", wintypes.DWORD),
                ("ProductIdOffset", wintypes.DWORD), ("ProductRevisionOffset", wintypes.DWORD),
                ("SerialNumberOffset", wintypes.DWORD), ("BusType", ctypes.c_int),
                ("RawPropertiesLength", wintypes.DWORD), ("RawDeviceProperties", ctypes.c_ubyte * 1)]


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
    k.CreateFileW.restype = wintypes.HANDLE
    k.CreateFileW.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, wintypes.LPVOID, wintypes.DWORD,
                              wintypes.DWORD, wintypes.HANDLE]
    k.DeviceIoControl.restype = wintypes.BOOL
    k.DeviceIoControl.argtypes = [wintypes.HANDLE, wintypes.DWORD, wintypes.LPVOID, wintypes.DWORD, wintypes.LPVOID,
                                  wintypes.DWORD, wintypes.LPDWORD, wintypes.LPVOID]
    k.CloseHandle.restype = wintypes.BOOL
    k.CloseHandle.argtypes = [wintypes.HANDLE]
    return k


def bus_type(kernel32, letter: str) -> int | None:
    """The storage bus of the disk holding volume ``letter`` (``BUS_USB``...), or None if it cannot be told."""
    handle = kernel32.CreateFileW(f"\\\\.\\{letter}:", GENERIC_NONE, FILE_SHARE_READ_WRITE, None,
                                  OPEN_EXISTING, 0, None)
    if handle in (None, INVALID_HANDLE_VALUE):
        return None
    try:
        query = STORAGE_PROPERTY_QUERY(0, 0)
        descriptor = STORAGE_DEVICE_DESCRIPTOR()
        returned = wintypes.DWORD(0)
        if not kernel32.DeviceIoControl(handle, IOCTL_STORAGE_QUERY_PROPERTY, ctypes.byref(query),
                                        ctypes.sizeof(query), ctypes.byref(descriptor), ctypes.sizeof(descriptor),
                                        ctypes.byref(returned), None):
            return None
        return descriptor.BusType
    finally:
        kernel32.CloseHandle(handle)


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
            opts = ["ro" if flags.value & FILE_READ_ONLY_VOLUME else "rw",
                    "removable" if kind == DRIVE_REMOVABLE else "fixed"]
            if kind == DRIVE_FIXED and bus_type(k, letter) in EXTERNAL_BUSES:
                opts.append("external")
            out.append(Partition(root, root, fstype.value, ",".join(opts)))
        return out
    finally:
        k.SetThreadErrorMode(previous.value, None)
