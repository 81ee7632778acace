"""Real file systems on loop devices: ext4 (kernel), exFAT and FAT32 (FUSE).

A ``LoopDrive`` is a sparse image file in a temp folder, formatted with the
real mkfs and mounted like a USB stick would be, so tests see the real
file-system rules (FAT names and sizes, exFAT case folding, fuseblk in psutil)
instead of a simulation. It needs root, loop devices and, for exFAT / FAT,
/dev/fuse; where the machine forbids any of that, ``check_available`` says
exactly what is missing and the fixtures skip with that reason (set
``PLUGBACK_REQUIRE_REALDRIVE=1`` to make it a failure instead).

Mount types as psutil reports them (``psutil.disk_partitions(all=True)``):

======  =======================  ==============  ==========================
fstype  mounted by               psutil fstype   psutil, all=False
======  =======================  ==============  ==========================
ext4    mount (kernel)           ext4            listed
exfat   mount.exfat-fuse (FUSE)  fuseblk         listed
vfat    fusefat (FUSE)           fuse.fusefat    *not* listed (no /dev device)
======  =======================  ==============  ==========================

fusefat quirks: it has no statfs (``psutil.disk_usage`` reports 0 total and 0
free) and is slow for big files; keep vfat test data small. FAT rules themselves
(8.3 + long names, case-insensitive, no ':' etc., 2-second mtimes, 4 GiB - 1
file size) are real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


class DriveUnavailable(Exception):
    """This machine cannot make or mount a real drive; the message says why."""


@dataclass(frozen=True)
class FsKind:
    """How to make and mount one kind of file system."""

    name: str
    mkfs: tuple[str, ...]          # command before the label option and image
    label_option: str              # "" = do not label (see vfat)
    mount_helper: str              # "mount" for the kernel, else the FUSE program
    mount_options: tuple[str, ...]
    psutil_fstype: str
    packages: str                  # Debian packages that provide the tools
    fuse: bool

# How long a "target is busy" unmount is tried again: a look that is ending (the agent's
# glance at a new volume) clears in milliseconds; a file left open (a real bug) does not.
BUSY_GRACE = 2.0

KINDS = {
    "ext4": FsKind("ext4", ("mkfs.ext4", "-q", "-F"), "-L", "mount", (), "ext4", "e2fsprogs", False),
    "exfat": FsKind("exfat", ("mkfs.exfat",), "-L", "mount.exfat-fuse", (), "fuseblk",
                    "exfatprogs exfat-fuse", True),
    # fusefat mounts read-only unless told "rw+" (its name for read-write). No volume label:
    # fusefat lists the label's root entry as a file, so a label "PLUGBACK" would make
    # mkdir("Plugback") fail with EEXIST (FAT names are case-insensitive).
    "vfat": FsKind("vfat", ("mkfs.vfat", "-F", "32"), "", "fusefat", ("-o", "rw+"), "fuse.fusefat",
                   "dosfstools fusefat", True),
}


def check_available(fstype: str) -> None:
    """Raise ``DriveUnavailable`` naming what this machine lacks to mount ``fstype``."""
    kind = KINDS[fstype]
    if not sys.platform.startswith("linux"):
        raise DriveUnavailable(f"real {fstype} drives are made with Linux loop devices; this is {sys.platform}")
    if os.geteuid() != 0:
        raise DriveUnavailable(f"real {fstype} drives need root (losetup, mount); run the tests as root")
    if not Path("/dev/loop-control").exists():
        raise DriveUnavailable("no /dev/loop-control: this machine (container?) has no loop devices")
    if kind.fuse and not Path("/dev/fuse").exists():
        raise DriveUnavailable(f"no /dev/fuse: {fstype} is mounted with FUSE ({kind.mount_helper})")
    for tool in ("losetup", "umount", kind.mkfs[0], kind.mount_helper):
        if shutil.which(tool) is None:
            raise DriveUnavailable(f"'{tool}' is not installed (Debian: apt-get install {kind.packages} "
                                   "util-linux; ./dev setup does it)")


def _run(cmd: list[str], what: str, timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise DriveUnavailable(f"{what} failed: {' '.join(cmd)} -> exit {proc.returncode}: "
                               f"{(proc.stderr or proc.stdout).strip()}")
    return proc


class LoopDrive:
    """A sparse image with a real file system, attached to a loop device and mountable.

    Create with ``LoopDrive.create(...)``; always ``close()`` it (the fixtures do).
    """

    def __init__(self, fstype: str, image: Path, mount_root: Path, label: str):
        self.kind = KINDS[fstype]
        self.fstype = fstype
        self.image = image
        self.mount_root = mount_root
        self.label = label
        self.device: str | None = None
        self.mount_point: Path | None = None
        self._mounts = 0

    @classmethod
    def create(cls, fstype: str, workdir: Path, *, size_mb: int = 128, label: str = "PLUGBACK",
               mount: bool = True) -> "LoopDrive":
        """Make a ``size_mb`` sparse image in ``workdir``, format it, attach it, and mount it.

        Raises ``DriveUnavailable`` when the machine cannot do it.
        """
        check_available(fstype)
        workdir.mkdir(parents=True, exist_ok=True)
        drive = cls(fstype, workdir / f"{fstype}.img", workdir / "mnt", label)
        with open(drive.image, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        try:
            kind = drive.kind
            label_args = [kind.label_option, label] if kind.label_option else []
            proc = subprocess.run([*kind.mkfs, *label_args, str(drive.image)],
                                  capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
            if proc.returncode != 0:  # a broken mkfs is a real failure, not a missing capability
                raise RuntimeError(f"{kind.mkfs[0]} failed: {proc.stderr.strip()}")
            drive.device = _run(["losetup", "--find", "--show", str(drive.image)], "attaching a loop device"
                                ).stdout.strip()
            if mount:
                drive.mount()
        except BaseException:
            drive.close()
            raise
        return drive

    @property
    def mounted(self) -> bool:
        return self.mount_point is not None

    def mount(self, at: str | os.PathLike | None = None) -> Path:
        """Mount the drive at ``at`` (created if needed) or a fresh folder; return the mount point.

        Like plugging the same stick in again: a different mount point each time
        unless ``at`` says otherwise.
        """
        if self.mounted:
            raise RuntimeError(f"{self.fstype} drive is already mounted at {self.mount_point}")
        if at is None:
            self._mounts += 1
            at = self.mount_root / f"{self.label}-{self._mounts}"
        mount_point = Path(at)
        mount_point.mkdir(parents=True, exist_ok=True)
        if self.kind.mount_helper == "mount":
            cmd = ["mount", "-t", self.fstype, self.device, str(mount_point)]
        else:
            cmd = [self.kind.mount_helper, *self.kind.mount_options, self.device, str(mount_point)]
        _run(cmd, f"mounting the {self.fstype} test drive")
        _wait_for(lambda: os.path.ismount(mount_point), 10, f"{mount_point} to appear as a mount")
        self.mount_point = mount_point
        return mount_point

    def unmount(self, lazy: bool = False) -> None:
        """Unmount (``lazy``: detach now even if files are open, like yanking the stick)."""
        if not self.mounted:
            return
        mount_point = self.mount_point
        cmd = ["umount", "-l", str(mount_point)] if lazy else ["umount", str(mount_point)]
        deadline = time.monotonic() + BUSY_GRACE
        while True:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            if proc.returncode == 0:
                break
            if "busy" not in proc.stderr or time.monotonic() > deadline:
                raise RuntimeError(f"umount {mount_point} failed: {proc.stderr.strip()}{_holders(mount_point)}")
            time.sleep(0.05)   # a look that is ending (the agent's glance at a new volume), as a user's retry
        self.mount_point = None
        if self.kind.fuse and not lazy:
            # The FUSE daemon flushes and exits after umount returns; wait, or a remount
            # would open the device while the old daemon still writes to it.
            _wait_for(lambda: not _device_open(self.device), 20, f"the FUSE daemon to release {self.device}")

    def partition(self):
        """This drive's entry in ``psutil.disk_partitions(all=True)`` (None when not mounted)."""
        if not self.mounted:
            return None
        for part in psutil.disk_partitions(all=True):
            if Path(part.mountpoint) == self.mount_point:
                return part
        return None

    def close(self) -> None:
        """Unmount (lazily if it is busy) and detach the loop device. Safe to call twice."""
        if self.mounted:
            try:
                self.unmount()
            except (RuntimeError, subprocess.TimeoutExpired):
                subprocess.run(["umount", "-l", str(self.mount_point)], capture_output=True)
                self.mount_point = None
        if self.device:
            # A busy device is detached by the kernel when released (autoclear).
            subprocess.run(["losetup", "-d", self.device], capture_output=True)
            self.device = None

    def __repr__(self):
        return f"<LoopDrive {self.fstype} {self.device} at {self.mount_point}>"


def _open_files():
    """``(pid folder, target)`` of every open descriptor this process may look at in /proc."""
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                yield fd_dir.parent, os.readlink(fd)
        except OSError:  # the process went away, or is not ours to look at
            continue


def _device_open(device: str) -> bool:
    """True while some process has ``device`` open (a FUSE daemon finishing up)."""
    return any(target == device for _, target in _open_files())


def _holders(mount_point: Path) -> str:
    """Which processes hold files under ``mount_point`` open (for the "busy" message)."""
    held = set()
    for proc, target in _open_files():
        if target == str(mount_point) or target.startswith(f"{mount_point}/"):
            try:
                held.add(f"pid {proc.name} ({(proc / 'comm').read_text().strip()}): {target}")
            except OSError:
                continue
    return "; open: " + ", ".join(sorted(held)[:5]) if held else ""


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
