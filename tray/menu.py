"""The tray menu as data: a pure function from the agent's state to menu item specs.

Nothing here touches pystray or a screen, so every item can be checked in a
plain test; ``tray/icon.py`` turns the specs into pystray items and performs
their ``action``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.agent.agent_state import TrayState
from core.agent.words import ago, local_time, size

__all__ = ["Item", "ago", "build_menu", "icon_state", "status_line", "tomorrow_morning", "tooltip"]


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


def icon_state(state: TrayState) -> str:
    """idle, running, attention or paused (the icon drawn by tray/icon.py)."""
    if state.running:
        return "running"
    if state.problem or attention_jobs(state) or state.reminders:
        return "attention"
    if state.paused:
        return "paused"
    return "idle"


def attention_jobs(state: TrayState) -> list[dict]:
    """The jobs whose last attempt failed (core.agent.status decides; a later success clears it), or
    whose backup check found damage it could not repair."""
    return [j for j in state.jobs if j.get("attention") or j.get("damage")]


def paused_text(state: TrayState) -> str:
    """'Automatic backups paused until today 14:30' / '… until you resume them'."""
    if state.paused_until:
        return f"Automatic backups paused until {local_time(state.paused_until, state.now)}"
    return "Automatic backups paused until you resume them"


def status_line(state: TrayState) -> str:
    """The first, informational line of the menu (and the tooltip)."""
    if state.running:
        r = state.running[0]
        text = f"Backing up {r['job']}…" + (f" {r['percent']}%" if r["percent"] is not None else "")
        speed = (r.get("progress") or {}).get("speed")   # a job to a cloud or network location (issue #13)
        if speed:
            text += f" · {size((r.get('progress') or {}).get('uploaded'))} uploaded, {size(speed)}/s"
        if len(state.running) > 1:
            text += f" (+{len(state.running) - 1} more)"
        return text
    if state.problem:
        return "Needs attention: " + _short(state.problem)
    failed = attention_jobs(state)
    if len(failed) > 1:
        return f"{len(failed)} jobs need attention"
    if failed:
        why = "not backed up" if failed[0].get("attention") else "damage on the drive"
        return f"{failed[0]['name']} needs attention: {why}"
    if len(state.reminders) > 1:
        return f"{len(state.reminders)} jobs not backed up for {min(r.days for r in state.reminders)} days or more"
    if state.reminders:
        return state.reminders[0].text()
    waiting = [j["name"] for j in state.jobs if j.get("waiting")]   # its remote cannot be reached (issue #13)
    if waiting:
        return f"{', '.join(waiting)}: waiting for the network"
    if state.paused:
        return paused_text(state)
    if not state.jobs:
        return "No backup jobs yet"
    done = [j["last_ok"] for j in state.jobs if j["last_ok"]]
    if not done:
        return "No successful backup yet"
    live = [j["name"] for j in state.jobs if j.get("live") and j["present"]]   # live mode (issue #12)
    return f"Last successful backup {ago(max(done), state.now)}" + (f" · live: {', '.join(live)}" if live else "")


def attention_items(state: TrayState) -> list[Item]:
    """One line per job that needs attention: its last attempt and why, and the damage its check found
    (opens the History page); a click opens the settings."""
    items = []
    for j in attention_jobs(state):
        if j.get("attention"):
            items.append(Item(_short(f"{j['name']}: last attempt failed {ago(j['last_time'], state.now)} — "
                                     f"{j['attention']}", 90), "open_settings"))
        if j.get("damage"):
            items.append(Item(_short(f"{j['name']}: {j['damage']}", 90), "open_page", ("history",)))
    return items


def reminder_items(state: TrayState) -> list[Item]:
    """With several overdue jobs, one line each ("Docs: no backup for 9 days"); a click opens the settings."""
    if len(state.reminders) < 2:
        return []
    return [Item(_short(r.text(), 90), "open_settings") for r in state.reminders]


def offer_items(state: TrayState) -> list[Item]:
    """One entry per drive Plugback could use (core.agent.offers): set it up, restore from it, or decline."""
    items = []
    setup = "drives" if state.jobs else "welcome"   # no job yet: the first-run page sets up drive and job
    for o in state.offers:
        choices = [Item("Set it up as a backup drive…", "open_page", (setup,))]
        if o.kind == "plugback":
            choices.insert(0, Item("Restore files from it…", "open_page", ("restore",)))
        choices.append(Item("Not this drive", "decline_offer", (o.mount,)))
        items.append(Item(_short(o.title(), 70), submenu=choices))
    return items


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tomorrow_morning(now: datetime) -> datetime:
    """08:00 local time tomorrow: 'until tomorrow' for the pause menu."""
    local = now.astimezone()
    return (local + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)


def build_menu(state: TrayState) -> list[Item]:
    """The whole menu for ``state``, top to bottom."""
    items = [Item(status_line(state), enabled=False), *attention_items(state), *reminder_items(state),
             *offer_items(state)]
    for p in state.pending:
        label = next((d.label for d in state.drives if d.drive_id == p.drive_id), "drive")
        if p.held:   # the Restore page is open (core/agent/restore_first.py): the user chooses
            items += [Item(f"Backup to {label} waits: a restore is open", enabled=False),
                      Item(f"Back up {label} now", "start_pending", (p.drive_id,)),
                      Item(f"Restore from {label} instead", "restore_instead", (p.drive_id,))]
            continue
        secs = max(0, int((p.starts_at - state.now).total_seconds()))
        items += [Item(f"Backup to {label} starts in {secs} s — Cancel", "cancel_pending", (p.drive_id,)),
                  Item(f"Restore from {label} instead", "restore_instead", (p.drive_id,))]   # issue #14
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
