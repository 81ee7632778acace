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
from pathlib import Path

STATUSES = ("running", "ok", "warnings", "failed", "cancelled", "drive_removed")
SUCCESS = ("ok", "warnings")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'backup',
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
_COLUMNS = ("id", "job", "kind", "drive_id", "snapshot_id", "started", "ended", "status", "files_scanned",
            "bytes_scanned", "files_copied", "bytes_copied", "warnings", "error", "error_code")


@dataclass
class Run:
    """One run as stored (times are aware UTC datetimes)."""

    id: int
    job: str
    kind: str
    drive_id: str | None
    snapshot_id: str | None
    started: datetime
    ended: datetime | None
    status: str
    files_scanned: int = 0
    bytes_scanned: int = 0
    files_copied: int = 0
    bytes_copied: int = 0
    warnings: int = 0
    error: str | None = None
    error_code: str | None = None

    def to_dict(self) -> dict:
        """The IPC ``Run`` shape (docs/ipc.md): times as ISO text, ``warnings`` a count."""
        d = asdict(self)
        d["started"] = self.started.isoformat()
        d["ended"] = self.ended.isoformat() if self.ended else None
        return d


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

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA busy_timeout=30000")
        return db

    def start(self, job: str, started: datetime, *, drive_id: str | None = None, kind: str = "backup") -> int:
        """Record a run that has begun; returns its id."""
        with closing(self._connect()) as db, db:
            cur = db.execute("INSERT INTO runs (job, kind, drive_id, started, status) VALUES (?,?,?,?,?)",
                             (job, kind, drive_id, _iso(started), "running"))
            return cur.lastrowid

    def finish(self, run_id: int, *, status: str, ended: datetime, snapshot_id: str | None = None,
               files_scanned: int = 0, bytes_scanned: int = 0, files_copied: int = 0,
               bytes_copied: int = 0, warnings: int = 0, error: str | None = None,
               error_code: str | None = None) -> None:
        """Record how a run ended."""
        if status not in STATUSES or status == "running":
            raise ValueError(f"not a final run status: {status!r}")
        with closing(self._connect()) as db, db:
            db.execute("UPDATE runs SET status=?, ended=?, snapshot_id=?, files_scanned=?, bytes_scanned=?,"
                       " files_copied=?, bytes_copied=?, warnings=?, error=?, error_code=? WHERE id=?",
                       (status, _iso(ended), snapshot_id, files_scanned, bytes_scanned, files_copied,
                        bytes_copied, warnings, error, error_code, run_id))

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

    def runs(self, job: str | None = None, limit: int = 100, kind: str | None = "backup") -> list[Run]:
        """Runs newest first, optionally of one job."""
        where, args = [], []
        if job is not None:
            where.append("job=?")
            args.append(job)
        if kind is not None:
            where.append("kind=?")
            args.append(kind)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._select(f"{clause} ORDER BY started DESC, id DESC LIMIT ?", (*args, int(limit)))

    def last(self, job: str, *, statuses: tuple[str, ...] | None = None, kind: str = "backup") -> Run | None:
        """The newest run of ``job`` (with one of ``statuses`` if given)."""
        clause, args = "WHERE job=? AND kind=?", [job, kind]
        if statuses:
            clause += f" AND status IN ({','.join('?' * len(statuses))})"
            args += list(statuses)
        rows = self._select(clause + " ORDER BY started DESC, id DESC LIMIT 1", tuple(args))
        return rows[0] if rows else None

    def last_success(self, job: str) -> Run | None:
        """The newest run that committed a snapshot (ok or warnings)."""
        return self.last(job, statuses=SUCCESS)

    def first_success(self, job: str) -> Run | None:
        """The oldest run of ``job`` that committed a snapshot."""
        rows = self._select("WHERE job=? AND kind='backup' AND status IN ('ok','warnings') "
                            "ORDER BY started ASC, id ASC LIMIT 1", (job,))
        return rows[0] if rows else None

    def close_interrupted(self, ended: datetime) -> int:
        """Mark runs left 'running' by an agent that died as failed; returns how many."""
        with closing(self._connect()) as db, db:
            cur = db.execute("UPDATE runs SET status='failed', ended=?, error=? WHERE status='running'",
                             (_iso(ended), "Plugback stopped during this run. The next run finishes the work."))
            return cur.rowcount

    def _select(self, clause: str, args: tuple) -> list[Run]:
        with closing(self._connect()) as db:
            rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs {clause}", args).fetchall()
        out = []
        for row in rows:
            d = dict(zip(_COLUMNS, row, strict=True))
            d["started"] = _parse(d["started"])
            d["ended"] = _parse(d["ended"])
            out.append(Run(**d))
        return out


def warnings_text(warnings) -> str:
    """Per-file warnings as log lines."""
    return "".join(f"warning: {w.path}: {w.message}\n" for w in warnings)
