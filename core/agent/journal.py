"""The change journal (issue #12): per job, the folders changed since its last committed snapshot.

The watchers (``core/agent/observers.py``) turn each file-system event into
folders (:func:`folders_for_event`) and add them to the job's :class:`Journal`,
an in-memory set behind a lock: an event handler only adds a path. The agent's
change tracker (``core/agent/changes.py``) writes journals to
``<data dir>/journal/<job>.json`` atomically, at most every few seconds and
before a run, and asks :func:`scan_plan` whether the next backup may rescan
only those folders (a :class:`~core.engine.changes.ChangeHint`) or must scan
everything, and why.

Memory is bounded: the journal holds folders, not files, and past
:data:`MAX_FOLDERS` it collapses to "full scan" (reason ``too_many``).

What is on disk is read back through :func:`load_record`, which checks every
field; anything else is ignored (a journal read from disk is never trusted
for a scan anyway: between two agents nobody was watching).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from core.agent.times import iso, read_time
from core.engine.atomic import replace_file

FORMAT = "plugback-journal"
VERSION = 1
#: Past this many folders the journal stops collecting and the next backup scans everything.
MAX_FOLDERS = 10_000
#: How a backup scans: only the journal's folders, or every folder of every source.
JOURNAL, FULL = "journal", "full"

#: Why a backup scans everything (the codes are in status; the words are what the user reads).
REASONS = {
    "requested": "a full check was asked for (every file is read again)",
    "first": "this is the job's first backup",
    "not_watching": "Plugback was not watching the folders at some point since the last backup",
    "crashed": "Plugback stopped unexpectedly since the last backup",
    "other_backup": "the last backup was not made by this Plugback agent (the command line, or another computer)",
    "overflow": "too many changes at once: the system dropped change events",
    "watch_limit": ("the system's limit on watched folders was reached; raise fs.inotify.max_user_watches "
                    "(e.g. `sudo sysctl fs.inotify.max_user_watches=524288`)"),
    "failed": "watching the folders for changes failed",
    "unreliable_fs": "a source is on a network or FUSE file system, whose change events cannot be trusted",
    "clock_jump": "the computer's clock jumped (or the computer slept)",
    "too_many": f"more than {MAX_FOLDERS:,} folders changed",
    "job_changed": "the job's folders or excludes changed",
    "safety_net": "the regular full check (Preferences: full check every N days or runs)",
    "no_watch": "the folders are not being watched (Plugback's agent is not running)",
    "engine": "the backup set's newest snapshot or its rules were not the ones the change journal counted from",
}


def reason_text(code: str | None) -> str | None:
    """The sentence for a reason code (None stays None; an unknown code reads as itself)."""
    return None if code is None else REASONS.get(code, code)


def folders_for_event(kind: str, is_dir: bool, src: str, dest: str = "") -> tuple[set[str], set[str]]:
    """``(dirs, trees)`` to rescan for one event (watchdog's ``event_type`` names, absolute paths).

    Until the engine documents otherwise (core/engine/changes.py): an event on P adds
    dirname(P) to ``dirs``; a folder created or moved adds the folder itself to ``trees``
    (and both old and new parents to ``dirs``); a folder's own change (metadata, its list
    of entries) adds the folder and its parent to ``dirs``.
    """
    dirs: set[str] = set()
    trees: set[str] = set()
    if kind in ("opened", "closed_no_write"):
        return dirs, trees                     # reading changes nothing (Plugback reads every file)
    for path in (src, dest) if kind == "moved" else (src,):
        if not path:
            continue                           # a move from or to outside the watched folders
        dirs.add(os.path.dirname(path))
        if is_dir:
            if kind in ("created", "moved"):
                trees.add(path)
            elif kind in ("modified", "attrib"):
                dirs.add(path)
    if kind == "moved" and is_dir and src:
        trees.discard(src)                     # gone from there: its old parent's rescan sees that
    return dirs, trees


@dataclass
class Journal:
    """One job's folders changed since ``since`` (a snapshot id; None = since no known snapshot).

    ``untrusted`` is the reason code that forces the next backup to scan everything
    (the first one recorded wins); ``permanent`` is a reason that holds for as long
    as the job is watched this way (a network source, a watch limit), kept across runs.
    """

    job: str
    #: The set it is for: its destination's key (``drive:<id>``, ``path:<folder>``); a job on several
    #: drives (rotation) has one journal per drive, since each drive holds its own set.
    where: str = ""
    since: str | None = None
    watching_since: datetime | None = None
    dirs: set[str] = field(default_factory=set)
    trees: set[str] = field(default_factory=set)
    untrusted: str | None = None
    permanent: str | None = None
    # what the last backups did, for status and the safety net
    last_scan: str | None = None
    last_full: datetime | None = None
    last_full_reason: str | None = None
    runs_since_full: int = 0
    dirty: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, dirs, trees=()) -> None:
        """Record folders to rescan (thread-safe; the watchers' only call)."""
        with self.lock:
            if self.untrusted is not None:
                return                           # a full scan comes anyway: collect nothing
            self.dirs.update(dirs)
            self.trees.update(trees)
            if len(self.dirs) + len(self.trees) > MAX_FOLDERS:
                self._distrust("too_many")
            self.dirty = True

    def distrust(self, reason: str, *, permanent: bool = False) -> None:
        """The journal may miss changes: the next backup scans everything (``reason`` says why)."""
        with self.lock:
            if permanent:
                self.permanent = self.permanent or reason
            self._distrust(reason)

    def _distrust(self, reason: str) -> None:
        if self.untrusted is None:
            self.untrusted = reason
        self.dirs.clear()
        self.trees.clear()
        self.dirty = True

    @property
    def folders(self) -> int:
        return len(self.dirs) + len(self.trees)

    def take(self) -> "Taken":
        """What the journal holds, and a fresh journal in its place (a run begins: events from now on
        belong to the next backup, so a change during the scan is never lost)."""
        with self.lock:
            taken = Taken(self.since, frozenset(self.dirs), frozenset(self.trees), self.untrusted)
            self.since, self.untrusted = None, self.permanent
            self.dirs, self.trees = set(), set()
            self.dirty = True
            return taken

    def committed(self, snapshot_id: str, mode: str, reason: str | None, now: datetime) -> None:
        """The run that took the journal committed ``snapshot_id``: the new journal counts from it."""
        with self.lock:
            self.since = snapshot_id
            self.last_scan = mode
            if mode == FULL:
                self.last_full, self.last_full_reason, self.runs_since_full = now, reason, 0
            else:
                self.runs_since_full += 1
            self.dirty = True

    def give_back(self, taken: "Taken") -> None:
        """The run failed: what it took is still to be backed up (merged with what came since)."""
        with self.lock:
            if taken.untrusted is not None:
                self._distrust(taken.untrusted)
            self.since = taken.since
            if self.untrusted is None:
                self.dirs.update(taken.dirs)
                self.trees.update(taken.trees)
            self.dirty = True

    def to_record(self, *, closed: datetime | None = None) -> dict:
        """The JSON written to the state folder (``closed``: the agent stopped cleanly at that time)."""
        with self.lock:
            self.dirty = False
            return {"format": FORMAT, "version": VERSION, "job": self.job, "where": self.where, "since": self.since,
                    "watching_since": iso(self.watching_since), "closed": iso(closed),
                    "untrusted": self.untrusted, "dirs": sorted(self.dirs), "trees": sorted(self.trees),
                    "last_scan": self.last_scan, "last_full": iso(self.last_full),
                    "last_full_reason": self.last_full_reason, "runs_since_full": self.runs_since_full}


@dataclass(frozen=True)
class Taken:
    """A journal's contents at the moment a run began."""

    since: str | None
    dirs: frozenset[str]
    trees: frozenset[str]
    untrusted: str | None


def _text(value, what: str) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > 4096):
        raise ValueError(f"{what} must be text")
    return value


