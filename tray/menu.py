"""The tray menu as data: a pure function from the agent's state to menu item specs.

Nothing here touches pystray or a screen, so every item can be checked in a
plain test; ``tray/icon.py`` turns the specs into pystray items and performs
their ``action``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.agent.agent import TrayState
from core.agent.history import RunKind, RunStatus

ATTENTION_STATUSES = (RunStatus.FAILED, RunStatus.DRIVE_REMOVED)


@dataclass
class Item:
    """One menu entry. ``action`` names what happens (see tray/icon.py ACTIONS); ``args`` go with it."""

    text: str
    action: str | None = None
    args: tuple = ()
    enabled: bool = True
    default: bool = False
    submenu: list["Item"] = field(default_factory=list)

    @property
    def separator(self) -> bool:
        return self.text == "-"


SEPARATOR = Item("-", enabled=False)


def ago(then: datetime, now: datetime) -> str:
    """'just now', '10 min ago', '3 h ago', 'yesterday', '4 days ago'."""
    secs = max(0, int((now - then).total_seconds()))
    if secs < 90:
        return "just now"
    if secs < 90 * 60:
        return f"{round(secs / 60)} min ago"
    if secs < 36 * 3600:
        return f"{round(secs / 3600)} h ago"
    days = round(secs / 86400)
    return "yesterday" if days == 1 else f"{days} days ago"


def icon_state(state: TrayState) -> str:
    """idle, running, attention or paused (the icon drawn by tray/icon.py)."""
    if state.running:
        return "running"
    if state.problem or any(j["last_status"] in ATTENTION_STATUSES for j in state.jobs):
        return "attention"
    if state.paused:
        return "paused"
    return "idle"


def status_line(state: TrayState) -> str:
    """The first, informational line of the menu (and the tooltip)."""
    if state.running:
        r = state.running[0]
        verb = "Checking the backup of" if r.get("kind") == RunKind.VERIFY else "Backing up"
        text = f"{verb} {r['job']}…" + (f" {r['percent']}%" if r["percent"] is not None else "")
        if len(state.running) > 1:
            text += f" (+{len(state.running) - 1} more)"
        return text
    if state.problem:
        return "Needs attention: " + _short(state.problem)
    failed = [j for j in state.jobs if j["last_status"] in ATTENTION_STATUSES]
    if failed:
        j = failed[0]
        why = "drive removed" if j["last_status"] == RunStatus.DRIVE_REMOVED else "failed"
        return f"{j['name']}: last backup {why}"
    if state.paused:
        until = state.paused_until.astimezone().strftime("%H:%M") if state.paused_until else None
        return f"Automatic backups paused until {until}" if until else "Automatic backups paused"
    if not state.jobs:
        return "No backup jobs yet"
    done = [j["last_ok"] for j in state.jobs if j["last_ok"]]
    if not done:
        return "No backup yet"
    return f"Last backup {ago(max(done), state.now)}"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tomorrow_morning(now: datetime) -> datetime:
    """08:00 local time tomorrow: 'until tomorrow' for the pause menu."""
    local = now.astimezone()
    return (local + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)


def build_menu(state: TrayState) -> list[Item]:
    """The whole menu for ``state``, top to bottom."""
    items = [Item(status_line(state), enabled=False)]
    for p in state.pending:
        label = next((d.label for d in state.drives if d.drive_id == p.drive_id), "drive")
        secs = max(0, int((p.starts_at - state.now).total_seconds()))
        items.append(Item(f"Backup to {label} starts in {secs} s — Cancel", "cancel_pending", (p.drive_id,)))
    items.append(SEPARATOR)

    present = [j for j in state.jobs if j["present"]]
    backup_now = [Item("All jobs", "run_all", enabled=bool(present)), SEPARATOR]
    backup_now += [Item(j["name"], "run_job", (j["name"],), enabled=j["present"]) for j in state.jobs]
    items.append(Item("Back up now", submenu=backup_now, enabled=bool(state.jobs)))
    items.append(Item("Stop backup", "stop", enabled=bool(state.running or state.pending)))
    if state.paused:
        items.append(Item("Resume automatic backups", "resume"))
    else:
        items.append(Item("Pause automatic backups", submenu=[
            Item("For 1 hour", "pause", (state.now + timedelta(hours=1),)),
            Item("Until tomorrow", "pause", (tomorrow_morning(state.now),)),
            Item("Until I resume", "pause", (None,)),
        ]))
    items.append(SEPARATOR)
    items.append(Item("Restore files…", "restore"))
    items.append(Item("Open settings…", "open_settings", default=True))
    for d in state.drives:
        if d.mount and d.drive_id not in state.busy_drives:
            items.append(Item(f"Eject {d.label}", "eject", (d.drive_id,)))
    items.append(SEPARATOR)
    items.append(Item("Quit Plugback", "quit"))
    return items


def tooltip(state: TrayState) -> str:
    """The icon's hover text (names the xorg backend's missing menu)."""
    text = "Plugback — " + status_line(state)
    if state.backend.startswith("xorg"):
        text += " (no tray menu on this desktop: use the settings window)"
    return text
