"""Mounted volumes, Plugback drives (``Plugback/drive.json``) and enrolling one.

A drive is known by its ``drive_id`` (a random UUID written into
``<mount>/Plugback/drive.json`` when it is enrolled), whatever mount point or
letter it gets today. Listing uses ``psutil.disk_partitions(all=True)``
(without ``all`` psutil hides FUSE mounts such as exFAT through
``mount.exfat-fuse``, fstype ``fuseblk``) and on Windows the drive letters
(``core.platform.volumes``: network and CD/DVD drives are never asked anything).

Listing never stalls its caller (issue #16): it runs in a worker thread and
gives up after :data:`LIST_TIMEOUT` seconds, and network file systems are
dropped from the list before anything (``statvfs``, ``drive.json``) touches
them: a dead NFS or SMB share hangs every call that does.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import shutil
import sys
import threading
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout  # TimeoutError itself from 3.11 on
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil

from core.engine import safeio
from core.engine.atomic import replace_file
from core.engine.layout import DRIVE_FILE, DRIVE_FORMAT, FORMAT_VERSION, drive_dir, drive_file
from core.errors import DriveFileDamaged, NotEnrollable, PlugbackError, VolumesNotListed
from core.platform.volumes import windows_partitions

log = logging.getLogger(__name__)

# File systems a backup drive can carry. Everything else (proc, sysfs, tmpfs,
# overlay, squashfs, cgroup, nsfs, autofs...) is a pseudo or read-only system mount.
DRIVE_FSTYPES = {
    "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "vfat", "msdos", "fat", "fat32", "exfat",
    "ntfs", "ntfs3", "fuseblk", "hfs", "hfsplus", "apfs", "ufs", "zfs",
    "fuse.fusefat", "fuse.exfat",   # FAT / exFAT through FUSE helpers
}
# Network file systems (mount types as Linux and macOS name them): never listed, never statted.
NETWORK_FSTYPES = {
    "nfs", "nfs4", "cifs", "smb", "smbfs", "smb2", "smb3", "afs", "afpfs", "ncpfs", "ncp", "9p", "ceph",
    "glusterfs", "lustre", "gpfs", "webdav", "davfs", "coda", "ocfs2", "gfs2", "beegfs", "cvfs",
}
# FUSE helpers that reach over the network ("fuse.<helper>", or the helper's own name as fstype).
NETWORK_FUSE = {"sshfs", "davfs2", "davfs", "rclone", "s3fs", "gcsfuse", "glusterfs", "cephfs", "ceph",
                "curlftpfs", "smbnetfs", "afpfs", "goofys", "juicefs", "gvfsd-fuse", "blobfuse", "blobfuse2"}
#: Seconds a listing of the volumes may take before its caller gives up (the worker keeps waiting).
LIST_TIMEOUT = 5.0
# Mount points that are the system, whatever file system they have.
SYSTEM_MOUNTS = {"/", "/boot", "/boot/efi", "/efi", "/usr", "/var", "/home", "/opt", "/srv", "/tmp",
                 "/System/Volumes/Data", "/System/Volumes/VM", "/System/Volumes/Preboot",
                 "/System/Volumes/Update", "/private/var/vm"}


@dataclass
class Volume:
    """One mounted volume (the IPC ``Volume`` shape)."""

    mount: str
    device: str
    label: str
    fstype: str
    total: int
    free: int
    removable: bool
    drive_id: str | None
    enrolled: bool = False
    #: The file system for people ("exfat" where psutil says "fuseblk"); "unknown" if it cannot be told.
    filesystem: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DriveInfo:
    """The contents of ``Plugback/drive.json``."""

    drive_id: str
    label: str
    created: str


def read_drive_file(mount: Path) -> DriveInfo | None:
    """The drive.json on ``mount``, or None if it is not a Plugback drive (or unreadable).

    The file is untrusted: it is read without following symlinks or blocking (a FIFO
    must not hang the drive watcher) and capped in size, then checked by
    :func:`decode_drive_file`.
    """
    mount = Path(mount)
    try:
        return decode_drive_file(safeio.read_bytes(drive_file(mount), MAX_DRIVE_FILE_BYTES, root=mount),
                                 drive_file(mount))
    except FileNotFoundError:
        return None
    except (OSError, PlugbackError) as err:
        log.info("%s is not used as a Plugback drive: %s", mount, err)
        return None


MAX_DRIVE_FILE_BYTES = 64 * safeio.KIB
_DRIVE_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")


def decode_drive_file(raw: bytes, path: Path | str = DRIVE_FILE) -> DriveInfo:
    """drive.json's bytes, checked; DriveFileDamaged naming ``path`` when they are not a drive file."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise DriveFileDamaged(path=str(path), reason="it is not valid JSON") from None
    if not isinstance(data, dict) or data.get("format") != DRIVE_FORMAT:
        raise DriveFileDamaged(path=str(path), reason="it is not a Plugback drive file")
    drive_id = data.get("drive_id")
    if not isinstance(drive_id, str) or not _DRIVE_ID.match(drive_id):
        raise DriveFileDamaged(path=str(path), reason="its 'drive_id' is not an id")

    def text(key: str) -> str:
        v = data.get(key, "")
        # Shown in menus and notifications: printable, one line, not endless.
        return "".join(c for c in v if c.isprintable())[:200] if isinstance(v, str) else ""

    return DriveInfo(drive_id=drive_id, label=text("label"), created=text("created"))