def load_record(data: bytes, job: str, where: str = "") -> dict:
    """A journal file's fields, checked (ValueError when anything is off: the file is then ignored)."""
    record = json.loads(data.decode("utf-8"))
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("version") != VERSION:
        raise ValueError("not a journal of this version")
    if record.get("job") != job or record.get("where", "") != where:
        raise ValueError("the journal of another job or set")
    folders = {}
    for key in ("dirs", "trees"):
        items = record.get(key)
        if not isinstance(items, list) or len(items) > MAX_FOLDERS or \
                not all(isinstance(p, str) and os.path.isabs(p) for p in items):
            raise ValueError(f"{key} must be a list of absolute folders")
        folders[key] = items
    runs = record.get("runs_since_full")
    if not isinstance(runs, int) or isinstance(runs, bool) or runs < 0:
        raise ValueError("runs_since_full must be a whole number")
    last_scan = record.get("last_scan")
    if last_scan not in (None, JOURNAL, FULL):
        raise ValueError("last_scan must be journal or full")
    return {"since": _text(record.get("since"), "since"), "watching_since": read_time(record.get("watching_since")),
            "closed": read_time(record.get("closed")), "untrusted": _text(record.get("untrusted"), "untrusted"),
            **folders, "last_scan": last_scan, "last_full": read_time(record.get("last_full")),
            "last_full_reason": _text(record.get("last_full_reason"), "last_full_reason"), "runs_since_full": runs}


