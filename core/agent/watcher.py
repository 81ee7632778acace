"""The agent's two background loops: the drive watcher and the scheduler.

DriveWatcher lists the mounted volumes, diffs the mount points and tells the
agent which enrolled drive (by drive_id, whatever its mount point) came or
went. It lists when this OS's drive-event source (``core.platform.drive_events``:
the mount table, WM_DEVICECHANGE, NSWorkspace) wakes it, and as a safety net
every ``rescan_seconds``; where there are no events it polls every ``interval``
(2 s). The listing runs in a worker with a timeout, so a hung mount never stalls
the watcher. Every ``interval`` it also notices edits of config.json by others
(mtime poll).

The Scheduler runs ``schedule.run_pending`` on its own ``schedule.Scheduler``;
the decision whether a job is due is the pure ``core.agent.schedule.due``.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import schedule

from core.agent.drives import LIST_TIMEOUT, Timed, local_mount_points, read_drive_file
from core.errors import VolumesNotListed
from core.platform import drive_event_source
from core.platform.drive_events import DriveEvents, start_events

log = logging.getLogger("plugback.watcher")
FRESH_SECONDS = 10.0


def must_list(*, woken: bool, retrying: bool, enrolled_changed: bool, since_listed: float,
              rescan: float) -> bool:
    """Whether the watcher lists the volumes on this turn: an event woke it, a new mount is
    being retried, the enrolled drives changed, or ``rescan`` seconds passed since the last list."""
    return woken or retrying or enrolled_changed or since_listed >= rescan


class DriveWatcher(threading.Thread):
    """Diffs mount points when drive events wake it (or every ``interval`` seconds without
    events) and reports enrolled drives to the agent."""

    def __init__(self, agent, interval: float = 2.0, mounts=local_mount_points, *,
                 events: DriveEvents | None = None, list_timeout: float = LIST_TIMEOUT):
        super().__init__(name="drive-watcher", daemon=True)
        self.agent = agent
        self.interval = interval
        self.mounts = mounts
        #: Where wake-ups come from; replaced by polling in run() if it cannot start.
        self.events = events if events is not None else drive_event_source()
        self.known: dict[str, str | None] = {}   # mount point -> drive_id (None: not a Plugback drive)
        self._enrolled: set[str] = set()
        self._fresh: dict[str, float] = {}       # new mount -> until when to retry reading drive.json
        self._listing = Timed(mounts, list_timeout)
        self._listed_at = float("-inf")
        self._woken = threading.Event()
        self._stopping = threading.Event()
        self._looked = False                     # after the first look, a new mount was plugged in

    def stop(self) -> None:
        self._stopping.set()
        self._woken.set()

    def wake(self) -> None:
        """Volumes may have changed: look now (called by the drive-event source, any thread)."""
        self._woken.set()

    def _check_config(self) -> None:
        try:
            self.agent.check_config()
        except Exception:   # noqa: BLE001 - keep watching drives whatever the settings file does
            log.exception("checking config.json failed")

    def _list(self) -> frozenset[str] | None:
        """The mount points now, or None when the listing hangs (the last diff then stands)."""
        self._listed_at = time.monotonic()
        try:
            return self._listing()
        except VolumesNotListed as err:
            log.warning("%s", err.message)
            return None

    def poll(self) -> None:
        """One look at the mounts (also called directly by tests)."""
        self._check_config()
        current = self._list()
        if current is None:
            return
        enrolled = {d["drive_id"] for d in self.agent.config.drives}
        for mount in sorted(set(self.known) - current):
            drive_id = self.known.pop(mount)
            if drive_id and drive_id in self.agent.present:
                self.agent.drive_removed(drive_id)
            self.agent.volume_removed(mount)
        # A drive marked present elsewhere ('drive init' marks it at once) may have come and
        # gone between two looks: whatever is present must still be mounted.
        for drive_id, mount in list(self.agent.present.items()):
            if mount not in current:
                self.agent.drive_removed(drive_id)
        now = time.monotonic()
        for mount in sorted(current - set(self.known)):
            self.known[mount] = None
            self._fresh[mount] = now + FRESH_SECONDS
            self.agent.volume_added(mount, plugged=self._looked)   # the agent offers it if it is no drive of ours
        self._looked = True
        for mount, until in list(self._fresh.items()):
            # A FUSE drive can be listed before it answers: look again for a few seconds.
            if mount not in current or now > until:
                del self._fresh[mount]
                continue
            info = read_drive_file(Path(mount))
            if info:
                del self._fresh[mount]
                self.known[mount] = info.drive_id
                if info.drive_id in enrolled and info.drive_id not in self.agent.present:
                    self.agent.drive_connected(info.drive_id, mount)
        if enrolled != self._enrolled:
            # Enrolled or forgotten while mounted ('drive init'): look at the mounts again.
            self._enrolled = enrolled
            for drive_id in [d for d in list(self.agent.present) if d not in enrolled]:
                self.agent.drive_removed(drive_id)
            for mount in sorted(current):
                info = read_drive_file(Path(mount))
                self.known[mount] = info.drive_id if info else None
                if info:
                    self._fresh.pop(mount, None)
                if info and info.drive_id in enrolled and info.drive_id not in self.agent.present:
                    self.agent.drive_connected(info.drive_id, mount)

    def run(self) -> None:
        self.events = start_events(self.events, self.wake)
        self.agent.drive_events = self.events.name
        log.info("drive events: %s", self.events.name)
        try:
            while not self._stopping.is_set():
                try:
                    self._turn()
                except Exception:   # noqa: BLE001 - the watcher must survive anything one poll meets
                    log.exception("drive poll failed")
                self._woken.wait(0.5 if self._fresh else self.interval)
        finally:
            self.events.stop()

    def _turn(self) -> None:
        """One turn of the loop: the settings check, and a look at the volumes when it is due."""
        woken = self._woken.is_set()
        self._woken.clear()
        self._check_config()
        enrolled = {d["drive_id"] for d in self.agent.config.drives}
        rescan = self.events.rescan_seconds if self.events.rescan_seconds is not None else self.interval
        if must_list(woken=woken, retrying=bool(self._fresh), enrolled_changed=enrolled != self._enrolled,
                     since_listed=time.monotonic() - self._listed_at, rescan=rescan):
            self.poll()


class Scheduler(threading.Thread):
    """Runs the periodic schedule check (and the settings-file check) with the ``schedule`` library."""

    def __init__(self, agent, every_seconds: int = 60):
        super().__init__(name="scheduler", daemon=True)
        self.agent = agent
        self.jobs = schedule.Scheduler()
        self.jobs.every(every_seconds).seconds.do(self._check)
        self._stopping = threading.Event()

    def _check(self) -> None:
        try:
            queued = self.agent.check_schedule()
            if queued:
                log.info("scheduled: %s", ", ".join(queued))
            checks = self.agent.check_integrity()
            if checks:
                log.info("monthly backup check: %s", ", ".join(checks))
            self.agent.check_reminders()   # "not backed up for N days", one notification a day
        except Exception:   # noqa: BLE001
            log.exception("schedule check failed")

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        self._check()   # catch-up on start: missed runs run once
        while not self._stopping.is_set():
            self.jobs.run_pending()
            idle = self.jobs.idle_seconds
            self._stopping.wait(max(1.0, min(idle if idle is not None else 60.0, 60.0)))
