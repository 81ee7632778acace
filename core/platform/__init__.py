"""Per-OS concerns behind one small interface each, chosen here and nowhere else.

* notifications: :class:`core.platform.notify.Notifier`
* eject: :class:`core.platform.eject.Ejector`
* start at login: :class:`core.platform.autostart.Autostart`
* drive events: :class:`core.platform.drive_events.DriveEvents`

Each has a do-nothing (or plain) fallback, so the agent runs on a machine that
lacks a desktop. Implementations are imported by name so PyInstaller sees them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from core.platform import autostart, drive_events, eject, notify


def notifier() -> notify.Notifier:
    """The desktop notifier for this OS (a do-nothing one when none is available)."""
    if sys.platform.startswith("linux"):
        return notify.LinuxNotifier.available() or notify.Notifier()
    if sys.platform == "darwin":
        return notify.MacNotifier()
    return notify.Notifier()   # Windows: the tray icon's balloon (tray.icon) does it


def ejector() -> eject.Ejector:
    """How to eject a drive on this OS."""
    if sys.platform.startswith("linux"):
        return eject.LinuxEjector()
    if sys.platform == "darwin":
        return eject.MacEjector()
    if sys.platform == "win32":
        return eject.WindowsEjector()
    return eject.Ejector()


def autostarter(command: list[str], *, folder: Path | None = None) -> autostart.Autostart:
    """Start-at-login for ``command``.

    ``folder`` replaces the OS's own place (``PLUGBACK_HOME`` and tests): the
    entry is written there in this OS's format. Windows keeps the entry in the
    registry, which has no such folder, so with one given nothing is written.
    """
    if sys.platform.startswith("linux"):
        return autostart.XdgAutostart(command, folder=folder)
    if sys.platform == "darwin":
        return autostart.LaunchAgent(command, folder=folder)
    if sys.platform == "win32" and folder is None:
        return autostart.RunKey(command)
    return autostart.Autostart(command)


def drive_event_source(*, main_run_loop: bool = False) -> drive_events.DriveEvents:
    """What wakes the drive watcher on this OS (polling where nothing does).

    ``main_run_loop``: the main thread runs the GUI's run loop (the tray icon), which
    macOS needs to deliver NSWorkspace notifications; without one (headless, tests) it polls.
    """
    if sys.platform.startswith("linux"):
        return drive_events.LinuxMountTable()
    if sys.platform == "win32":
        return drive_events.WindowsDeviceChange()
    if sys.platform == "darwin" and main_run_loop:
        return drive_events.MacWorkspace()
    return drive_events.DriveEvents()
