"""Live mode (issue #12): a job that backs up its changes continuously while its drive is connected.

After each change the job waits for a quiet period (``prefs.live_quiet_seconds``,
default 30 s) and backs up again; files that never stop changing still get
backed up after :data:`MAX_WAIT_FACTOR` quiet periods. The decision is the pure
:func:`live_wait`; :class:`LiveLoop` is the one thread that sleeps until the
next live run is due (it costs nothing while no change is pending). Runs go
through the job's runner queue, so a job never runs twice at once; a change
during a run makes another run after it. Pause and the battery rule apply as
to every automatic backup.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger("plugback.live")
#: A file that keeps changing is backed up at the latest after this many quiet periods.
MAX_WAIT_FACTOR = 10


def live_wait(first_change: float | None, last_change: float | None, now: float, quiet: float,
              max_wait: float | None = None) -> float | None:
    """Seconds until a live run is due (0: now), or None when no change waits.

    ``first_change`` / ``last_change``: monotonic times of the first and the latest change
    not yet backed up. Due ``quiet`` seconds after the latest change, and at the latest
    ``max_wait`` (default ``MAX_WAIT_FACTOR * quiet``) after the first.
    """
    if last_change is None:
        return None
    first = first_change if first_change is not None else last_change
    limit = max_wait if max_wait is not None else MAX_WAIT_FACTOR * quiet
    return max(0.0, min(last_change + quiet, first + limit) - now)


class LiveLoop(threading.Thread):
    """Starts live jobs' runs when their changes have settled.

    ``start_run(job) -> bool`` queues a live run when allowed (drive here, not
    paused, battery fine, not already queued or running); False leaves the
    changes pending, to be tried again after another quiet period.
    """

    def __init__(self, monotonic: Callable[[], float], quiet: Callable[[], float],
                 is_live: Callable[[str], bool], start_run: Callable[[str], bool]):
        super().__init__(name="live", daemon=True)
        self.monotonic = monotonic
        self.quiet = quiet
        self.is_live = is_live
        self.start_run = start_run
        self.pending: dict[str, tuple[float, float]] = {}   # job -> (first, last) change not backed up
        self._cond = threading.Condition()
        self._stopping = False

    def changed(self, job: str) -> None:
        """A change in ``job``'s sources (from a watcher's thread)."""
        if not self.is_live(job):
            return
        now = self.monotonic()
        with self._cond:
            first = self.pending.get(job, (now, now))[0]
            self.pending[job] = (first, now)
            self._cond.notify()

    def run_began(self, job: str) -> None:
        """A run of ``job`` began: the changes so far are in it (later ones make the next run)."""
        with self._cond:
            self.pending.pop(job, None)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def due_now(self) -> float | None:
        """Start the runs that are due; the seconds until the next one (None: nothing pending)."""
        quiet = self.quiet()
        now = self.monotonic()
        with self._cond:
            waits = {job: live_wait(f, last, now, quiet) for job, (f, last) in self.pending.items()}
        soonest = None
        for job, wait in waits.items():
            if wait is None:
                continue
            if wait <= 0:
                if self.start_run(job):
                    with self._cond:
                        self.pending.pop(job, None)   # queued: the run takes every change until it begins
                    continue
                wait = quiet   # not now (a run of it in progress, paused, drive away): look again later
                with self._cond:
                    if job in self.pending:
                        first, last = self.pending[job]
                        self.pending[job] = (first, max(last, now))
            soonest = wait if soonest is None else min(soonest, wait)
        return soonest

    def run(self) -> None:
        while True:
            try:
                wait = self.due_now()
            except Exception:   # noqa: BLE001 - the loop must survive anything one run start meets
                log.exception("live mode check failed")
                wait = self.quiet()
            with self._cond:
                if self._stopping:
                    return
                self._cond.wait(wait)
                if self._stopping:
                    return
