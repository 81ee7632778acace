"""Several drives, one job: which drive holds the newest backup, and "no backup for N days" (issue #14).

Per drive, the age of a job's newest backup comes from the history (the newest
successful run of the job on each drive, one query), never from opening sets.
The reminder is the pure :func:`overdue` of (when each job last succeeded, now,
the preference ``remind_after_days``); it shows in the tray status, the window
and ``plugback status`` for as long as it holds, and as one notification a day
at most (:func:`notify_due`), whose date is kept in ``reminders.json`` so a
restarted agent does not repeat it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from core.agent.history import History, Run
from core.agent.words import plural

log = logging.getLogger("plugback.rotation")
STATE_FILE = "reminders.json"


@dataclass(frozen=True)
class Reminder:
    """Job ``job`` has had no successful backup since ``since`` (``never``: it never had one)."""

    job: str
    since: datetime
    never: bool
    days: int           # whole days since ``since``

    def text(self) -> str:
        """'Docs: no backup for 9 days' / 'Docs: no successful backup in 9 days' (never one since its first try)."""
        if self.never:
            return f"{self.job}: no successful backup in {plural(self.days, 'day')}"
        return f"{self.job}: no backup for {plural(self.days, 'day')}"

    def to_dict(self) -> dict:
        return {"job": self.job, "since": self.since.isoformat(), "never": self.never, "days": self.days,
                "message": self.text()}


def overdue(since: dict[str, tuple[datetime | None, bool]], now: datetime, days: int) -> list[Reminder]:
    """The jobs to remind of: ``since[job] = (time, never)`` is the job's last success (``never``
    False) or, if it never succeeded, its first attempt (``never`` True); None = never tried.

    A job is overdue when that time is ``days`` days or more before ``now``; ``days`` 0 turns
    reminders off. Pure: table-tested with fixed times.
    """
    if days <= 0:
        return []
    out = []
    for job, (when, never) in since.items():
        if when is not None and now - when >= timedelta(days=days):
            out.append(Reminder(job, when, never, (now - when) // timedelta(days=1)))
    return out


def notify_due(last_notified: date | None, now_local: datetime) -> bool:
    """One reminder notification a day: due unless one was sent on ``now_local``'s (local) date."""
    return last_notified != now_local.date()


def job_since(history: History | None, name: str) -> tuple[datetime | None, bool]:
    """(last success, False), else (first attempt, True), else (None, True) for :func:`overdue`."""
    if history is None:
        return None, True
    ok = history.last_success(name)
    if ok is not None:
        return ok.last_time, False
    first = history.first(name)
    return (first.started, True) if first else (None, True)


def drive_ages(job, config, history: History | None, present: dict[str, str]) -> list[dict]:
    """Per drive, the job's newest backup: ``[{drive_id, label, present, last_success, newest}]``.

    The drives listed are the job's destination drive and every enrolled drive the history
    says the job backed up to; ``newest`` marks the one holding the newest backup.
    """
    by_drive: dict[str, Run] = history.last_by_drive(job.name) if history else {}
    enrolled = {d["drive_id"] for d in config.drives}
    ids = list(job.destination.drive_ids)
    ids += sorted(d for d in by_drive if d in enrolled and d not in ids)
    newest = max((d for d in ids if d in by_drive), key=lambda d: by_drive[d].last_time, default=None)
    return [{"drive_id": d, "label": config.drive_label(d), "present": d in present,
             "last_success": by_drive[d].to_dict() if d in by_drive else None, "newest": d == newest}
            for d in ids]


def present_drive(job, present: dict[str, str]) -> str | None:
    """The drive a run of ``job`` goes to now: the first of its drives that is connected (None: none)."""
    return next((d for d in job.destination.drive_ids if d in present), None)


