"""Run history: one row per run in ``history.sqlite3`` plus the run's log text.

SQLite from the standard library, in WAL mode so the window (reading through
the agent) and the CLI (reading directly) never block a run that is writing.
Each call opens its own short connection: the agent's threads share nothing.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path


class _Text(str, Enum):
    """A str enum that reads as its value in f-strings and JSON (the window and scripts match on it)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, format_spec: str) -> str:
        return self.value.__format__(format_spec)


class RunStatus(_Text):
    """A run's status in history, IPC ``Run.status`` and the window (the values are the contract)."""

    RUNNING = "running"
    OK = "ok"
    WARNINGS = "warnings"            # committed, some files skipped or kept from before
    FAILED = "failed"                # nothing committed, or a read-back mismatch (error_code "damaged")
    CANCELLED = "cancelled"
    DRIVE_REMOVED = "drive_removed"

    @property
    def succeeded(self) -> bool:
        """Whether the run committed a snapshot."""
        return self in SUCCESS


class RunKind(_Text):
    """What a run did: a backup, or the monthly read-back check of a set."""

    BACKUP = "backup"
    VERIFY = "verify"


class Trigger(_Text):
    """What started a run: the user (tray, window, CLI), a drive plugged in, or the schedule."""

    MANUAL = "manual"
    CONNECT = "connect"
    SCHEDULE = "schedule"
    LIVE = "live"                    # live mode: changes in the sources (issue #12)


SUCCESS = (RunStatus.OK, RunStatus.WARNINGS)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'backup',
    trigger TEXT NOT NULL DEFAULT 'manual',
    drive_id TEXT,
    snapshot_id TEXT,
    started TEXT NOT NULL,
    ended TEXT,
    status TEXT NOT NULL,
    files_scanned INTEGER NOT NULL DEFAULT 0,
    bytes_scanned INTEGER NOT NULL DEFAULT 0,
    files_copied INTEGER NOT NULL DEFAULT 0,
    bytes_copied INTEGER NOT NULL DEFAULT 0,
    warnings INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    error_code TEXT,
    log TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_job_started ON runs (job, started);
