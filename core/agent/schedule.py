"""Pure trigger decisions: is a job due now, and when is it next due?

Nothing here reads the clock, the drives or the history: the agent passes
``now`` (an aware datetime in the user's local time zone, which is where
"daily at 09:30" lives), the time of the job's last successful run and whether
its drive is present. That keeps every rule table-testable with a fake clock.

Schedule specs (``Triggers.schedule`` in config.json and ``--every`` in the CLI):

* ``hourly``         -- at most one hour after the last run
* ``6h``             -- every N hours (1-168) after the last run
* ``daily@09:30``    -- once a day at or after 09:30
* ``mon@09:30``      -- once a week (mon tue wed thu fri sat sun) at or after that time

This module is the only grammar: input is read case-insensitively and stored in
its canonical form (``Daily@9:30`` -> ``daily@09:30``, ``1h`` -> ``hourly``). The
settings window never parses specs; it gets and sends :meth:`Spec.fields`.

Slot specs (daily, weekly) catch up once: if the machine was off or the drive
away at 09:30, the job is due on the next check (or connect) and then not
again until the next slot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

#: How the window's schedule form names the kinds of spec (``Spec.fields``).
KINDS = ("hours", "daily", "weekly")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_SPEC = re.compile(r"^(?:(?P<hourly>hourly)|(?P<hours>\d{1,3})h|(?P<day>daily|mon|tue|wed|thu|fri|sat|sun)"
                   r"@(?P<hh>\d{1,2}):(?P<mm>\d{2}))$")


@dataclass(frozen=True)
class Spec:
    """A parsed schedule: an interval (``every``) or a slot (``weekday`` None = daily)."""

    every: timedelta | None = None
    at: time | None = None
    weekday: int | None = None   # 0 = Monday

    @property
    def slot_time(self) -> time:
        """The slot's time of day; an interval spec (``every``) has none."""
        if self.at is None:
            raise ValueError("an interval schedule has no time of day")
        return self.at

    def describe(self) -> str:
        """Plain words for the menu, the window and ``job list``."""
        if self.every is not None:
            hours = int(self.every.total_seconds() // 3600)
            return "every hour" if hours == 1 else f"every {hours} hours"
        when = self.slot_time.strftime("%H:%M")
        if self.weekday is None:
            return f"daily at {when}"
        return f"every {DAY_NAMES[self.weekday]} at {when}"

    def canonical(self) -> str:
        """The one spelling config.json stores: ``hourly``, ``6h``, ``daily@09:30``, ``mon@09:30``."""
        if self.every is not None:
            hours = int(self.every.total_seconds() // 3600)
            return "hourly" if hours == 1 else f"{hours}h"
        day = "daily" if self.weekday is None else DAYS[self.weekday]
        return f"{day}@{self.slot_time.strftime('%H:%M')}"

    def fields(self) -> dict:
        """The spec as the window's form shows it: ``{"kind": "daily", "time": "09:30"}``,
        ``{"kind": "weekly", "day": "mon", "time": "09:30"}`` or ``{"kind": "hours", "hours": 6}``."""
        if self.every is not None:
            return {"kind": "hours", "hours": int(self.every.total_seconds() // 3600)}
        when = self.slot_time.strftime("%H:%M")
        if self.weekday is None:
            return {"kind": "daily", "time": when}
        return {"kind": "weekly", "day": DAYS[self.weekday], "time": when}


def parse_spec(text: str) -> Spec:
    """Parse ``hourly`` / ``6h`` / ``daily@09:30`` / ``mon@09:30``; ValueError says what is accepted."""
    m = _SPEC.match(text.strip().lower())
    if not m:
        raise ValueError(f"'{text}' is not a schedule; use hourly, 6h (every N hours), "
                         "daily@09:30 or mon@09:30")
    if m["hourly"]:
        return Spec(every=timedelta(hours=1))
    if m["hours"]:
        n = int(m["hours"])
        if not 1 <= n <= 168:
            raise ValueError(f"'{text}': every N hours needs N between 1 and 168")
        return Spec(every=timedelta(hours=n))
    hh, mm = int(m["hh"]), int(m["mm"])
    if hh > 23 or mm > 59:
        raise ValueError(f"'{text}': the time must be HH:MM between 00:00 and 23:59")
    weekday = None if m["day"] == "daily" else DAYS.index(m["day"])
    return Spec(at=time(hh, mm), weekday=weekday)


def canonical(text: str) -> str:
    """``text`` in the form config.json stores; ValueError (saying what is accepted) if it is no spec."""
    return parse_spec(text).canonical()


def from_fields(fields) -> Spec:
    """The inverse of :meth:`Spec.fields` (what the window sends back); ValueError says what is wrong.

    The values come from another process: every field is checked here, in the
    same terms as the text grammar.
    """
    if not isinstance(fields, dict) or fields.get("kind") not in KINDS:
        raise ValueError(f"the schedule's kind must be one of {', '.join(KINDS)}")
    if fields["kind"] == "hours":
        hours = fields.get("hours")
        if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= 168:
            raise ValueError("every N hours needs N as a whole number between 1 and 168")
        return parse_spec("hourly" if hours == 1 else f"{hours}h")
    when = fields.get("time")
    if not isinstance(when, str) or not re.fullmatch(r"\d{1,2}:\d{2}", when):
        raise ValueError("the time must be HH:MM between 00:00 and 23:59")
    if fields["kind"] == "daily":
        return parse_spec(f"daily@{when}")
    day = fields.get("day")
    if day not in DAYS:
        raise ValueError(f"the day must be one of {', '.join(DAYS)}")
    return parse_spec(f"{day}@{when}")


def last_slot(spec: Spec, now: datetime) -> datetime:
    """The most recent slot at or before ``now`` (slot specs only), in ``now``'s time zone."""
    slot = now.replace(hour=spec.slot_time.hour, minute=spec.slot_time.minute, second=0, microsecond=0)
    if spec.weekday is None:
        return slot if slot <= now else slot - timedelta(days=1)
    slot -= timedelta(days=(now.weekday() - spec.weekday) % 7)
    return slot if slot <= now else slot - timedelta(days=7)


def _period(spec: Spec) -> timedelta:
    return timedelta(days=1 if spec.weekday is None else 7)


def _schedule(job) -> Spec | None:
    text = job.triggers.schedule
    return parse_spec(text) if text else None


def schedule_due(spec: Spec, last_run: datetime | None, now: datetime) -> bool:
    """The time rule alone: never run -> due; interval elapsed, or a slot passed since the last run."""
    if last_run is None:
        return True
    if spec.every is not None:
        return now - last_run >= spec.every
    return last_run < last_slot(spec, now)


def due(job, last_run: datetime | None, now: datetime, *, drive_present: bool = True) -> bool:
    """Is ``job``'s schedule due at ``now``? A due job whose drive is absent waits (False).

    ``last_run`` is when the job's last successful run started (None = never).
    Jobs without a schedule are never due by time (they run on connect or by hand).
    """
    spec = _schedule(job)
    if spec is None or not drive_present:
        return False
    return schedule_due(spec, last_run, now)


def connect_due(job, last_run: datetime | None, now: datetime) -> bool:
    """Should ``job`` run because its drive was just connected?

    ``on_connect`` jobs run on every connect unless they ran successfully less
    than ``min_interval_minutes`` ago. Scheduled jobs whose time came while
    the drive was away catch up now (once).
    """
    if job.triggers.on_connect:
        if last_run is None:
            return True
        return now - last_run >= timedelta(minutes=job.triggers.min_interval_minutes)
    return due(job, last_run, now)


def integrity_due(last_check: datetime | None, first_backup: datetime | None, now: datetime,
                  every: timedelta = timedelta(days=30)) -> bool:
    """Is the monthly full read-back of a set due? ``every`` after the last check, or after the first backup."""
    reference = last_check or first_backup
    return reference is not None and now - reference >= every


def next_due(job, last_run: datetime | None, now: datetime) -> datetime | None:
    """When the schedule next makes ``job`` due (``now`` if it already is); None = no schedule."""
    spec = _schedule(job)
    if spec is None:
        return None
    if last_run is None or schedule_due(spec, last_run, now):   # never run: due now
        return now
    if spec.every is not None:
        return last_run + spec.every
    return last_slot(spec, now) + _period(spec)
