"""Start the agent at login: XDG autostart (Linux), a LaunchAgent (macOS), the Run key (Windows)."""

from __future__ import annotations

import os
import plistlib
import shlex
import subprocess
import sys
from pathlib import Path

LABEL = "org.plugback.tray"


class Autostart:
    """Start-at-login for one command; this base does nothing (unsupported system)."""

    def __init__(self, command: list[str]):
        self.command = list(command)

    def enable(self) -> None:
        """Start ``command`` at every login."""

    def disable(self) -> None:
        """Stop starting it at login."""

    def enabled(self) -> bool:
        """Whether the login entry exists."""
        return False

    def apply(self, wanted: bool) -> None:
        """Make the entry match the preference."""
        if wanted:
            self.enable()
        elif self.enabled():
            self.disable()


class XdgAutostart(Autostart):
    """``~/.config/autostart/plugback.desktop`` (the freedesktop autostart spec)."""

    def __init__(self, command, *, folder: Path | None = None):
        super().__init__(command)
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        self.path = Path(folder or base / "autostart") / "plugback.desktop"

    def enable(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        exec_line = " ".join(shlex.quote(c) for c in self.command)
        self.path.write_text(
            "[Desktop Entry]\nType=Application\nName=Plugback\n"
            "Comment=Back up your folders when your drive is plugged in\n"
            f"Exec={exec_line}\nIcon=plugback\nTerminal=false\nX-GNOME-Autostart-enabled=true\n",
            encoding="utf-8")

    def disable(self):
        self.path.unlink(missing_ok=True)

    def enabled(self):
        return self.path.exists()


class LaunchAgent(Autostart):
    """``~/Library/LaunchAgents/org.plugback.tray.plist`` with RunAtLoad."""

    def __init__(self, command, *, folder: Path | None = None):
        super().__init__(command)
        self.path = Path(folder or Path.home() / "Library" / "LaunchAgents") / f"{LABEL}.plist"

    def enable(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "wb") as f:
            plistlib.dump({"Label": LABEL, "ProgramArguments": self.command, "RunAtLoad": True,
                           "ProcessType": "Interactive"}, f)

    def disable(self):
        self.path.unlink(missing_ok=True)

    def enabled(self):
        return self.path.exists()


class RunKey(Autostart):
    """``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run`` value "Plugback"."""

    KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"

    def __init__(self, command, *, winreg=None):
        super().__init__(command)
        self._registry = winreg   # the tests pass a fake registry; None: the real one

    def _winreg(self):
        if self._registry is not None:
            return self._registry
        import winreg

        return winreg

    def enable(self):
        winreg = self._winreg()
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, self.KEY, 0, winreg.KEY_SET_VALUE) as key:
            winreg.SetValueEx(key, "Plugback", 0, winreg.REG_SZ, subprocess.list2cmdline(self.command))

    def disable(self):
        winreg = self._winreg()
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, self.KEY, 0, winreg.KEY_SET_VALUE) as key:
                winreg.DeleteValue(key, "Plugback")
        except FileNotFoundError:
            pass

    def enabled(self):
        winreg = self._winreg()
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, self.KEY) as key:
                winreg.QueryValueEx(key, "Plugback")
            return True
        except FileNotFoundError:
            return False


def agent_command() -> list[str]:
    """How to start the agent: the frozen app itself, or this Python with ``-m tray``."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "tray"]