class JournalStore:
    """Journal files in ``<data dir>/journal/``, one per job and set (named by a hash of both)."""

    def __init__(self, data_dir: Path):
        self.folder = Path(data_dir) / "journal"

    def path(self, job: str, where: str = "") -> Path:
        digest = hashlib.sha256(f"{job.casefold()}\n{where}".encode("utf-8")).hexdigest()[:24]
        return self.folder / f"{digest}.json"

    def write(self, journal: Journal, *, closed: datetime | None = None) -> None:
        """Write atomically (temp file + replace; not fsynced: a journal from disk is never trusted
        for a scan, it only carries the safety net's counts and why the last agent stopped)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = json.dumps(journal.to_record(closed=closed), indent=0).encode("utf-8")
        replace_file(self.path(journal.job, journal.where), data, mode=0o600, durable=False)

    def read(self, job: str, where: str = "") -> dict | None:
        """The checked record of ``job``'s journal for ``where``, or None (missing, unreadable or damaged)."""
        try:
            return load_record(self.path(job, where).read_bytes(), job, where)
        except (OSError, ValueError):
            return None

    def remove(self, job: str, where: str = "") -> None:
        try:
            self.path(job, where).unlink()
        except OSError:
            pass


def resumed(job: str, record: dict | None, now: datetime, where: str = "") -> Journal:
    """A new agent's journal for ``job``: it counts from no snapshot (nobody watched between two agents),
    keeps the previous agent's safety-net counts, and says why the next backup scans everything."""
    journal = Journal(job, where, watching_since=now)
    if record is not None:
        journal.last_scan, journal.last_full = record["last_scan"], record["last_full"]
        journal.last_full_reason, journal.runs_since_full = record["last_full_reason"], record["runs_since_full"]
        journal.untrusted = "not_watching" if record["closed"] else "crashed"
    return journal


@dataclass(frozen=True)
class TrustInput:
    """Everything :func:`scan_plan` decides on (no clock, no files: table-testable)."""

    since: str | None              # the snapshot the journal counts from (None: none)
    last_snapshot: str | None      # the job's newest committed snapshot in this computer's history
    untrusted: str | None          # a reason recorded while watching (overflow, watch limit, ...)
    last_full: datetime | None     # when the last full scan ran
    runs_since_full: int
    requested: bool = False        # "Full check now" / --rehash
    watched: bool = True           # the agent watches this job's sources


def scan_plan(inp: TrustInput, now: datetime, *, full_days: int, full_runs: int) -> tuple[str, str | None]:
    """``(JOURNAL, None)`` when the journal can be trusted, else ``(FULL, reason code)``.

    ``full_days`` / ``full_runs`` are the safety net: a full scan at least that often
    (0 turns one off).
    """
    if inp.requested:
        return FULL, "requested"
    if inp.last_snapshot is None:
        return FULL, "first"
    if not inp.watched:
        return FULL, "no_watch"
    if inp.untrusted is not None:
        return FULL, inp.untrusted
    if inp.since is None:
        return FULL, "not_watching"
    if inp.since != inp.last_snapshot:
        return FULL, "other_backup"
    if inp.last_full is None or now < inp.last_full:
        return FULL, "safety_net" if inp.last_full is None else "clock_jump"
    if full_days and now - inp.last_full >= timedelta(days=full_days):
        return FULL, "safety_net"
    if full_runs and inp.runs_since_full >= full_runs:
        return FULL, "safety_net"
    return JOURNAL, None
