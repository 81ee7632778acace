"""What a volume calls itself: its file-system label and a stable identity (issue #14).

The unknown-drive offer names a drive by the label the user gave it ("Use
‘HOLIDAYS’ for backups?") and remembers "Not this drive" by an identity that
survives re-plugging: the file system's UUID (Linux ``blkid``/udev, macOS
``diskutil``), the volume serial number on Windows. A mount point's folder name
is never taken for a label: a drive without a label is named by its size and
file system instead (:func:`describe`).

One interface, :func:`identify`, with a per-OS body chosen by ``sys.platform``;
anything that fails gives an empty :class:`VolumeIdentity` (no label, no id).
"""

from __future__ import annotations

import os
import plistlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_TIMEOUT = 5


@dataclass(frozen=True)
class VolumeIdentity:
    """A volume's file-system label (None: it has none) and stable id (None: not known)."""

    label: str | None = None
    uuid: str | None = None


def clean(text: str | None, limit: int = 64) -> str | None:
    """A label as it may be shown: printable, one line, not endless; None when empty.

    Labels come from the drive (untrusted): no control characters reach a menu or a notification.
    """
    if not isinstance(text, str):
        return None
    text = "".join(c for c in text if c.isprintable()).strip()[:limit]
    return text or None


def identify(device: str, mount: str) -> VolumeIdentity:
    """The label and identity of the volume on ``device`` mounted at ``mount`` (this OS's way)."""
    try:
        if sys.platform.startswith("linux"):
            found = _linux(device)
        elif sys.platform == "darwin":
            found = _mac(mount)
        elif sys.platform == "win32":
            found = _windows(mount)
        else:
            found = VolumeIdentity()
    except (OSError, ValueError, subprocess.SubprocessError):
        found = VolumeIdentity()
    return VolumeIdentity(clean(found.label), _key(found.uuid))


def _key(uuid: str | None) -> str | None:
    """An identity as config.json keeps it: printable ASCII without spaces, at most 80 characters."""
    if not isinstance(uuid, str) or not uuid.strip():
        return None
    return re.sub(r"[^\x21-\x7e]", "_", uuid.strip())[:80]


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, timeout=_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    return proc.stdout.decode("utf-8", "replace") if proc.returncode == 0 else ""


def _properties(text: str) -> dict[str, str]:
    """``KEY=value`` lines (``blkid -o export``, ``udevadm info --query=property``)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _by_label(device: str) -> str | None:
    """``/dev/disk/by-label`` (udev's links; names escape spaces as ``\\x20``), when it exists."""
    folder = Path("/dev/disk/by-label")
    if not folder.is_dir():
        return None
    real = os.path.realpath(device)
    for link in folder.iterdir():
        if os.path.realpath(link) == real:
            return _unescape(link.name)
    return None


def _unescape(text: str) -> str:
    """udev's ``\\x20`` escapes (of UTF-8 bytes) back to the characters."""
    raw = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), text.encode("utf-8"))
    return raw.decode("utf-8", "replace")


def _linux(device: str) -> VolumeIdentity:
    """udev's database first (no root needed), then ``blkid`` (reads the superblock or its cache)."""
    if not device.startswith("/dev/"):
        return VolumeIdentity()   # FUSE names ("fusefat", "/dev/fuse") carry no file system to ask about
    props = _properties(_run(["udevadm", "info", "--query=property", f"--name={device}"]))
    # ID_FS_LABEL has unsafe characters replaced by "_"; the _ENC form keeps them, \x-escaped.
    label = _unescape(props["ID_FS_LABEL_ENC"]) if "ID_FS_LABEL_ENC" in props else _by_label(device)
    uuid = props.get("ID_FS_UUID")
    serial = props.get("ID_SERIAL_SHORT") or props.get("ID_SERIAL")
    if label is None or uuid is None:
        label = label or _blkid(device, "LABEL").rstrip("\n") or None
        uuid = uuid or _blkid(device, "UUID").strip() or None
    return VolumeIdentity(label, uuid or (f"serial:{serial}" if serial else None))


def _blkid(device: str, tag: str) -> str:
    """One tag by probing the device (``-p``: blkid's cache can hold the previous file system of a
    reused device); without read access to the device, blkid's cache is all there is."""
    proc = subprocess.run(["blkid", "-p", "-o", "value", "-s", tag, device], capture_output=True,
                          timeout=_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    if proc.returncode in (0, 2):   # 2: probed, and the tag is not there
        return proc.stdout.decode("utf-8", "replace")
    return _run(["blkid", "-o", "value", "-s", tag, device])


def _mac(mount: str) -> VolumeIdentity:
    """``diskutil info -plist MOUNT``: VolumeName (empty or "Untitled" for none) and VolumeUUID."""
    proc = subprocess.run(["diskutil", "info", "-plist", mount], capture_output=True, timeout=_TIMEOUT,
                          check=False, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        return VolumeIdentity()
    info = plistlib.loads(proc.stdout)
    name = info.get("VolumeName")
    if name in ("NO NAME", "Untitled"):   # what macOS calls a FAT/exFAT volume without a label
        name = None
    uuid = info.get("VolumeUUID") or info.get("DiskUUID")
    return VolumeIdentity(name if isinstance(name, str) else None, uuid if isinstance(uuid, str) else None)


def _windows(mount: str) -> VolumeIdentity:
    """``GetVolumeInformationW``: the volume label and the serial number mkfs/format gave it."""
    if sys.platform != "win32":
        return VolumeIdentity()
    import ctypes
    from ctypes import wintypes

    root = mount if mount.endswith("\\") else mount + "\\"
    name = ctypes.create_unicode_buffer(261)
    fs_name = ctypes.create_unicode_buffer(261)
    serial, max_len, flags = wintypes.DWORD(), wintypes.DWORD(), wintypes.DWORD()
    ok = ctypes.windll.kernel32.GetVolumeInformationW(
        ctypes.c_wchar_p(root), name, len(name), ctypes.byref(serial), ctypes.byref(max_len),
        ctypes.byref(flags), fs_name, len(fs_name))
    if not ok:
        return VolumeIdentity()
    return VolumeIdentity(name.value or None, f"serial:{serial.value:08X}")


def size_words(total: int) -> str:
    """'32 GB', '500 GB', '2 TB': a drive's size as its box says (decimal units, rounded)."""
    for unit, factor in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if total >= factor:
            value = total / factor
            return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}".replace(".0 ", " ")
    return f"{max(total, 0)} bytes"


def describe(label: str | None, total: int, filesystem: str) -> str:
    """How to name a drive to people: ‘HOLIDAYS’, or "the 32 GB exFAT drive" when it has no label."""
    if label:
        return f"‘{label}’"
    fs = {"vfat": "FAT", "exfat": "exFAT", "ntfs": "NTFS", "apfs": "APFS", "hfsplus": "Mac"}.get(
        filesystem, filesystem if filesystem and filesystem != "unknown" else "")
    return f"the {size_words(total)} {fs + ' ' if fs else ''}drive"
