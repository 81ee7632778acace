"""Numbers, sizes and times in words: the one helper the CLI, the tray and the notifications share.

"1 file", "43 files" (never "file(s)"); "1.5 MB"; "5 min ago"; "today 14:30"
(local time, 24-hour clock, as the schedules are written: "daily at 12:00").
The settings window has the same helpers in ``ui/web/util.js`` (JavaScript
formats in the browser's locale and time zone).
"""

from __future__ import annotations

from datetime import datetime

#: Plurals that are not "word + s".
_IRREGULAR = {"copy": "copies", "entry": "entries", "directory": "directories", "is": "are", "was": "were"}


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` and the word: "1 file", "43 files", "0 files", "1,204 snapshots"."""
    if n == 1:
        return f"1 {word}"
    return f"{n:,} {many or _IRREGULAR.get(word) or word + 's'}"


def size(n: float | None) -> str:
    """Decimal units, like file managers: 1536 -> "1.5 KB"; None -> "unknown"."""
    if n is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"   # pragma: no cover - the loop always returns


def ago(then: datetime | None, now: datetime) -> str:
    """'never', 'just now', '10 min ago', '3 h ago', 'yesterday', '4 days ago'."""
    if then is None:
        return "never"
    secs = max(0, int((now - then).total_seconds()))
    if secs < 90:
        return "just now"
    if secs < 90 * 60:
        return f"{round(secs / 60)} min ago"
    if secs < 36 * 3600:
        return f"{round(secs / 3600)} h ago"
    days = round(secs / 86400)
    return "yesterday" if days == 1 else f"{days} days ago"


def local_time(when: datetime | str | None, now: datetime) -> str:
    """A time as people read it, in local time: 'today 14:30', 'tomorrow 12:00', 'Mon 23 Nov 09:30'."""
    if when is None:
        return "never"
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    local, today = when.astimezone(), now.astimezone().date()
    clock = local.strftime("%H:%M")
    days = (local.date() - today).days
    if days == 0:
        return f"today {clock}"
    if days == 1:
        return f"tomorrow {clock}"
    if days == -1:
        return f"yesterday {clock}"
    year = "" if local.year == today.year else f" {local.year}"
    return f"{local.strftime('%a')} {local.day} {local.strftime('%b')}{year} {clock}"


def removed_backups(times: list[datetime], freed: int, now: datetime) -> str:
    """What making room on a full drive removed: 'Removed the 2 oldest backups (Sun 22 Nov 01:30 to
    Mon 23 Nov 09:00) to make room for this one; 18.0 MB freed.' ``times``: theirs, oldest first."""
    if len(times) == 1:
        which = f"the oldest backup ({local_time(times[0], now)})"
    elif times:
        which = f"the {len(times)} oldest backups ({local_time(times[0], now)} to {local_time(times[-1], now)})"
    else:
        which = "backup data no snapshot needed any more"
    return f"Removed {which} to make room for this one; {size(freed)} freed."
