"""The agent: owns the settings, the job queue, the history and every decision to run.

The icon, the IPC server, the drive watcher and the scheduler all call into
one :class:`Agent`. It has no GUI code: the icon reads :meth:`tray_state`
and listens for changes; everything is testable with ``--no-icon``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from core.agent.agent_state import AgentOptions, DriveState, PendingConnect, TrayState
from core.agent.changes import ChangeTracker
from core.agent.config import Config, Job, Paths
from core.agent.config_file import file_stamp, load_or_recover, read_config, update_config
from core.agent.drives import read_drive_file
from core.agent.history import SUCCESS, History, RunEnd, RunStatus, Trigger
from core.agent.restore_first import PageHold, announce_connect, hold_connect, release_held, wait_for_restore
from core.agent.rolling import RollingChecks
from core.agent.runner import RESTORE, JobRunner, RunCancel, Task
from core.agent.schedule import connect_due, due
from core.agent.words import plural
from core.engine.progress import Clock
from core.errors import ConfigError, DriveGone, DriveNotConnected, NotFound
from core.platform import notify as notify_mod
from core.platform.eject import Ejector

log = logging.getLogger("plugback.agent")


class Agent:
    """The state and actions of the running agent (one per user)."""

    def __init__(self, paths: Paths, *, clock: Clock | None = None, notifier: notify_mod.Notifier | None = None,
                 ejector: Ejector | None = None, options: AgentOptions | None = None):
        self.paths = paths
        paths.ensure()
        self.clock = clock or Clock()
        self.options = options or AgentOptions()
        self.history = History(paths.history_file)
        self.ejector = ejector or Ejector()
        self.notifier = notify_mod.RecordingNotifier(paths.notifications_log, notifier,
                                                     enabled=lambda: self.config.prefs.notifications)
        self.lock = threading.RLock()
        self.runners: dict[str, JobRunner] = {}
        self.present: dict[str, str] = {}          # drive_id -> mount point, for enrolled drives
        self.pending: dict[str, PendingConnect] = {}
        self.paused = False
        self.paused_until: datetime | None = None
        self.problem: str | None = None
        self.backend = "none"
        self.drive_events: str | None = None       # the watcher's event source (status.drive_events)
        self.restore_task: dict | None = None
        self.restore_drive: str | None = None
        self.restore_stop: tuple | None = None   # (runner, task key) of the restore to stop (core.agent.browse)
        self.page_hold = PageHold(lambda: release_held(self))   # the Restore page is open
        self.listeners: list[Callable[[], None]] = []
        self.stopped = threading.Event()
        self.settings_proc: subprocess.Popen | None = None
        self.config: Config = Config()
        self._stamp: tuple[int, int] | None = None
        # the change journal and live mode (issue #12): idle until start_watching (core/agent/watching.py)
        self.changes = ChangeTracker(paths, self.clock)
        self.live: Any = None
        self.rolling = RollingChecks(self, floor=self.options.rolling_floor, delay=self.options.rolling_delay)
        from core.agent.offers import Offers

        self.offers = Offers(self)
        self.remote_waiting = None   # core.agent.remote_jobs.Waiting, made when a remote job first waits
        self._load_config(initial=True)

    # -- settings --------------------------------------------------------------------------

    def _load_config(self, initial: bool = False) -> None:
        path = self.paths.config_file
        stamp = file_stamp(path)
        if initial:
            config, moved, err = load_or_recover(path)
            if moved and err:
                self._report_problem(f"The settings file was damaged ({err.message}) and was kept as "
                                     f"{moved.name}; Plugback started with empty settings.")
            self.config = config
        else:
            try:
                old_names = {j.name for j in self.config.jobs}
                self.config = read_config(path)
                if self.problem and self.problem.startswith("The settings file"):
                    self.problem = None
                # A job added for a drive that is already plugged in runs as if the drive just came.
                for drive_id in list(self.present):
                    self._connect_jobs(drive_id, [j for j in self.config.jobs if j.name not in old_names
                                                  and drive_id in j.destination.drive_ids])
            except ConfigError as err:
                # Keep using the last good settings; the user is probably still editing.
                self._report_problem(f"{err.message} Plugback keeps using the previous settings.")
        self._stamp = stamp
        self._rewatch()
        self.changed()

    def check_config(self) -> bool:
        """Reload if someone else (the CLI, an editor) changed config.json; True if reloaded."""
        stamp = file_stamp(self.paths.config_file)
        if stamp == self._stamp:
            return False
        log.info("config.json changed on disk; reloading")
        self._load_config()
        return True

    def edit_config(self, change: Callable[[Config], None], *, start_new: bool = True) -> Config:
        """Change the settings (under the file lock); a broken file on disk is kept aside and reported.

        A new job whose drive is connected starts as if the drive had just come, unless
        ``start_new`` is false (the caller starts it itself, e.g. the first-run wizard).
        """
        with self.lock:
            old_names = {j.name for j in self.config.jobs}
            config, moved = update_config(self.paths.config_file, change, fallback=self.config)
            if moved:
                self._report_problem(f"The settings file on disk was damaged and was kept as {moved.name}.")
            self.config = config
            self._stamp = file_stamp(self.paths.config_file)
        self._rewatch()
        self.changed()
        for drive_id in list(self.present) if start_new else []:
            self._connect_jobs(drive_id, [j for j in config.jobs if j.name not in old_names
                                          and drive_id in j.destination.drive_ids])
        return config

    def apply_start_at_login(self) -> None:
        """Make the login entry match ``prefs.start_at_login`` (under ``paths.autostart_dir`` when set)."""
        from core.platform import autostarter
        from core.platform.autostart import agent_command

        autostarter(agent_command(), folder=self.paths.autostart_dir).apply(self.config.prefs.start_at_login)

    def _report_problem(self, message: str) -> None:
        log.warning(message)
        self.problem = message
        self.notifier.notify("Plugback needs attention", message, "failed")

    # -- the change journal and live mode (core/agent/watching.py) ------------------------------

    def start_watching(self) -> None:
        """Watch every job's sources for changes (journals, live mode) until :meth:`shutdown`."""
        from core.agent import watching

        watching.start(self)

    def _rewatch(self) -> None:
        self.changes.reconcile(self.config, list(self.present.values()))

    # -- change notification ---------------------------------------------------------------

    def changed(self) -> None:
        """Something the icon shows changed: tell the listeners (the icon redraws)."""
        for fn in list(self.listeners):
            try:
                fn()
            except Exception:   # noqa: BLE001 - a display problem must not stop a backup
                log.exception("state listener failed")

    # -- running jobs ----------------------------------------------------------------------

    def _runner(self, job: Job, drive_id: str | None = None) -> JobRunner:
        """The runner of the job's destination: ``drive_id``, else the first of its drives connected."""
        from core.agent.rotation import present_drive

        drive_id = drive_id or present_drive(job, self.present)
        return self.runner_at(f"drive:{drive_id}" if drive_id else job.destination.key())

    def runner_at(self, key: str) -> JobRunner:
        """The runner of a destination (``Destination.key()``), started when first needed."""
        self.rolling.interrupt(key)   # a run or a restore is coming: a rolling check there stops at once
        with self.lock:
            runner = self.runners.get(key)
            if runner is None:
                runner = JobRunner(key, lambda task, cancel, progress: self._execute(task, cancel, progress, key),
                                   self.changed)
                self.runners[key] = runner
            return runner

    def job(self, name: str) -> Job:
        """The job called ``name`` (case-insensitive); NotFound otherwise."""
        job = self.config.job(name)
        if job is None:
            raise NotFound(what="job", name=name, hint="The jobs are listed in the settings window.")
        return job

    def run_job(self, name: str) -> bool:
        """Queue a job by hand (pause and battery do not apply). True if it was queued now."""
        job = self.job(name)
        if not self._destination_present(job):
            assert job.destination.drive_id is not None   # not a path (always present): a drive
            raise DriveNotConnected(label=self.config.drive_label(job.destination.drive_id))
        self._drop_pending(job)   # this run replaces the automatic one waiting to start: one backup, not two
        return self._runner(job).enqueue(job.name)

    def _drop_pending(self, job: Job) -> None:
        with self.lock:
            for drive_id in job.destination.drive_ids:
                pending = self.pending.get(drive_id)
                if pending is None or job.name not in pending.jobs:
                    continue
                pending.jobs.remove(job.name)
                if not pending.jobs:
                    self.pending.pop(pending.drive_id)
                    if pending.timer:
                        pending.timer.cancel()
        self.changed()

    def run_all(self) -> list[str]:
        """Queue every job whose destination is reachable now."""
        queued = []
        for job in self.config.jobs:
            if self._destination_present(job) and self._runner(job).enqueue(job.name):
                queued.append(job.name)
        return queued

    def stop_job(self, name: str | None = None) -> bool:
        """Stop a running or queued job (all when None); also cancels pending connect backups."""
        stopped = False
        if name is None:
            stopped = self.cancel_pending() or stopped
        for runner in list(self.runners.values()):
            stopped = runner.stop(name) or stopped
        return stopped

    def running(self) -> list[dict]:
        """What runs now: ``[{job, kind, percent, phase, progress}]``, one per busy destination."""
        out = []
        for runner in list(self.runners.values()):
            name, kind, p = runner.current, runner.kind, runner.progress
            if name and kind != RESTORE:   # a restore shows in status.restore
                pct = int(100 * p.bytes_done / p.bytes_total) if p and p.bytes_total else None
                out.append({"job": name, "kind": kind, "percent": pct, "phase": p.phase if p else "starting",
                            "progress": p.to_dict() if p else None})
        return out

    def queued(self) -> list[str]:
        """Names of the jobs waiting in the runners' queues."""
        return [n for r in list(self.runners.values()) for n in list(r.queue)]

    def _destination_present(self, job: Job) -> bool:
        if job.destination.path or job.destination.remote:   # a remote that is offline waits (remote_jobs)
            return True
        return any(d in self.present for d in job.destination.drive_ids)

    def _execute(self, task: Task, cancel: RunCancel, progress, key: str = "") -> None:
        """Run one job (on its runner's thread) and tell the user how it went."""
        from core.agent.jobs import Target, engine_cache, resolve_target, run_job

        name = task.name
        job = self.config.job(name)
        if job is None:
            return   # removed while queued
        if job.destination.remote:   # a cloud or network location (issue #13)
            from core.agent import remote_jobs

            return remote_jobs.execute(self, job, task.trigger, cancel, progress)
        if key.startswith("drive:"):
            job = job.on_drive(key[len("drive:"):])   # a drive in rotation: its own set
        drive_id = job.destination.drive_id
        try:
            if drive_id:
                mount = self.present.get(drive_id)
                if mount is None or not read_drive_file(Path(mount)):
                    raise DriveNotConnected(label=self.config.drive_label(drive_id))
                target = resolve_target(job, self.config, mounts=[mount])
            else:
                assert job.destination.path is not None   # a path, or a drive (Destination.from_dict)
                target = Target(set_path=Path(job.destination.path))
        except DriveNotConnected as err:
            self.notifier.notify(f"{name}: not backed up", err.message, "failed")
            return
        if not wait_for_restore(target.set_path, cancel, progress):   # restore first (issue #14)
            return
        self.rolling.wait_for_repair(job.destination.key())   # a rolling check's repair writes to the set
        from core.agent import watching

        scan = watching.plan(self, job, drive_id)
        outcome = run_job(job, self.config, self.history, target=target, progress=progress, cancel=cancel,
                          clock=self.clock, bind=lambda n, set_id: self.bind_set(n, set_id, drive_id),
                          trigger=task.trigger, unlock=self._unlocker(), scan=scan,
                          cache=engine_cache(self.paths))
        watching.finished(self, scan, outcome)
        if cancel.drive_gone and outcome.status == RunStatus.CANCELLED:
            # The engine stopped on our cancel because the watcher saw the mount vanish.
            self.history.append_log(outcome.run_id, "the drive was removed during the run")
            self.history.finish(outcome.run_id, RunEnd(status=RunStatus.DRIVE_REMOVED, ended=self.clock.now(),
                                                       error=DriveGone().message, error_code=DriveGone.code))
            outcome.status, outcome.error = RunStatus.DRIVE_REMOVED, DriveGone()
        if outcome.made_room:   # the drive was full: say which old backups went (issue #14)
            self.notifier.notify(f"{name}: made room on the drive", outcome.made_room, "info")
        self._notify_outcome(job, outcome)
        if outcome.status in SUCCESS:
            self.rolling.after_backup(job)   # a slice of the rolling check, once nothing else waits

    def _unlocker(self):
        """Sets unlocked in the window this session open without asking again (core.agent.unlock)."""
        from core.agent.unlock import cache_of, cached_unlocker

        return cached_unlocker(cache_of(self))

    def bind_set(self, name: str, set_id: str, drive_id: str | None = None) -> None:
        """Record that job ``name`` owns the set ``set_id`` (on ``drive_id``, core.agent.adopt), in config.json."""
        from core.agent.rotation import bind_on

        self.edit_config(lambda cfg: bind_on(cfg, name, set_id, drive_id))

    def _notify_outcome(self, job: Job, outcome) -> None:
        if outcome.status in SUCCESS:
            text = f"{plural(outcome.files_copied, 'file')} copied, {outcome.files_scanned:,} checked"
            if outcome.warnings:
                text += f"; {outcome.warning_summary or plural(outcome.warnings, 'warning')}: see the history"
            if job.destination.remote:
                text += f" to {job.destination.remote}"
            self.notifier.notify(f"{job.name} backed up", text + ".", "finished")
            drive_id = job.destination.drive_id
            # Only when nothing else is queued or waiting out the connect delay for this drive.
            if outcome.flushed and drive_id and not self._drive_busy(drive_id, excluding=job.name) \
                    and drive_id not in self.pending:
                label = self.config.drive_label(drive_id)
                self.notifier.notify(f"'{label}' is safe to unplug",
                                     "Everything is saved to the drive. You can unplug it now.", "safe_to_unplug")
        elif outcome.status == RunStatus.CANCELLED:
            self.notifier.notify(f"{job.name}: backup stopped", outcome.error.message, "info")
        else:
            self.notifier.notify(f"{job.name}: backup failed", outcome.error.message, "failed")

    def _drive_busy(self, drive_id: str, excluding: str | None = None) -> bool:
        """Whether a run on this drive runs or waits in its queue (other than ``excluding``)."""
        runner = self.runners.get(f"drive:{drive_id}")
        if self.restore_drive == drive_id:   # a restore from it runs or waits its turn
            return True
        if runner is None:
            return False
        return any(n != excluding for n in list(runner.queue)) or (runner.current not in (None, excluding))

    # -- automatic triggers ----------------------------------------------------------------

    def is_paused(self) -> bool:
        """Whether automatic backups are paused now (a pause whose time is up ends here)."""
        if self.paused and self.paused_until and self.clock.now() >= self.paused_until:
            self.resume()
        return self.paused

    def pause(self, until: datetime | None) -> None:
        """Stop automatic backups until ``until`` (None: until resumed). Manual runs still work."""
        self.paused, self.paused_until = True, until
        self.cancel_pending()
        self.changed()

    def resume(self) -> None:
        """End a pause: automatic backups run again."""
        self.paused, self.paused_until = False, None
        self.changed()

    def battery_ok(self) -> bool:
        """Automatic runs wait while on battery below the threshold (psutil.sensors_battery)."""
        try:
            battery = self.options.battery()
        except Exception:   # noqa: BLE001 - some systems raise instead of returning None
            return True
        if battery is None or battery.power_plugged:
            return True
        return battery.percent >= self.config.prefs.battery_threshold

    def _last_success(self, job: Job, drive_id: str | None = None) -> datetime | None:
        """The job's last success; on ``drive_id`` for a job on several drives (each drive is kept fresh)."""
        if drive_id and len(job.destination.drive_ids) > 1:
            run = self.history.last_by_drive(job.name).get(drive_id)
        else:
            run = self.history.last_success(job.name)
        return run.started if run else None

    def drive_connected(self, drive_id: str, mount: str) -> list[str]:
        """An enrolled drive appeared at ``mount``: schedule its due jobs after the connect delay."""
        with self.lock:
            self.present[drive_id] = mount
        self._rewatch()
        log.info("drive %s connected at %s", drive_id, mount)
        self.changed()
        return self._connect_jobs(drive_id, [j for j in self.config.jobs if drive_id in j.destination.drive_ids])

    def _connect_jobs(self, drive_id: str, jobs: list[Job]) -> list[str]:
        """Queue (after the short, cancellable delay) those of ``jobs`` that a connect makes due."""
        if not jobs or self.is_paused() or not self.battery_ok() or self.restore_drive == drive_id:
            return []
        now = self.clock.now()
        names = [j.name for j in jobs if j.triggers.live or connect_due(j, self._last_success(j, drive_id), now.astimezone())]
        if not names:
            return []
        if self.page_hold.active:   # the plug-in may be meant for restoring: wait for the page to close
            return hold_connect(self, drive_id, names)
        delay = self.config.prefs.connect_delay_seconds
        with self.lock:
            old = self.pending.pop(drive_id, None)
            if old and old.timer:
                old.timer.cancel()
            names = list(dict.fromkeys((old.jobs if old else []) + names))
            pending = PendingConnect(drive_id, names, now + timedelta(seconds=delay))
            self.pending[drive_id] = pending
        if delay <= 0:
            self.start_pending(drive_id)
        else:
            pending.timer = threading.Timer(delay, self.start_pending, args=(drive_id,))
            pending.timer.daemon = True
            pending.timer.start()
            if old is None:
                announce_connect(self, drive_id, names, delay)   # "Restore instead" (issue #14)
        self.changed()
        return names

    def start_pending(self, drive_id: str) -> None:
        """Start a drive's automatic backups waiting out the delay or a Restore page ("Back up now")."""
        with self.lock:
            pending = self.pending.pop(drive_id, None)
        if pending is None or drive_id not in self.present:
            return
        for name in pending.jobs:
            job = self.config.job(name)
            if job is not None:
                # Without on_connect the job runs now because its schedule came due while the drive was away.
                trigger = Trigger.CONNECT if job.triggers.on_connect or job.triggers.live else Trigger.SCHEDULE
                self._runner(job, drive_id).enqueue(job.name, trigger=trigger)
        self.changed()

    def cancel_pending(self, drive_id: str | None = None) -> bool:
        """Cancel the automatic backups waiting to start (for one drive or all)."""
        with self.lock:
            ids = [drive_id] if drive_id else list(self.pending)
            cancelled = [self.pending.pop(i) for i in ids if i in self.pending]
        for p in cancelled:
            if p.timer:
                p.timer.cancel()
        if cancelled:
            self.changed()
        return bool(cancelled)

    def drive_removed(self, drive_id: str) -> None:
        """An enrolled drive vanished: a run on it ends 'drive removed'."""
        with self.lock:
            self.present.pop(drive_id, None)
        self._rewatch()
        self.cancel_pending(drive_id)
        runner = self.runners.get(f"drive:{drive_id}")
        if runner is not None:
            runner.drive_removed()
        log.info("drive %s removed", drive_id)
        self.changed()

    # -- drives that are not Plugback's yet, and reminders (issue #14: core.agent.offers, core.agent.rotation) --

    def volume_added(self, mount: str, plugged: bool = True) -> None:
        """The watcher saw a new volume that is not a connected Plugback drive: maybe offer it."""
        self.offers.volume_added(mount, plugged)

    def volume_removed(self, mount: str) -> None:
        """The watcher saw the volume at ``mount`` go."""
        self.offers.volume_removed(mount)

    def check_reminders(self) -> list:
        """Send the day's "not backed up for N days" notification if due (the scheduler's tick)."""
        from core.agent import rotation

        return rotation.check(self)

    def check_schedule(self) -> list[str]:
        """Queue every job whose schedule is due and whose destination is here (the Scheduler's tick)."""
        if self.is_paused() or not self.battery_ok():
            return []
        now = self.clock.now().astimezone()
        queued = []
        for job in self.config.jobs:
            if self._waiting(job.name) is not None:
                continue   # a remote job waiting for the network: tried again when its wait is over
            if due(job, self._last_success(job), now, drive_present=self._destination_present(job)):
                if self._runner(job).enqueue(job.name, trigger=Trigger.SCHEDULE):
                    queued.append(job.name)
        from core.agent.remote_jobs import retry_due

        return queued + [n for n in retry_due(self) if n not in queued]   # remote jobs waiting for the network

    def check_integrity(self) -> list[str]:
        """The monthly check (DESIGN §4 "scheduled scrub"): finish the rolling check's pass of every set
        on a present, idle destination whose pass is overdue (core/agent/rolling.py)."""
        return self.rolling.catch_up()

    # -- other actions ---------------------------------------------------------------------

    def eject(self, drive_id: str) -> None:
        """Eject an idle drive (refused while a backup or restore uses it)."""
        from core.errors import AgentBusy

        mount = self.present.get(drive_id)
        if mount is None:
            raise DriveNotConnected(label=self.config.drive_label(drive_id))
        if self._drive_busy(drive_id) or self.restore_drive == drive_id:
            raise AgentBusy(reason=f"'{self.config.drive_label(drive_id)}' is in use by a backup or restore")
        self.cancel_pending(drive_id)
        self.rolling.stop(drive_id)      # a rolling check only reads, but open files block an unmount
        self.offers.wait(5)              # so does the look at a just-plugged volume (is it one to offer?)
        self.ejector.eject(mount)
        self.drive_removed(drive_id)
        self.notifier.notify(f"'{self.config.drive_label(drive_id)}' is safe to unplug",
                             "The drive was ejected.", "safe_to_unplug")

    def open_settings(self, page: str | None = None) -> None:
        """Start the settings window process (it focuses an open window itself), at ``page``."""
        cmd = self.options.settings_command or settings_command()
        if page:
            cmd = [*cmd, "--page", page]
        log.info("opening settings: %s", " ".join(cmd))
        self.settings_proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        from core.agent.restore_first import watch_window

        watch_window(self, self.settings_proc)   # a window that dies releases the Restore page's hold

    def status(self) -> dict:
        """The ``status`` reply (docs/ipc.md; built by core.agent.status)."""
        from core.agent.status import agent_status

        return agent_status(self)

    def tray_state(self) -> TrayState:
        """A fresh, plain snapshot of what the icon and its menu show (see tray/menu.py)."""
        now = self.clock.now()
        from core.agent.status import job_record

        jobs = []
        for j in self.config.jobs:
            rec = job_record(self.history, j.name)
            ok, attempt = rec.last_success, rec.last_attempt
            jobs.append({"name": j.name, "present": self._destination_present(j),
                         "last_status": attempt.status if attempt else None,
                         "last_time": attempt.last_time if attempt else None,
                         "last_ok": ok.last_time if ok else None, "attention": rec.attention,
                         "live": j.triggers.live, "damage": rec.damage.error if rec.damage else None,
                         "waiting": self._waiting(j.name)})
        drives = [DriveState(d["drive_id"], d.get("label") or d["drive_id"][:8], self.present.get(d["drive_id"]))
                  for d in self.config.drives]
        busy = {d.drive_id for d in drives if self._drive_busy(d.drive_id) or self.restore_drive == d.drive_id}
        from core.agent.rotation import reminders

        return TrayState(now=now, jobs=jobs, drives=drives, running=self.running(),
                         pending=list(self.pending.values()), paused=self.is_paused(),
                         paused_until=self.paused_until, problem=self.problem, backend=self.backend,
                         busy_drives=busy, offers=self.offers.current(), reminders=reminders(self))

    def _waiting(self, name: str) -> dict | None:
        """Why the job waits (a remote job whose remote cannot be reached; core.agent.remote_jobs), or None."""
        from core.agent.remote_jobs import waiting_of

        return waiting_of(self).status(name)

    def shutdown(self, cancel: bool = True, timeout: float = 30) -> None:
        """Stop everything: cancel (or finish) running jobs and wait for them."""
        self.stopped.set()
        self.page_hold.close()
        self.cancel_pending()
        self.rolling.stop()
        if self.settings_proc is not None and self.settings_proc.poll() is None:
            # The window is useless without its agent: close it with us.
            self.settings_proc.terminate()
        for runner in list(self.runners.values()):
            runner.shutdown(cancel=cancel, timeout=timeout)
        from core.agent import watching

        watching.stop(self)   # after the runs: their journals are then written as closed cleanly


def settings_command() -> list[str]:
    """How to start the settings window process (``ui``, shipped in the same distribution).

    Frozen, the one executable's launcher (installers/entrypoints/plugback_tray.py)
    runs the window when given ``--settings``.
    """
    if getattr(sys, "frozen", False):
        return [sys.executable, "--settings"]
    return [sys.executable, "-m", "ui"]
