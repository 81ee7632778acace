"""Ejecting a drive so it is safe to unplug.

Each ejector flushes first, then asks the OS to unmount (and, on Linux with
udisks, power the device off). Failures raise EjectFailed with the OS's words.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import psutil

from core.errors import EjectFailed


def _sync() -> None:
    """Flush every file system's buffers before unmounting (POSIX; Windows has no ``sync``)."""
    if sys.platform != "win32":
        os.sync()


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


class Ejector:
    """Ejects a drive; the base class only flushes (no OS support).

    ``run`` runs a command and returns its CompletedProcess (the tests pass a fake).
    """

    def __init__(self, run=None):
        self.run = run or _run

    def eject(self, mount: str) -> None:
        _sync()
        raise EjectFailed(mount=mount, reason="ejecting is not supported on this system; unmount it yourself")


def _device_of(mount: str) -> str | None:
    for part in psutil.disk_partitions(all=True):
        if part.mountpoint == mount:
            return part.device
    return None


class LinuxEjector(Ejector):
    """``udisksctl unmount`` + ``power-off`` when udisks is there, else ``umount``."""

    def eject(self, mount: str) -> None:
        _sync()
        device = _device_of(mount)
        udisks = shutil.which("udisksctl")
        if udisks and device and device.startswith("/dev/"):
            proc = self.run([udisks, "unmount", "-b", device, "--no-user-interaction"])
            if proc.returncode == 0:
                self.run([udisks, "power-off", "-b", device, "--no-user-interaction"])   # best effort
                return
        proc = self.run(["umount", mount])
        if proc.returncode != 0:
            raise EjectFailed(mount=mount, reason=(proc.stderr or proc.stdout).strip() or "umount failed")


class MacEjector(Ejector):
    """``diskutil eject`` (unmounts every volume of the disk)."""

    def eject(self, mount: str) -> None:
        _sync()
        proc = self.run(["diskutil", "eject", mount])
        if proc.returncode != 0:
            raise EjectFailed(mount=mount, reason=(proc.stderr or proc.stdout).strip())


class WindowsEjector(Ejector):
    """The Explorer "Eject" verb on the drive letter (what the shell's own menu does)."""

    def eject(self, mount: str) -> None:
        letter = mount.rstrip("\\")
        script = ("(New-Object -ComObject Shell.Application).Namespace(17).ParseName('%s')"
                  ".InvokeVerb('Eject')" % letter.replace("'", ""))
        proc = self.run(["powershell", "-NoProfile", "-NonInteractive", "-Command", script])
        if proc.returncode != 0:
            raise EjectFailed(mount=mount, reason=(proc.stderr or proc.stdout).strip())