def write_drive_file(mount: Path, label: str, *, now: datetime | None = None) -> DriveInfo:
    """Write a new drive.json (fresh drive_id) on ``mount``, flushed to the drive."""
    info = DriveInfo(drive_id=str(uuid.uuid4()), label=label,
                     created=(now or datetime.now(timezone.utc)).isoformat(timespec="seconds"))
    folder = drive_dir(Path(mount))
    folder.mkdir(exist_ok=True)
    data = {"format": DRIVE_FORMAT, "version": FORMAT_VERSION, "drive_id": info.drive_id,
            "label": info.label, "created": info.created}
    replace_file(drive_file(Path(mount)), (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    return info


def _is_drive_fs(part) -> bool:
    if sys.platform == "win32":
        return bool(part.fstype) and not {"cdrom", "remote"} & set(part.opts.split(","))
    fstype = part.fstype.lower()
    if fstype not in DRIVE_FSTYPES:
        return False
    if sys.platform == "darwin" and part.mountpoint.startswith("/System/Volumes/"):
        return False
    return True


def _labels_by_device() -> dict[str, str]:
    """Linux: /dev/disk/by-label maps labels to devices (names are \\x20-escaped)."""
    out = {}
    by_label = Path("/dev/disk/by-label")
    if by_label.is_dir():
        for link in by_label.iterdir():
            try:
                out[os.path.realpath(link)] = link.name.encode().decode("unicode_escape")
            except (OSError, UnicodeDecodeError):
                continue
    return out


def _removable(part) -> bool:
    if sys.platform == "win32":
        # "external": a USB/FireWire/SD disk that says DRIVE_FIXED (core.platform.volumes)
        return bool({"removable", "external"} & set(part.opts.split(",")))
    mount = part.mountpoint
    if mount.startswith(("/media/", "/run/media/", "/mnt/", "/Volumes/")):
        return True
    if part.fstype.startswith("fuse"):
        return True   # FUSE file systems (exFAT, FAT, NTFS helpers) are mounted for users' drives
    dev = os.path.basename(os.path.realpath(part.device))
    if dev.startswith("loop"):
        return True
    for name in (dev, dev.rstrip("0123456789").rstrip("p") if dev.startswith("nvme") else dev.rstrip("0123456789")):
        try:
            if Path(f"/sys/block/{name}/removable").read_text().strip() == "1":
                return True
        except OSError:
            continue
    return False


def list_volumes(enrolled_ids: set[str] | frozenset = frozenset()) -> list[Volume]:
    """Mounted volumes that could hold backups, each marked with its drive_id if it has one."""
    labels = _labels_by_device() if sys.platform.startswith("linux") else {}
    seen, out = set(), []
    for part in partitions():
        if not _is_drive_fs(part) or part.mountpoint in seen:
            continue
        seen.add(part.mountpoint)
        try:
            usage = shutil.disk_usage(part.mountpoint)
        except OSError:
            continue   # vanished or unreadable between listing and asking
        info = read_drive_file(Path(part.mountpoint))
        label = (info.label if info and info.label else None) or labels.get(os.path.realpath(part.device)) \
            or (os.path.basename(part.mountpoint.rstrip("/\\")) or part.mountpoint)
        out.append(Volume(mount=part.mountpoint, device=part.device, label=label, fstype=part.fstype,
                          total=usage.total, free=usage.free, removable=_removable(part),
                          drive_id=info.drive_id if info else None,
                          enrolled=bool(info and info.drive_id in enrolled_ids),
                          filesystem=file_system(part.fstype, part.device)))
    return out


#: FUSE helpers' subtypes ("fuse.<helper>") and the file system each one mounts.
_FUSE_HELPERS = {"fusefat": "vfat", "exfat": "exfat", "ntfs-3g": "ntfs", "ntfs": "ntfs"}
#: Boot-sector signatures: (offset, bytes) -> file system, for a "fuseblk" nobody else can name.
_SIGNATURES = (((3, b"EXFAT   "), "exfat"), ((3, b"NTFS    "), "ntfs"), ((82, b"FAT32   "), "vfat"),
               ((54, b"FAT16   "), "vfat"), ((54, b"FAT12   "), "vfat"))
_fs_cache: dict[tuple[str, str], str] = {}


def file_system(fstype: str, device: str) -> str:
    """The file system as people know it. psutil says "fuseblk" for every FUSE block file system
    (exFAT, NTFS): ask lsblk, then blkid, then read the boot sector's signature; else "unknown"."""
    fstype = (fstype or "").lower()
    if fstype.startswith("fuse."):
        return _FUSE_HELPERS.get(fstype[5:], fstype[5:])
    if fstype != "fuseblk":
        return fstype or "unknown"
    key = (fstype, device)
    if key not in _fs_cache:
        _fs_cache[key] = _probe(device) or "unknown"
    return _fs_cache[key]


def _probe(device: str) -> str | None:
    import subprocess

    for cmd in (["lsblk", "-ndo", "FSTYPE", device], ["blkid", "-s", "TYPE", "-o", "value", device]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out:
            return out.lower()
    try:
        with open(device, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    return next((fs for (at, magic), fs in _SIGNATURES if head[at:at + len(magic)] == magic), None)


def is_network_fs(fstype: str) -> bool:
    """Whether a mount type is a network file system (NFS, SMB, sshfs, WebDAV...)."""
    fstype = (fstype or "").lower()
    base = fstype[5:] if fstype.startswith("fuse.") else fstype
    return base in NETWORK_FSTYPES or base in NETWORK_FUSE or base.startswith(("nfs", "smb", "cifs"))


def local_partitions() -> list:
    """Every mounted local volume (psutil's records), network file systems left out unasked.

    On Linux psutil only reads the mount table; on macOS it calls ``getfsstat``, which
    may wait on a dead share (hence :func:`partitions`' worker and timeout); on Windows
    the drive letters come from ``core.platform.volumes``.
    """
    if sys.platform == "win32":
        return list(windows_partitions())
    return [p for p in psutil.disk_partitions(all=True) if not is_network_fs(p.fstype)]


def local_mount_points() -> frozenset[str]:
    """The mount points of drive-capable volumes, listed in the calling thread (may block)."""
    return frozenset(p.mountpoint for p in local_partitions() if _is_drive_fs(p))


class Timed:
    """Calls ``fn`` in a worker thread and waits at most ``timeout`` seconds for it.

    A call still hanging from before is waited on again instead of starting another,
    so a hung mount costs one stuck daemon thread, not one per look (and not the
    process's exit: ``concurrent.futures`` pools join their threads at exit). The
    worker is started once and kept (cheaper than a new thread per look).
    Raises :class:`VolumesNotListed` when the time is up.
    """

    def __init__(self, fn, timeout: float = LIST_TIMEOUT):
        self.fn, self.timeout = fn, timeout
        self._lock = threading.Lock()
        self._pending: Future | None = None
        self._requests: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None

    def __call__(self):
        with self._lock:
            future = self._pending
            if future is None or future.done():
                future = self._pending = Future()
                self._requests.put(future)   # the worker is idle: the last call is done
                if self._worker is None:
                    self._worker = threading.Thread(target=self._work, name="volume-listing", daemon=True)
                    self._worker.start()
        try:
            return future.result(self.timeout)
        except FutureTimeout:
            raise VolumesNotListed(seconds=self.timeout) from None

    @property
    def hung(self) -> bool:
        """A call is still running (after its caller gave up on it)."""
        return self._pending is not None and not self._pending.done()

    def _work(self) -> None:
        while True:
            future = self._requests.get()
            future.set_running_or_notify_cancel()
            try:
                future.set_result(self.fn())
            except BaseException as err:   # noqa: BLE001 - handed to the caller
                future.set_exception(err)


_listing = Timed(local_partitions)


def partitions() -> list:
    """:func:`local_partitions` without stalling: VolumesNotListed after LIST_TIMEOUT seconds."""
    return _listing()


def mount_points() -> frozenset[str]:
    """The mount points of drive-capable volumes (VolumesNotListed when the listing hangs)."""
    return frozenset(p.mountpoint for p in partitions() if _is_drive_fs(p))


def find_drive(drive_id: str, mounts=None) -> Path | None:
    """Where the drive with ``drive_id`` is mounted now, or None."""
    for mount in sorted(mounts if mounts is not None else mount_points()):
        info = read_drive_file(Path(mount))
        if info and info.drive_id == drive_id:
            return Path(mount)
    return None


def system_volume_reason(mount: Path) -> str | None:
    """Why ``mount`` is a system volume (and must not be enrolled), or None."""
    mount = Path(os.path.abspath(mount))
    if sys.platform == "win32":
        system_drive = os.environ.get("SystemDrive", "C:").rstrip("\\").upper()
        if str(mount).rstrip("\\").upper() == system_drive:
            return f"it is the Windows system drive ({system_drive}); backups must go to another drive"
    elif str(mount) in SYSTEM_MOUNTS:
        return f"{mount} is part of the operating system; backups must go to a separate drive"
    try:
        dev = os.stat(mount).st_dev
    except OSError as err:
        return f"it cannot be read ({err.strerror})"
    home = Path.home()
    try:
        if os.stat(home).st_dev == dev:
            return f"it holds your home folder ({home}); a backup there is lost with the computer"
        root = Path(os.environ.get("SystemDrive", "C:") + "\\") if sys.platform == "win32" else Path("/")
        if os.stat(root).st_dev == dev:
            return "it is on the system drive; a backup there is lost with the computer"
    except OSError:
        pass
    return None


def enroll(mount: Path, label: str | None = None) -> tuple[DriveInfo, bool]:
    """Make the volume mounted at ``mount`` a Plugback drive.

    Returns ``(info, created)``: a drive that already has drive.json keeps its
    id (``created`` False). Refuses system volumes and says why.
    """
    mount = Path(mount)
    if not mount.is_dir():
        raise NotEnrollable(mount=str(mount), reason="there is no such folder; give the drive's mount point")
    mounts = mount_points()
    if str(mount) not in mounts and str(mount.resolve()) not in mounts:
        raise NotEnrollable(mount=str(mount), reason="it is not the mount point of a drive "
                            "('plugback drives' lists them)")
    reason = system_volume_reason(mount)
    if reason:
        raise NotEnrollable(mount=str(mount), reason=reason)
    existing = read_drive_file(mount)
    if existing:
        return existing, False
    try:
        return write_drive_file(mount, label or os.path.basename(str(mount).rstrip("/\\")) or "Backup"), True
    except OSError as err:
        raise NotEnrollable(mount=str(mount), reason=f"Plugback cannot write to it ({err.strerror}); "
                            "check it is not read-only") from None
