"""The agent's two background loops: the drive watcher and the scheduler.

DriveWatcher polls ``psutil.disk_partitions(all=True)`` (well under a
millisecond) about every 2 seconds, diffs the mount points and tells the agent
which enrolled drive (by drive_id, whatever its mount point) came or went. It
also notices edits of config.json by others (mtime poll).

The Scheduler runs ``schedule.run_pending`` on its own ``schedule.Scheduler``;
the decision whether a job is due is the pure ``core.agent.schedule.due``.
"""

from __future__ import annotations

import logging
import select
import sys
import threading
import time
from pathlib import Path

import schedule

from core.agent.drives import mount_points, read_drive_file

log = logging.getLogger("plugback.watcher")
FRESH_SECONDS = 10.0


class DriveWatcher(threading.Thread):
    """Diffs mount points every ``interval`` seconds and reports enrolled drives to the agent."""

    def __init__(self, agent, interval: float = 2.0, mounts=mount_points):
        super().__init__(name="drive-watcher", daemon=True)
        self.agent = agent
        self.interval = interval
        self.mounts = mounts
        self.known: dict[str, str | None] = {}   # mount point -> drive_id (None: not a Plugback drive)
        self._enrolled: set[str] = set()
        self._fresh: dict[str, float] = {}       # new mount -> until when to retry reading drive.json
        self._stop = threading.Event()
        self._looked = False                     # after the first look, a new mount was plugged in

    def stop(self) -> None:
        self._stop.set()

    def poll(self) -> None:
        """One look at the mounts (also called directly by tests)."""
        try:
            self.agent.check_config()
        except Exception:   # noqa: BLE001 - keep watching drives whatever the settings file does
            log.exception("checking config.json failed")
        current = self.mounts()
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
        wait = self._mount_table_waiter() or self._stop.wait
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:   # noqa: BLE001 - the watcher must survive anything one poll meets
                log.exception("drive poll failed")
            wait(0.5 if self._fresh else self.interval)

    def _mount_table_waiter(self):
        """Linux: a wait that also wakes the moment the mount table changes, else None.

        The kernel flags /proc/self/mounts readable-with-priority on every mount
        and unmount, so a drive is seen at once instead of at the next 2 s tick;
        the tick stays for the settings-file check and other systems.
        """
        if not sys.platform.startswith("linux") or not hasattr(select, "poll"):
            return None
        try:
            table = open("/proc/self/mounts", "rb")
        except OSError:
            return None
        poller = select.poll()
        poller.register(table, select.POLLPRI | select.POLLERR)
        table.read()

        def wait(timeout: float) -> None:
            if poller.poll(timeout * 1000):
                table.seek(0)
                table.read()          # re-arms the event
                time.sleep(0.1)       # FUSE mounts appear before they answer: let it settle

        return wait


class Scheduler(threading.Thread):
    """Runs the periodic schedule check (and the settings-file check) with the ``schedule`` library."""

    def __init__(self, agent, every_seconds: int = 60):
        super().__init__(name="scheduler", daemon=True)
        self.agent = agent
        self.jobs = schedule.Scheduler()
        self.jobs.every(every_seconds).seconds.do(self._check)
        self._stop = threading.Event()

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
        self._stop.set()

    def run(self) -> None:
        self._check()   # catch-up on start: missed runs run once
        while not self._stop.is_set():
            self.jobs.run_pending()
            idle = self.jobs.idle_seconds
            self._stop.wait(max(1.0, min(idle if idle is not None else 60.0, 60.0)))
