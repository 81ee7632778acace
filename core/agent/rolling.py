"""Rolling verification in the agent (issue #14): after a backup, re-read a slice of each set.

After a backup on a destination has committed, been flushed and "safe to unplug"
was said, and nothing else waits for that destination, one low-priority thread
re-reads a slice of every set there (core/engine/scrub.py), sized so a whole
pass ends within 30 days (core/agent/rolling_state.py). The slice only reads: the
drive stays safe to unplug. It stops at once (at the next block read) when a
backup is queued or starts for that destination, a connect backup is pending,
a restore opens from the drive, the drive is ejected or pulled, or the agent
quits; the next slice goes on from the cursor. Damage is repaired from the
source where the source still has the same content (core/engine/mend.py), and
recorded in history (a run of kind ``verify``) and notified either way.

The monthly check (``Agent.check_integrity``, the scheduler's minute tick) is
now the catch-up: a set whose pass is overdue (no backup ran on a present
drive for a month) gets the rest of its pass read in one go.

A remote job's set (issue #13) is checked after its backups by core/agent/remote_rolling.py.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING

from core.agent.config import Job
from core.agent.history import RunEnd, RunKind, RunStatus, Trigger
from core.agent.rolling_state import FLOOR, PassState, StateStore, drive_summary, overdue, slice_budget
from core.agent.words import plural
from core.engine.progress import CancelToken
from core.errors import PlugbackError

if TYPE_CHECKING:
    from core.agent.agent import Agent

log = logging.getLogger("plugback.rolling")
#: Seconds between "safe to unplug" and the slice: an eject right after the notification (from the
#: system's file manager too) must not find files of the drive open.
DELAY = 10.0
CONFIRM_SECONDS = 3.0    # the drive watcher polls every 2 s (Linux: at once, on the mount-table change)


class SliceCancel(CancelToken):
    """Cancelled by :meth:`cancel` or as soon as the destination is wanted for something else."""

    def __init__(self, agent: "Agent", key: str, drive_id: str | None):
        super().__init__()
        self.agent, self.key, self.drive_id = agent, key, drive_id
        runner = agent.runners.get(key)
        # The backup that just ended may still be its runner's current task: not a new one.
        self._baseline = runner.cancel if runner is not None else None

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or self._wanted()

    def check(self) -> None:
        if self.cancelled:
            self.cancel()
        super().check()

    def wait(self, seconds: float) -> bool:
        """Wait ``seconds`` (real time) unless cancelled first; True if the slice may go on."""
        deadline = time.monotonic() + seconds
        while not self.cancelled:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            self._event.wait(min(left, 0.2))
        return False

    def settle(self, timeout: float = 10.0) -> None:
        """Wait (briefly) for the backup that started this slice to leave its runner, so that a
        backup asked for right after is queued as new rather than taken for the one ending."""
        runner = self.agent.runners.get(self.key)
        deadline = time.monotonic() + timeout
        while runner is not None and self._baseline is not None and runner.cancel is self._baseline \
                and time.monotonic() < deadline and not self._event.wait(0.02):
            pass

    def _wanted(self) -> bool:
        agent, drive_id = self.agent, self.drive_id
        if agent.stopped.is_set() or agent.paused or not agent.config.prefs.monthly_integrity_check:
            return True
        if drive_id is not None and (drive_id not in agent.present or drive_id in agent.pending
                                     or agent.restore_drive == drive_id):
            return True
        runner = agent.runners.get(self.key)
        if runner is None:
            return False
        current = runner.cancel
        return bool(runner.tasks) or (current is not None and current is not self._baseline)


class RollingChecks:
    """The agent's rolling verification: one slice thread per destination at most."""

    def __init__(self, agent: "Agent", floor: int = FLOOR, delay: float = DELAY):
        self.agent = agent
        self.floor = floor
        self.delay = delay
        self.states = StateStore(agent.paths.data_dir / "rolling")
        self._lock = threading.Lock()
        self._threads: dict[str, tuple[threading.Thread, SliceCancel]] = {}
        #: Bytes the slice running on a destination has read so far (what the Drives page adds).
        self.live: dict[str, int] = {}
        #: Held while damage on a destination is repaired (a write): a backup there waits for it.
        self._writing: dict[str, threading.Lock] = {}

    # -- when -----------------------------------------------------------------------------

    def _allowed(self) -> bool:
        agent = self.agent
        return agent.config.prefs.monthly_integrity_check and not agent.is_paused() and agent.battery_ok() \
            and not agent.stopped.is_set()

    def after_backup(self, job: Job) -> bool:
        """A backup of ``job`` committed: slice every set of its destination, unless something else
        waits for it. True if a slice thread started."""
        agent, dest = self.agent, job.destination
        if not self._allowed() or agent.restore_drive == (dest.drive_id or "") \
                or (dest.drive_id and (agent._drive_busy(dest.drive_id, excluding=job.name)
                                       or dest.drive_id in agent.pending)):
            return False
        jobs = [j for j in agent.config.jobs if j.destination.key() == dest.key()]
        if dest.remote:   # a remote set (issue #13): start rclone only when a slice is due (remote_rolling)
            from core.agent.remote_rolling import due

            if not any(due(self, j) for j in jobs):
                return False
        return self._start(dest.key(), dest.drive_id, jobs, catch_up=False)

    def catch_up(self) -> list[str]:
        """Jobs whose pass is overdue on a present, idle destination: finish their pass now."""
        if not self._allowed():
            return []
        agent, now, started = self.agent, self.agent.clock.now(), []
        for job in agent.config.jobs:
            dest = job.destination
            if dest.remote or not agent._destination_present(job) or self.checking(dest.key()) \
                    or agent.restore_drive == (dest.drive_id or "") or dest.drive_id in agent.pending:
                continue
            runner = agent.runners.get(dest.key())
            if runner is not None and runner.busy():
                continue
            first = agent.history.first_success(job.name)
            if overdue(self.states.load(job.set_id), first.started if first else None, now) \
                    and self._start(dest.key(), dest.drive_id, [job], catch_up=True):
                started.append(job.name)
        return started

    def _start(self, key: str, drive_id: str | None, jobs: list[Job], *, catch_up: bool) -> bool:
        old = self._threads.get(key)
        if old is not None and old[1].cancelled and old[0] is not threading.current_thread():
            old[0].join(5)    # a slice stopped for the backup that just ended: let it save its cursor
        with self._lock:
            if self.checking(key):
                return False
            cancel = SliceCancel(self.agent, key, drive_id)
            thread = threading.Thread(target=self._run, args=(key, drive_id, [j.name for j in jobs], cancel,
                                                              catch_up), name=f"check-{key}", daemon=True)
            self._threads[key] = (thread, cancel)
        thread.start()
        return True

    def interrupt(self, key: str) -> None:
        """A run was asked for on the destination ``key``: the slice there stops at its next read."""
        entry = self._threads.get(key)
        if entry is not None:
            entry[1].cancel()

    def _writer(self, key: str) -> threading.Lock:
        with self._lock:
            return self._writing.setdefault(key, threading.Lock())

    def wait_for_repair(self, key: str, timeout: float = 600) -> None:
        """Before a backup on ``key``: let a repair under way there finish (two writers on one set
        are never allowed; only damaged files are copied, so this is rare and short)."""
        lock = self._writer(key)
        if lock.acquire(timeout=timeout):
            lock.release()

    def checking(self, key: str) -> bool:
        """Whether a slice thread runs for the destination ``key`` (``drive:<id>``, ``path:<folder>``)."""
        entry = self._threads.get(key)
        return entry is not None and entry[0].is_alive()

    def stop(self, drive_id: str | None = None, timeout: float = 10) -> None:
        """Stop the slice on ``drive_id`` (all when None) and wait for it to end (eject, quit)."""
        with self._lock:
            entries = [(k, e) for k, e in self._threads.items() if drive_id is None or k == f"drive:{drive_id}"]
        for _, (_thread, cancel) in entries:
            cancel.cancel()
        for _, (thread, _c) in entries:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def summary(self, drive_id: str) -> dict:
        """The Drives page's fields for one drive, connected or not (rolling_state.drive_summary): the
        state of each set on it, by the set ids config.json binds (a job in rotation: its set there)."""
        jobs = [j.on_drive(drive_id) for j in self.agent.config.jobs if drive_id in j.destination.drive_ids]
        key = f"drive:{drive_id}"
        return drive_summary([self.states.load(j.set_id) for j in jobs], key in self.live, self.live.get(key, 0))

    def job_summary(self, job: Job) -> dict | None:
        """A remote job's check (issue #13), in the fields :meth:`summary` gives a drive; None for
        other jobs (their checks show on the Drives page)."""
        if not job.destination.remote:
            return None
        key = job.destination.key()
        return drive_summary([self.states.load(job.set_id)], key in self.live, self.live.get(key, 0))

    # -- doing ----------------------------------------------------------------------------

    def _run(self, key: str, drive_id: str | None, names: list[str], cancel: SliceCancel, catch_up: bool) -> None:
        _lower_priority()
        cancel.settle()
        if not catch_up and not cancel.wait(self.delay):
            self._ended(key)
            return
        try:
            for name in names:
                job = self.agent.config.job(name)
                if cancel.cancelled:
                    break
                if job is not None:
                    self._slice(job, drive_id, cancel, catch_up)
        except Exception:   # noqa: BLE001 - a bug in a check must not take the agent down
            log.exception("rolling check on %s failed", key)
        finally:
            self._ended(key)

    def _ended(self, key: str) -> None:
        with self._lock:
            if self._threads.get(key, (None,))[0] is threading.current_thread():
                del self._threads[key]
        self.agent.changed()

    def _slice(self, job: Job, drive_id: str | None, cancel: SliceCancel, catch_up: bool) -> None:
        """One slice of ``job``'s set; its state saved, its damage mended, recorded and notified."""
        from core.engine.cache import engine_cache
        from core.engine.scrub import scrub_slice, stored_bytes

        if job.destination.remote:   # a cloud or network location (issue #13)
            from core.agent.remote_rolling import slice_remote

            return slice_remote(self, job, cancel)
        agent = self.agent
        try:
            target, bset = self._open(job, drive_id)
        except PlugbackError as err:
            log.info("no rolling check of %s now: %s", job.name, err.message)
            return
        if bset is None:
            return
        now = agent.clock.now()
        state = self.states.load(bset.set_id) or PassState(set_id=bset.set_id)
        if not catch_up:
            state.note_slice(now)
        if not state.under_way:
            state.begin_pass(now)
        self.live[cancel.key] = 0
        try:
            if state.total_bytes is None:
                state.total_bytes = stored_bytes(bset, cancel, target.mount)
                if state.total_bytes is None:
                    return    # cancelled while measuring: the slice time is not worth saving
            budget = None if catch_up else slice_budget(state, now, self.floor)
            # A pulled drive shows as read errors a moment before the watcher sees it go: wait a
            # little before calling an unreadable file damaged.
            result = scrub_slice(bset, state.cursor, budget, cancel=cancel, boundary=target.mount,
                                 progress=self._progress(cancel.key), confirm=lambda: cancel.wait(CONFIRM_SECONDS),
                                 cache=engine_cache(agent.paths))
        except PlugbackError as err:   # the set is not where it seems (a symlink), or the drive went
            log.warning("rolling check of %s stopped: %s", job.name, err.message)
            return
        finally:
            self.live.pop(cancel.key, None)
        state.cursor, state.done_bytes = result.cursor, state.done_bytes + result.bytes_read
        if result.finished:
            state.last_full = agent.clock.now()
        self.states.save(state)
        log.info("rolling check of %s: %s read, %s%s", job.name, plural(result.bytes_read, "byte"),
                 "pass finished" if result.finished else f"{state.percent()} % of the pass",
                 ", stopped" if result.stopped else "")
        if result.damaged or result.finished:
            self._record(job, bset, target, state, result, now, cancel, catch_up)
        agent.changed()

    def _progress(self, key: str):
        """A progress callback keeping ``live`` and telling the listeners (the icon, the window's
        next poll) at most twice a second."""
        last = [float("-inf")]

        def progress(p) -> None:
            self.live[key] = p.bytes_done
            now = self.agent.clock.monotonic()
            if now - last[0] >= 0.5:
                last[0] = now
                self.agent.changed()
        return progress

    def _open(self, job: Job, drive_id: str | None):
        """(target, the job's own set) on the drive where it is now; (target, None) if no set yet."""
        from pathlib import Path

        from core.agent.adopt import open_own
        from core.agent.jobs import Target, resolve_target
        from core.engine.repo import BackupSet
        from core.errors import DriveNotConnected

        agent = self.agent
        if drive_id:
            mount = agent.present.get(drive_id)
            if mount is None:
                raise DriveNotConnected(label=agent.config.drive_label(drive_id))
            target = resolve_target(job, agent.config, mounts=[mount])
        else:
            assert job.destination.path is not None
            target = Target(set_path=Path(job.destination.path))
        if not BackupSet.exists(target.set_path):
            return target, None
        return target, open_own(job, target.set_path, agent._unlocker(), agent.history)

    def _record(self, job: Job, bset, target, state: PassState, result, started, cancel: SliceCancel,
                catch_up: bool) -> None:
        """History (a ``verify`` run) and a notification for a finished pass or damage found."""
        from core.agent.rolling_report import damage_report

        agent = self.agent
        trigger = Trigger.CONNECT if target.drive_id and not catch_up else Trigger.SCHEDULE
        # A finished pass's row spans the pass; damage's row is this slice's.
        began = state.pass_started if result.finished and not result.damaged and state.pass_started else started
        run_id = agent.history.start(job.name, began, drive_id=target.drive_id, kind=RunKind.VERIFY, trigger=trigger)
        label = agent.config.drive_label(target.drive_id) if target.drive_id else str(target.set_path)
        with self._writer(cancel.key):
            report = damage_report(job, bset, result, state, label, agent.clock)
        agent.history.append_log(run_id, "\n".join(report.log))
        agent.history.finish(run_id, RunEnd(status=report.status, ended=agent.clock.now(), error=report.error,
                                            error_code="damaged" if report.status == RunStatus.FAILED else None,
                                            warnings=report.repaired))
        if report.title:
            agent.notifier.notify(report.title, report.text, report.kind)


def _lower_priority() -> None:
    """Run this thread at the lowest CPU priority, which Linux's I/O schedulers also follow for its
    reads (best-effort class, priority from nice). Elsewhere the slice runs at normal priority."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)   # this thread only, on Linux
        except OSError as err:
            log.info("could not lower the rolling check's priority: %s", err)