"""
_COLUMNS = ("id", "job", "kind", "trigger", "drive_id", "snapshot_id", "started", "ended", "status", "files_scanned",
            "bytes_scanned", "files_copied", "bytes_copied", "warnings", "error", "error_code")


@dataclass(frozen=True)
class RunFigures:
    """What a run did and how it went wrong, shared by a stored :class:`Run` and a :class:`RunEnd`."""

    snapshot_id: str | None = None
    files_scanned: int = 0
    bytes_scanned: int = 0
    files_copied: int = 0
    bytes_copied: int = 0
    warnings: int = 0
    error: str | None = None
    error_code: str | None = None


@dataclass(frozen=True, kw_only=True)
class Run(RunFigures):
    """One run as stored (times are aware UTC datetimes)."""

    id: int
    job: str
    kind: RunKind
    trigger: Trigger
    drive_id: str | None
    started: datetime
    ended: datetime | None
    status: RunStatus

    @property
    def last_time(self) -> datetime:
        """When the run last did something: its end, or its start while it runs."""
        return self.ended or self.started

    def to_dict(self) -> dict:
        """The IPC ``Run`` shape (docs/ipc.md): times as ISO text, ``warnings`` a count."""
        d = asdict(self)
        d["started"] = self.started.isoformat()
        d["ended"] = self.ended.isoformat() if self.ended else None
        return d


@dataclass(frozen=True, kw_only=True)
class RunEnd(RunFigures):
    """How a run ended, as :meth:`History.finish` records it."""

    status: RunStatus
    ended: datetime


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _parse(t: str | None) -> datetime | None:
    return datetime.fromisoformat(t) if t else None


class History:
    """The run history database at ``path`` (created on first use)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            if "trigger" not in columns:   # a history written before runs recorded their trigger
                db.execute("ALTER TABLE runs ADD COLUMN trigger TEXT NOT NULL DEFAULT 'manual'")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA busy_timeout=30000")
        return db

    def start(self, job: str, started: datetime, *, drive_id: str | None = None,
              kind: RunKind = RunKind.BACKUP, trigger: Trigger = Trigger.MANUAL) -> int:
        """Record a run that has begun; returns its id."""
        with closing(self._connect()) as db, db:
            cur = db.execute("INSERT INTO runs (job, kind, trigger, drive_id, started, status) VALUES (?,?,?,?,?,?)",
                             (job, RunKind(kind).value, Trigger(trigger).value, drive_id, _iso(started),
                              RunStatus.RUNNING.value))
            assert cur.lastrowid is not None   # an INSERT sets it
            return cur.lastrowid

    def finish(self, run_id: int, end: RunEnd) -> None:
        """Record how a run ended."""
        status = RunStatus(end.status)
        if status is RunStatus.RUNNING:
            raise ValueError("a run cannot end as 'running'")
        with closing(self._connect()) as db, db:
            db.execute("UPDATE runs SET status=?, ended=?, snapshot_id=?, files_scanned=?, bytes_scanned=?,"
                       " files_copied=?, bytes_copied=?, warnings=?, error=?, error_code=? WHERE id=?",
                       (status.value, _iso(end.ended), end.snapshot_id, end.files_scanned, end.bytes_scanned,
                        end.files_copied, end.bytes_copied, end.warnings, end.error, end.error_code, run_id))

    def append_log(self, run_id: int, text: str) -> None:
        """Add lines to the run's log (a newline is added if missing)."""
        if not text.endswith("\n"):
            text += "\n"
        with closing(self._connect()) as db, db:
            db.execute("UPDATE runs SET log = log || ? WHERE id=?", (text, run_id))

    def log(self, run_id: int) -> str | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT log FROM runs WHERE id=?", (run_id,)).fetchone()
        return row[0] if row else None

    def get(self, run_id: int) -> Run | None:
        rows = self._select("WHERE id=?", (run_id,))
        return rows[0] if rows else None

    def runs(self, job: str | None = None, limit: int = 100, kind: RunKind | None = RunKind.BACKUP) -> list[Run]:
        """Runs newest first, optionally of one job."""
        where, args = [], []
        if job is not None:
            where.append("job=?")
            args.append(job)
        if kind is not None:
            where.append("kind=?")
            args.append(RunKind(kind).value)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._select(f"{clause} ORDER BY started DESC, id DESC LIMIT ?", (*args, int(limit)))

    def last(self, job: str, *, statuses: tuple[RunStatus, ...] | None = None,
             kind: RunKind = RunKind.BACKUP) -> Run | None:
        """The newest run of ``job`` (with one of ``statuses`` if given)."""
        clause, args = "WHERE job=? AND kind=?", [job, RunKind(kind).value]
        if statuses:
            clause += f" AND status IN ({','.join('?' * len(statuses))})"
            args += [RunStatus(s).value for s in statuses]
        rows = self._select(clause + " ORDER BY started DESC, id DESC LIMIT 1", tuple(args))
        return rows[0] if rows else None

    def last_success(self, job: str) -> Run | None:
        """The newest run that committed a snapshot (ok or warnings)."""
        return self.last(job, statuses=SUCCESS)

    def last_by_drive(self, job: str, statuses: tuple[RunStatus, ...] = SUCCESS) -> dict[str, Run]:
        """The newest backup run of ``job`` with one of ``statuses`` on each drive it reached
        (issue #14: a job on several drives; by default its newest success on each)."""
        marks = ",".join("?" * len(statuses))
        rows = self._select(f"WHERE id IN (SELECT MAX(id) FROM runs WHERE job=? AND kind=? AND status IN ({marks}) "
                            "AND drive_id IS NOT NULL GROUP BY drive_id)",
                            (job, RunKind.BACKUP.value, *(RunStatus(st).value for st in statuses)))
        return {r.drive_id: r for r in rows if r.drive_id}

    def first(self, job: str) -> Run | None:
        """The oldest backup run of ``job``, whatever its result."""
        rows = self._select("WHERE job=? AND kind=? ORDER BY started ASC, id ASC LIMIT 1", (job, RunKind.BACKUP.value))
        return rows[0] if rows else None

    def first_success(self, job: str) -> Run | None:
        """The oldest run of ``job`` that committed a snapshot."""
        rows = self._select("WHERE job=? AND kind=? AND status IN (?,?) ORDER BY started ASC, id ASC LIMIT 1",
                            (job, RunKind.BACKUP.value, *(s.value for s in SUCCESS)))
        return rows[0] if rows else None

    def close_interrupted(self, ended: datetime) -> int:
        """Mark runs left 'running' by an agent that died as failed; returns how many."""
        with closing(self._connect()) as db, db:
            cur = db.execute("UPDATE runs SET status=?, ended=?, error=? WHERE status=?",
                             (RunStatus.FAILED.value, _iso(ended),
                              "Plugback stopped during this run. The next run finishes the work.",
                              RunStatus.RUNNING.value))
            return cur.rowcount

    def _select(self, clause: str, args: tuple) -> list[Run]:
        with closing(self._connect()) as db:
            rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs {clause}", args).fetchall()
        out = []
        for row in rows:
            d = dict(zip(_COLUMNS, row, strict=True))
            d["started"] = _parse(d["started"])
            d["ended"] = _parse(d["ended"])
            d["status"], d["kind"], d["trigger"] = RunStatus(d["status"]), RunKind(d["kind"]), Trigger(d["trigger"])
            out.append(Run(**d))
        return out


def warnings_text(warnings) -> str:
    """Per-file warnings as log lines."""
    return "".join(f"warning: {w.path}: {w.message}\n" for w in warnings)
