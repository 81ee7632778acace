"""The agent's change tracker (issue #12): journals and watchers of every job, and the scan each run gets.

:class:`ChangeTracker` keeps one :class:`~core.agent.journal.Journal` and one
:class:`~core.agent.observers.SourceWatch` per job while the agent runs. A
ticker thread writes changed journals to the state folder every few seconds,
notices a dead observer and a jumping clock. Before a run the agent asks
:meth:`ChangeTracker.begin` for a :class:`ScanPlan` — the engine's
:class:`~core.engine.changes.ChangeHint` when the journal can be trusted, a
full scan (and why) otherwise — and after it :meth:`ChangeTracker.end`, which
bases the next journal on the committed snapshot. The journal is swapped when
the run begins, so changes made during the scan belong to the next backup.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Callable

from core.agent.journal import FULL, JOURNAL, Journal, JournalStore, Taken, TrustInput, reason_text, resumed, scan_plan
from core.agent.words import plural
from core.engine.changes import ChangeHint
from core.engine.progress import Clock

if TYPE_CHECKING:
    from core.agent.observers import SourceWatch

log = logging.getLogger("plugback.changes")
#: How often changed journals are written, the observers checked and the clock compared.
TICK_SECONDS = 5.0
#: A wall clock that moved this much more (or less) than the monotonic clock jumped (or the computer slept).
JUMP_SECONDS = 30.0


@dataclass(frozen=True)
class ScanPlan:
    """How one backup scans: ``hint`` (only the journal's folders) or everything, ``rehash`` reading all."""

    job: str
    mode: str                      # JOURNAL or FULL
    reason: str | None             # why FULL (a journal.REASONS code)
    hint: ChangeHint | None = None
    rehash: bool = False
    taken: Taken | None = None
    where: str = ""                # the set's destination key (its journal)

    @property
    def note(self) -> str:
        """The line the run's log gets."""
        if self.hint is not None:
            n = len(self.hint.dirs) + len(self.hint.trees)
            return (f"scan: only what changed since snapshot {self.hint.since_snapshot}: "
                    f"{plural(n, 'folder')} (change journal)")
        return f"scan: every folder, because {reason_text(self.reason)}"


def _wheres(job) -> list[str]:
    """The sets a job writes to, by destination key: one per drive (rotation), or its folder."""
    if job.destination.path:
        return [job.destination.key()]
    return [f"drive:{d}" for d in job.destination.drive_ids]


def _watch_key(job) -> tuple:
    return (tuple(job.sources), tuple(job.excludes), tuple(_wheres(job)))


class ChangeTracker:
    """Journals and watchers of every job (nothing runs until :meth:`start`)."""

    def __init__(self, paths, clock: Clock, *, on_change: Callable[[str], None] = lambda job: None,
                 tick_seconds: float = TICK_SECONDS, partitions=None):
        self.paths = paths
        self.clock = clock
        self.store = JournalStore(paths.data_dir)
        self.on_change = on_change
        self.tick_seconds = tick_seconds
        self.partitions = partitions           # tests: psutil.disk_partitions' answer
        self.journals: dict[tuple[str, str], Journal] = {}   # (job name, set's destination key)
        self.watches: dict[str, SourceWatch] = {}
        self.keys: dict[str, tuple] = {}
        self.requested: set[str] = set()
        self.ignored: tuple[str, ...] = ()
        self.started = False
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clocks = (clock.now(), clock.monotonic())

    # -- life cycle ----------------------------------------------------------------------------

    def start(self, config, mounts=()) -> None:
        """Watch every job's sources; journals from a previous agent are read (and distrusted)."""
        with self._lock:
            self.started = True
            self.reconcile(config, mounts)
        self._clocks = (self.clock.now(), self.clock.monotonic())
        self._thread = threading.Thread(target=self._run, name="change-journal", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and write every journal as closed cleanly."""
        self._stop.set()
        with self._lock:
            if not self.started:
                return
            self.started = False
            watches, self.watches = list(self.watches.values()), {}
        for watch in watches:
            watch.stop()
        now = self.clock.now()
        for journal in list(self.journals.values()):
            self._write(journal, closed=now)
        if self._thread is not None:
            self._thread.join(5)

    def reconcile(self, config, mounts=()) -> None:
        """Follow the settings: watch new jobs, re-watch edited ones, drop removed ones.

        ``mounts`` are the connected drives' mount points: with the state folders and the
        jobs' folder destinations, they are never watched (Plugback's own writes).
        """
        with self._lock:
            if not self.started:
                return
            own = [str(p) for p in (self.paths.config_dir, self.paths.data_dir, self.paths.log_dir,
                                    self.paths.runtime_dir)]
            own += [j.destination.path for j in config.jobs if j.destination.path] + [str(m) for m in mounts]
            self.ignored = tuple(sorted({os.path.abspath(p) for p in own}))
            wanted = {j.name: j for j in config.jobs}
            for name in [n for n in self.watches if n not in wanted or self.keys[n] != _watch_key(wanted[n])]:
                self.watches.pop(name).stop()
                for key in [k for k in self.journals if k[0] == name]:
                    if name in wanted and key[1] in _wheres(wanted[name]):
                        self.journals[key].distrust("job_changed")
                    else:
                        self.journals.pop(key)
                        self.store.remove(*key)
                self.keys.pop(name, None)
            for name, job in wanted.items():
                if name not in self.watches:
                    self._watch(job)

    def _watch(self, job) -> None:
        from core.agent.observers import SourceWatch

        journals = []
        for where in _wheres(job):
            journal = self.journals.get((job.name, where))
            if journal is None:
                journal = resumed(job.name, self.store.read(job.name, where), self.clock.now(), where)
                self.journals[(job.name, where)] = journal
            journal.permanent = None
            journals.append(journal)
        self.keys[job.name] = _watch_key(job)
        try:
            self.watches[job.name] = SourceWatch(journals, job.sources, job.excludes, lambda: self.ignored,
                                                 self.on_change, partitions=self.partitions).start()
        except Exception:   # noqa: BLE001 - an optimisation failing must not stop the agent
            log.exception("cannot watch the folders of %s", job.name)
            for journal in journals:
                journal.distrust("failed", permanent=True)
        for journal in journals:
            self._write(journal)

    # -- runs ----------------------------------------------------------------------------------

    def request_full(self, job: str, wanted: bool = True) -> None:
        """"Full check now": the job's next backup scans and reads everything (``wanted`` False: not)."""
        with self._lock:
            if wanted:
                self.requested.add(job)
            else:
                self.requested.discard(job)

    def begin(self, job: str, last_snapshot: str | None, *, full_days: int, full_runs: int,
              where: str = "") -> ScanPlan:
        """The scan of a run of ``job`` into the set at ``where`` (its destination key) that starts now;
        that set's journal starts over (see :meth:`end`)."""
        with self._lock:
            requested = job in self.requested
            self.requested.discard(job)
            journal = self._journal(job, where) if self.started else None
        if journal is None:
            inp = TrustInput(None, last_snapshot, None, None, 0, requested=requested, watched=False)
            mode, reason = scan_plan(inp, self.clock.now(), full_days=full_days, full_runs=full_runs)
            return ScanPlan(job, mode, reason, rehash=requested)
        watch = self.watches.get(job)
        if watch is not None and not requested and last_snapshot is not None:
            watch.settle()   # the events of changes made until now are in
        taken = journal.take()
        inp = TrustInput(taken.since, last_snapshot, taken.untrusted, journal.last_full, journal.runs_since_full,
                         requested=requested)
        mode, reason = scan_plan(inp, self.clock.now(), full_days=full_days, full_runs=full_runs)
        hint = ChangeHint(last_snapshot, taken.dirs, taken.trees) if mode == JOURNAL and last_snapshot else None
        self._write(journal)
        return ScanPlan(job, mode, reason, hint, rehash=requested, taken=taken, where=journal.where)

    def end(self, plan: ScanPlan, snapshot_id: str | None, *, engine_scan: str | None = None) -> None:
        """After the run: a committed ``snapshot_id`` is the new journal's base; a failed run gives back.

        ``engine_scan``: what the engine did (``BackupResult.scan``): "full" after a hint means
        it found the hint did not apply (another newest snapshot, other rules), and says so."""
        with self._lock:
            journal = self.journals.get((plan.job, plan.where))
        if journal is None or plan.taken is None:
            return
        if snapshot_id:
            mode, reason = plan.mode, plan.reason
            if mode == JOURNAL and engine_scan == FULL:
                mode, reason = FULL, "engine"
            journal.committed(snapshot_id, mode, reason, self.clock.now())
        else:
            journal.give_back(plan.taken)
            if plan.rehash:
                self.request_full(plan.job)
        self._write(journal)

    # -- status --------------------------------------------------------------------------------

    def _journal(self, job: str, where: str = "") -> Journal | None:
        """The journal of ``job`` for the set at ``where``; without ``where``, its first set's."""
        if where:
            return self.journals.get((job, where))
        return next((j for (name, _), j in self.journals.items() if name == job), None)

    def status(self, job: str, last_snapshot: str | None, *, full_days: int, full_runs: int,
               where: str = "") -> dict:
        """The ``scan`` fields of a job's status for the set at ``where`` (docs/ipc.md)."""
        with self._lock:
            journal = self._journal(job, where) if self.started else None
            requested = job in self.requested
        if journal is None:
            return {"scan": None, "full_scan_reason": None, "watching": False, "next_scan": FULL,
                    "next_scan_reason": reason_text("no_watch"), "changed_folders": None}
        with journal.lock:
            inp = TrustInput(journal.since, last_snapshot, journal.untrusted, journal.last_full,
                             journal.runs_since_full, requested=requested)
            folders = journal.folders
        mode, reason = scan_plan(inp, self.clock.now(), full_days=full_days, full_runs=full_runs)
        return {"scan": journal.last_scan, "full_scan_reason": reason_text(journal.last_full_reason),
                "watching": True, "next_scan": mode, "next_scan_reason": reason_text(reason),
                "changed_folders": folders}

    # -- the ticker ----------------------------------------------------------------------------

    def tick(self) -> None:
        """Write changed journals; distrust journals whose observer died or when the clock jumped."""
        now, mono = self.clock.now(), self.clock.monotonic()
        last_now, last_mono = self._clocks
        self._clocks = (now, mono)
        jumped = abs((now - last_now).total_seconds() - (mono - last_mono)) > JUMP_SECONDS
        with self._lock:
            items = [(j, self.watches[name]) for (name, _), j in self.journals.items() if name in self.watches]
        for journal, watch in items:
            if jumped:
                journal.distrust("clock_jump")
            if not watch.healthy():
                journal.distrust("failed")
            if journal.dirty:
                self._write(journal)

    def _write(self, journal: Journal, *, closed: datetime | None = None) -> None:
        try:
            self.store.write(journal, closed=closed)
        except OSError as err:
            log.warning("could not write the change journal of %s: %s", journal.job, err)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.tick()
            except Exception:   # noqa: BLE001 - the ticker must survive anything
                log.exception("change journal tick failed")