def bind_on(config, job_name: str, set_id: str, drive_id: str | None) -> None:
    """A config edit: ``job_name`` owns the set ``set_id`` on ``drive_id`` (its first drive, or one in
    rotation, which holds its own set); core.agent.adopt's rule for the first drive and folders."""
    from core.agent.adopt import bind, canonical_id
    from core.errors import NotFound

    job = config.job(job_name)
    if job is None:
        raise NotFound(what="job", name=job_name)
    entry = next((r for r in job.destination.rotation if r["drive_id"] == drive_id), None)
    if entry is None:
        bind(config, job_name, set_id)
    else:
        entry["set_id"] = canonical_id(set_id)


# -- the once-a-day notification ------------------------------------------------------------------

def read_notified(data_dir: Path) -> date | None:
    """The local date of the last reminder notification (None: none, or the file is unreadable)."""
    try:
        value = json.loads((Path(data_dir) / STATE_FILE).read_text(encoding="utf-8")).get("notified_on")
        return date.fromisoformat(value) if isinstance(value, str) else None
    except (OSError, ValueError, AttributeError):
        return None


def write_notified(data_dir: Path, day: date) -> None:
    """Remember that today's reminder was sent (atomically; survives a restart)."""
    from core.engine.atomic import replace_file

    try:
        replace_file(Path(data_dir) / STATE_FILE, json.dumps({"notified_on": day.isoformat()}).encode())
    except OSError as err:   # a reminder may then come twice; never fail over it
        log.warning("cannot record the reminder date: %s", err)


def reminders(agent) -> list[Reminder]:
    """The reminders that hold now for ``agent``'s jobs."""
    since = {j.name: job_since(agent.history, j.name) for j in agent.config.jobs}
    return overdue(since, agent.clock.now(), agent.config.prefs.remind_after_days)


def check(agent) -> list[Reminder]:
    """The scheduler's tick: send the day's one reminder notification if any job is overdue."""
    due = reminders(agent)
    now_local = agent.clock.now().astimezone()
    if not due or not notify_due(read_notified(agent.paths.data_dir), now_local):
        return due
    write_notified(agent.paths.data_dir, now_local.date())
    if len(due) == 1:
        title = f"{due[0].job} has not been backed up for {plural(due[0].days, 'day')}"
    else:
        title = f"{len(due)} jobs have not been backed up for {plural(min(r.days for r in due), 'day')} or more"
    agent.notifier.notify(title, _hint(agent, due), "reminder")
    return due


def _hint(agent, due: list[Reminder]) -> str:
    """What to do: plug in one of the jobs' drives (named), or start a backup."""
    names = []
    for r in due:
        job = agent.config.job(r.job)
        if job is None:
            continue
        for d in drive_ages(job, agent.config, agent.history, agent.present):
            if d["label"] not in names:
                names.append(d["label"])
    if names:
        return "Plug in " + " or ".join(f"‘{n}’" for n in names) + " to back up."
    return "Start a backup from Plugback's menu."


def status_lines(data: dict, now: datetime) -> list[str]:
    """``plugback status``'s lines for issue #14: per-drive ages of jobs on several drives, reminders, offers."""
    from core.agent.words import ago

    lines = []
    for j in data.get("jobs", []):
        drives = j.get("drives") or []
        if len(drives) > 1:
            parts = []
            for d in drives:
                ok = d.get("last_success")
                when = ago(datetime.fromisoformat(ok.get("ended") or ok["started"]), now) if ok else "never"
                parts.append(f"‘{d['label']}’ {when}" + (" (newest)" if d.get("newest") else ""))
            lines.append(f"  {j['name']} per drive: " + " · ".join(parts))
    for r in data.get("reminders", []):
        lines.append(f"Reminder: {r['message']}")
    for o in data.get("offers", []):
        whose = f" (made on {', '.join(o['computers'])}; 'plugback sets' lists them)" if o.get("computers") else ""
        lines.append(f"Drive not used by Plugback, at {o['mount']}: {o['title']}{whose}; "
                     f"'plugback drive init {o['mount']}' sets it up")
    return lines
