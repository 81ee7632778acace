"""Desktop notifications: "backup finished", "backup failed", "safe to unplug".

A :class:`Notifier` shows one message; the base class does nothing. The agent
wraps the platform notifier in a :class:`RecordingNotifier` that also appends
every notification to a JSON-lines log (the history of what the user was
told, and what the end-to-end tests read).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path


class Notifier:
    """Shows a notification; this base does nothing (no desktop)."""

    @property
    def name(self) -> str:
        """Which backend shows them (subclasses say it with a class attribute)."""
        return "none"

    def notify(self, title: str, message: str, kind: str = "info") -> None:
        """``kind`` is finished, failed, safe_to_unplug or info."""


def _run_quietly(cmd: list[str]) -> None:
    try:
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass   # a notification is a courtesy; never fail a backup over it


class LinuxNotifier(Notifier):
    """freedesktop notifications through ``notify-send`` (libnotify-bin) or ``gdbus``."""

    name = "freedesktop"

    def __init__(self, tool: str, path: str):
        self.tool, self.path = tool, path

    @classmethod
    def available(cls) -> "LinuxNotifier | None":
        for tool in ("notify-send", "gdbus"):
            path = shutil.which(tool)
            if path:
                return cls(tool, path)
        return None

    def notify(self, title, message, kind="info"):
        urgency = "critical" if kind == "failed" else "normal"
        if self.tool == "notify-send":
            cmd = [self.path, "--app-name=Plugback", f"--urgency={urgency}", title, message]
        else:
            cmd = [self.path, "call", "--session", "--dest", "org.freedesktop.Notifications",
                   "--object-path", "/org/freedesktop/Notifications",
                   "--method", "org.freedesktop.Notifications.Notify",
                   "Plugback", "0", "drive-removable-media", title, message, "[]", "{}", "5000"]
        threading.Thread(target=_run_quietly, args=(cmd,), daemon=True).start()


def applescript_text(text: str) -> str:
    """``text`` as an AppleScript string literal: backslash and double quote escaped, every other
    character as it is (AppleScript has no ``\\u`` escapes: JSON's quoting showed "\\u2026")."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class MacNotifier(Notifier):
    """macOS Notification Center through ``osascript``."""

    name = "osascript"

    def notify(self, title, message, kind="info"):
        script = f"display notification {applescript_text(message)} with title {applescript_text(title)}"
        threading.Thread(target=_run_quietly, args=(["osascript", "-e", script],), daemon=True).start()


class CallbackNotifier(Notifier):
    """Delegates to a function (the tray icon's own ``notify`` on Windows)."""

    name = "icon"

    def __init__(self, fn):
        self.fn = fn

    def notify(self, title, message, kind="info"):
        try:
            self.fn(title, message)
        except Exception:   # noqa: BLE001 - a backend without notifications must not stop a run
            pass


class RecordingNotifier(Notifier):
    """Appends each notification to ``log_path`` (JSON lines), then passes it on."""

    def __init__(self, log_path: Path, inner: Notifier | None = None, enabled=lambda: True):
        self.log_path = Path(log_path)
        self.inner = inner or Notifier()
        self.enabled = enabled
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.inner.name

    def notify(self, title, message, kind="info"):
        shown = bool(self.enabled())
        record = {"time": datetime.now(timezone.utc).isoformat(), "kind": kind, "title": title,
                  "message": message, "shown": shown, "via": self.inner.name}
        with self._lock:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if shown:
            self.inner.notify(title, message, kind)


def read_log(log_path: Path) -> list[dict]:
    """The notifications recorded so far, oldest first."""
    try:
        lines = Path(log_path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]
