"""Desktop notifications: "backup finished", "backup failed", "safe to unplug", "Use … for backups?".

A :class:`Notifier` shows one message; the base class does nothing. The agent
wraps the platform notifier in a :class:`RecordingNotifier` that also appends
every notification to a JSON-lines log (the history of what the user was
told, and what the end-to-end tests read).

A notification may carry :class:`Action` buttons (issue #14). Only the Linux
notifier shows them (``notify-send --action``, libnotify 0.7.10 and later);
elsewhere they are left out, so every choice a notification offers must also be
in the tray menu and the settings window.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("plugback.notify")
#: How long a notification with buttons is waited on (notification centres keep them for later).
ACTION_WAIT_SECONDS = 6 * 3600


@dataclass(frozen=True)
class Action:
    """A button on a notification: its text and what a click does (called on a notifier thread).

    The first action of a notification is its default one: a click on the notification itself.
    """

    label: str
    run: Callable[[], object]


class Notifier:
    """Shows a notification; this base does nothing (no desktop)."""

    @property
    def name(self) -> str:
        """Which backend shows them (subclasses say it with a class attribute)."""
        return "none"

    def notify(self, title: str, message: str, kind: str = "info", actions: Sequence[Action] = ()) -> None:
        """``kind`` is finished, failed, safe_to_unplug, offer, reminder or info; ``actions``: buttons,
        where this notifier can show them."""


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
        self._buttons: bool | None = None

    @classmethod
    def available(cls) -> "LinuxNotifier | None":
        for tool in ("notify-send", "gdbus"):
            path = shutil.which(tool)
            if path:
                return cls(tool, path)
        return None

    def buttons(self) -> bool:
        """Whether this notify-send takes ``--action`` (libnotify 0.7.10+; Debian 12 has 0.8)."""
        if self._buttons is None:
            try:
                help_text = subprocess.run([self.path, "--help"], capture_output=True, text=True, timeout=10,
                                           check=False, stdin=subprocess.DEVNULL).stdout
            except (OSError, subprocess.TimeoutExpired):
                help_text = ""
            self._buttons = self.tool == "notify-send" and "--action" in help_text
        return self._buttons

    def notify(self, title, message, kind="info", actions=()):
        urgency = "critical" if kind == "failed" else "normal"
        if actions and self.buttons():
            # The first action is "default" (a click on the notification); notify-send prints the
            # chosen name and exits when the notification closes: wait for it on a thread.
            names = ["default", *(str(i) for i in range(1, len(actions)))]
            cmd = [self.path, "--app-name=Plugback", f"--urgency={urgency}",
                   *(f"--action={n}={a.label}" for n, a in zip(names, actions, strict=True)), title, message]
            threading.Thread(target=_wait_for_action, args=(cmd, dict(zip(names, actions, strict=True))),
                             name="notification", daemon=True).start()
            return
        if self.tool == "notify-send":
            cmd = [self.path, "--app-name=Plugback", f"--urgency={urgency}", title, message]
        else:
            cmd = [self.path, "call", "--session", "--dest", "org.freedesktop.Notifications",
                   "--object-path", "/org/freedesktop/Notifications",
                   "--method", "org.freedesktop.Notifications.Notify",
                   "Plugback", "0", "drive-removable-media", title, message, "[]", "{}", "5000"]
        threading.Thread(target=_run_quietly, args=(cmd,), daemon=True).start()


def _wait_for_action(cmd: list[str], actions: dict[str, Action]) -> None:
    """Run notify-send with buttons and do what the user clicked (nothing when it is dismissed)."""
    try:
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=ACTION_WAIT_SECONDS, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return
    action = actions.get(out)
    if action is None:
        return
    try:
        action.run()
    except Exception:   # noqa: BLE001 - a button's failure is logged, never raised into a thread
        log.exception("the notification button %r failed", action.label)


def applescript_text(text: str) -> str:
    """``text`` as an AppleScript string literal: backslash and double quote escaped, every other
    character as it is (AppleScript has no ``\\u`` escapes: JSON's quoting showed "\\u2026")."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class MacNotifier(Notifier):
    """macOS Notification Center through ``osascript``."""

    name = "osascript"

    def notify(self, title, message, kind="info", actions=()):
        script = f"display notification {applescript_text(message)} with title {applescript_text(title)}"
        threading.Thread(target=_run_quietly, args=(["osascript", "-e", script],), daemon=True).start()


class CallbackNotifier(Notifier):
    """Delegates to a function (the tray icon's own ``notify`` on Windows)."""

    name = "icon"

    def __init__(self, fn):
        self.fn = fn

    def notify(self, title, message, kind="info", actions=()):
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

    def notify(self, title, message, kind="info", actions=()):
        shown = bool(self.enabled())
        record = {"time": datetime.now(timezone.utc).isoformat(), "kind": kind, "title": title,
                  "message": message, "shown": shown, "via": self.inner.name,
                  **({"actions": [a.label for a in actions]} if actions else {})}
        with self._lock:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if shown and actions:
            self.inner.notify(title, message, kind, actions)
        elif shown:
            self.inner.notify(title, message, kind)


def read_log(log_path: Path) -> list[dict]:
    """The notifications recorded so far, oldest first."""
    try:
        lines = Path(log_path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]
