"""Rolling verification's state and decisions (issue #14), kept apart from the threads that act.

Per set, in the agent's data folder (``rolling/<set id>.json``, written
atomically, checked on read: a file that does not check out starts a new pass):
where the current pass stands (its cursor, bytes read of how many), when it
began, when the last pass ended ("last fully checked"), and the times of the
last slices, which say how often the drive is here. Local state, not on the
drive: the drive is untrusted, and a stranger's drive must not be able to say
"checked yesterday".

The decisions are pure functions of that state and a time, so they are
table-tested: :func:`slice_budget`, :func:`opportunities_per_day`, :func:`overdue`.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from core.agent.times import iso, read_time
from core.engine.pass_cursor import Cursor

log = logging.getLogger("plugback.rolling")

PERIOD = timedelta(days=30)        # every stored byte is re-read within this
FLOOR = 256 << 20                  # a slice reads at least this much (a few seconds on USB 3)
KEEP_SLICES = 64                   # slice times kept to estimate how often the drive is here
VERSION = 1


@dataclass
class PassState:
    """One set's rolling verification: the pass under way and the last complete one."""

    set_id: str
    cursor: Cursor = field(default_factory=Cursor)
    pass_started: datetime | None = None     # None: no pass begun yet
    done_bytes: int = 0
    total_bytes: int | None = None           # measured when the pass begins
    last_full: datetime | None = None        # when the last complete pass ended
    slices: list[datetime] = field(default_factory=list)

    @property
    def under_way(self) -> bool:
        return self.pass_started is not None and not self.cursor.done

    def begin_pass(self, now: datetime) -> None:
        """Start a new pass from the first object (the total is measured next)."""
        self.cursor, self.pass_started, self.done_bytes, self.total_bytes = Cursor(), now, 0, None

    def note_slice(self, now: datetime) -> None:
        """A chance to check came (the drive is here after a backup): remember when, for the pace."""
        self.slices = [t for t in self.slices if now - t < PERIOD][-(KEEP_SLICES - 1):] + [now]

    def percent(self) -> int | None:
        """How far the pass under way is (0-99), or None when no pass is under way."""
        if not self.under_way:
            return None
        if not self.total_bytes:
            return 0
        return min(99, int(100 * self.done_bytes / self.total_bytes))

    def to_dict(self) -> dict:
        return {"version": VERSION, "set_id": self.set_id, "cursor": self.cursor.to_dict(),
                "pass_started": iso(self.pass_started), "done_bytes": self.done_bytes,
                "total_bytes": self.total_bytes, "last_full": iso(self.last_full),
                "slices": [iso(t) for t in self.slices]}

    @classmethod
    def from_dict(cls, d) -> "PassState":
        """Checked: ValueError names what is wrong."""
        if not isinstance(d, dict) or d.get("version") != VERSION:
            raise ValueError("not a rolling-check state of this version")
        slices = d.get("slices")
        if not isinstance(slices, list) or len(slices) > KEEP_SLICES:
            raise ValueError("'slices' is not a short list of times")
        return cls(set_id=_set_id(d.get("set_id")), cursor=Cursor.from_dict(d.get("cursor")),
                   pass_started=read_time(d.get("pass_started")), done_bytes=_count(d.get("done_bytes")),
                   total_bytes=None if d.get("total_bytes") is None else _count(d.get("total_bytes")),
                   last_full=read_time(d.get("last_full")), slices=[t for t in map(read_time, slices) if t])


def _count(v) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValueError("a byte count is not a whole number")
    return v


def _set_id(v) -> str:
    if not isinstance(v, str):
        raise ValueError("'set_id' is not text")
    return str(uuid.UUID(v))


class StateStore:
    """The state files, one per set, in ``folder`` (the agent's ``data_dir/rolling``)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _path(self, set_id: str) -> Path:
        return self.folder / f"{_set_id(set_id)}.json"   # a checked UUID: never a path from elsewhere

    def load(self, set_id: str | None) -> PassState | None:
        """The set's state, or None (never checked, or a file that does not check out: logged)."""
        if not set_id:
            return None
        path = self._path(set_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            log.warning("cannot read %s: %s", path, err)
            return None
        try:
            state = PassState.from_dict(json.loads(raw))
            if state.set_id != _set_id(set_id):
                raise ValueError("it is another set's")
            return state
        except (ValueError, RecursionError) as err:
            log.warning("ignoring %s (%s): a new rolling check begins", path, err)
            return None

    def save(self, state: PassState) -> None:
        from core.engine.atomic import replace_file

        self.folder.mkdir(parents=True, exist_ok=True)
        replace_file(self._path(state.set_id), (json.dumps(state.to_dict(), indent=1) + "\n").encode())


# --- decisions (pure) ------------------------------------------------------------------------

def opportunities_per_day(slices: list[datetime], now: datetime) -> float:
    """How many chances to check come a day (from the slices of the last PERIOD); one a day until
    there are two to go by."""
    recent = [t for t in slices if timedelta(0) <= now - t < PERIOD]
    if len(recent) < 2:
        return 1.0
    days = max(1.0, (now - min(recent)).total_seconds() / 86400)
    return max(1 / PERIOD.days, (len(recent) - 1) / days)     # intervals between them, per day


def slice_budget(state: PassState, now: datetime, floor: int = FLOOR) -> int:
    """Bytes to read now so the pass ends within PERIOD of its start, spread evenly over the chances
    expected until then; at least ``floor``. An overdue pass reads everything that is left."""
    if state.pass_started is None or state.total_bytes is None:
        return floor
    remaining = max(0, state.total_bytes - state.done_bytes)
    days_left = (state.pass_started + PERIOD - now).total_seconds() / 86400
    chances = max(1.0, days_left * opportunities_per_day(state.slices, now))
    return max(floor, math.ceil(remaining / chances))


def overdue(state: PassState | None, first_backup: datetime | None, now: datetime) -> bool:
    """Must a pass be finished now, without waiting for a backup (the monthly catch-up)?

    When the pass under way began more than PERIOD ago, or none is under way and the last
    complete one (else the first backup) is older than PERIOD.
    """
    from core.agent.schedule import integrity_due

    if state is not None and state.under_way:
        return integrity_due(state.pass_started, None, now, PERIOD)
    return integrity_due(state.last_full if state is not None else None, first_backup, now, PERIOD)


def drive_summary(states: list[PassState | None], checking: bool, live: int = 0) -> dict:
    """What the Drives page shows for one drive's sets: ``last_full_check`` (the oldest set's; null
    until every set finished a pass), ``check_percent`` and ``check_since`` (the pass under way,
    by bytes, with ``live`` bytes the running slice has read), ``checking`` (a slice runs now)."""
    known = [s for s in states if s is not None]
    fulls = [s.last_full for s in known if s.last_full]
    last_full = min(fulls) if fulls and len(fulls) == len(states) else None
    going = [s for s in known if s.under_way]
    total = sum(s.total_bytes or 0 for s in going)
    percent = None
    if going:
        percent = min(99, int(100 * (sum(s.done_bytes for s in going) + live) / total)) if total else 0
    since = min(s.pass_started for s in going if s.pass_started) if going else None
    return {"last_full_check": iso(last_full), "check_percent": percent, "check_since": iso(since),
            "checking": checking}
