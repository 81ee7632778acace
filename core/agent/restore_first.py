"""Restore first (issue #14): automatic backups give way to restores.

* While the window's Restore page is open, a drive plugged in does not start
  its automatic backup: the plug-in may be meant for restoring. The backup
  waits as a *held* pending connect (``PendingConnect.held``) until the page
  closes, or until the user picks "Back up now" or "Restore instead" in the
  tray menu. The page renews its hold every few seconds (IPC
  ``restore_page``); a window that crashed stops renewing, and the hold ends
  by itself after :data:`HOLD_SECONDS`, so backups are never held forever.
* Before a backup or check starts on a set, it waits while a restore holds
  the set's lock (``plugback restore`` in a terminal, or a restore of the same
  set queued on another runner); restores queued in the agent are ordered by
  the destination's runner (core/agent/runner.py).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from core.engine.progress import CancelToken, Progress
from core.errors import PlugbackError

log = logging.getLogger("plugback.restore_first")

#: How long a Restore page hold lasts without being renewed (the page renews it every 20 s).
HOLD_SECONDS = 60.0
#: How often a backup waiting for a restore looks at the set's lock again.
WAIT_POLL = 0.25


class PageHold:
    """Whether the Restore page is open; ends by itself when not renewed in time.

    ``on_release`` runs (on a timer thread or the caller's) once the hold ends.
    """

    def __init__(self, on_release: Callable[[], None], monotonic: Callable[[], float] = time.monotonic):
        self._on_release = on_release
        self._monotonic = monotonic
        self._mutex = threading.Lock()
        self._until: float | None = None
        self._timer: threading.Timer | None = None

    @property
    def active(self) -> bool:
        """True while the page is open (renewed within its time)."""
        with self._mutex:
            return self._until is not None and self._monotonic() < self._until

    def set(self, open_: bool, seconds: float = HOLD_SECONDS) -> bool:
        """The page is open (renew the hold for ``seconds``) or closed (end it). Returns ``active``."""
        with self._mutex:
            was = self._until is not None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if open_:
                self._until = self._monotonic() + seconds
                self._timer = threading.Timer(seconds, self._expire)
                self._timer.daemon = True
                self._timer.start()
            else:
                self._until = None
        if was and not open_:
            self._on_release()
        return open_

    def _expire(self) -> None:
        with self._mutex:
            if self._until is None or self._monotonic() < self._until:
                return   # renewed (or closed) meanwhile
            self._until, self._timer = None, None
        log.info("the Restore page stopped renewing its hold: automatic backups go ahead")
        self._on_release()

    def close(self) -> None:
        """Stop the timer without releasing anything (the agent is quitting)."""
        with self._mutex:
            if self._timer is not None:
                self._timer.cancel()
            self._until, self._timer = None, None


def hold_connect(agent, drive_id: str, names: list[str]) -> list[str]:
    """Keep the automatic backups of a drive plugged in while the Restore page is open, and say so."""
    from core.agent.agent_state import PendingConnect

    with agent.lock:
        old = agent.pending.pop(drive_id, None)
        if old and old.timer:
            old.timer.cancel()
        names = list(dict.fromkeys((old.jobs if old else []) + names))
        agent.pending[drive_id] = PendingConnect(drive_id, names, agent.clock.now(), held=True)
    if not (old and old.held):
        from core.platform.notify import Action

        label = agent.config.drive_label(drive_id)
        agent.notifier.notify(f"Backup to '{label}' waits: a restore is open",
                              "The Restore page is open, so the automatic backup waits until you close it. "
                              f"In the Plugback menu: 'Back up {label} now', or 'Restore from {label} instead' "
                              "to skip this backup.", "info",
                              [Action("Open Plugback", lambda: agent.open_settings()),   # the click: the window
                               Action("Back up now", lambda: agent.start_pending(drive_id)),
                               Action("Restore instead", lambda: restore_instead(agent, drive_id))])
    agent.changed()
    return names


def release_held(agent) -> None:
    """The Restore page closed: the held backups start (after the usual, cancellable connect delay)."""
    from core.agent.agent_state import PendingConnect

    with agent.lock:
        held = [p for p in agent.pending.values() if p.held]
        for p in held:
            agent.pending.pop(p.drive_id, None)
    for p in held:
        if p.drive_id not in agent.present:
            continue
        if agent.restore_drive == p.drive_id:
            # A restore from the drive was started meanwhile: the backups queue behind it (restore first).
            with agent.lock:
                agent.pending[p.drive_id] = PendingConnect(p.drive_id, p.jobs, agent.clock.now())
            agent.start_pending(p.drive_id)
        else:
            agent._connect_jobs(p.drive_id, [j for j in agent.config.jobs if j.name in p.jobs])
    if held:
        agent.changed()


def announce_connect(agent, drive_id: str, names: list[str], delay: float) -> None:
    """The plug-in notification: the drive's automatic backup starts in ``delay`` s, or "Restore instead".

    Sent once per plug-in, only with a connect delay (``prefs.connect_delay_seconds`` 0: the user
    wants no pause at plug-in). Its first button (a click on the notification) opens the settings.
    """
    from core.platform.notify import Action

    label = agent.config.drive_label(drive_id)
    what = names[0] if len(names) == 1 else f"{len(names)} jobs"
    agent.notifier.notify(f"Backing up to '{label}'",
                          f"The backup of {what} starts in {delay:g} s. Plugged it in to restore files? "
                          "Choose 'Restore instead'.", "connect",
                          [Action("Open Plugback", lambda: agent.open_settings()),
                           Action("Restore instead", lambda: restore_instead(agent, drive_id, names))])


def restore_instead(agent, drive_id: str, names: list[str] | None = None) -> None:
    """"Restore instead" (tray menu, plug-in notification): drop the drive's waiting backup and show the
    Restore page on that drive's backups. ``names``: the plug-in's automatic backups, also stopped if
    they started meanwhile (the notification may be clicked after the short delay); the next plug-in
    runs them again."""
    agent.cancel_pending(drive_id)
    runner = agent.runners.get(f"drive:{drive_id}")
    if runner is not None:
        for name in names or []:
            runner.stop(name)
    agent.open_settings(f"restore/{drive_id}")


def watch_window(agent, proc) -> threading.Thread:
    """Wait (on a thread) for a settings process the agent started; when it ends in failure — it
    crashed or was killed, so its Restore page could not say it closed — the page's hold ends now
    instead of 60 s later. A normal close releases the hold from the window itself (ui/window.py),
    and a process that only brought the open window to the front exits 0 with the page still open."""
    def wait() -> None:
        code = proc.wait()
        if code != 0 and agent.page_hold.active:
            log.info("the settings window ended (exit status %s): the Restore page no longer holds backups", code)
            agent.page_hold.set(False)

    thread = threading.Thread(target=wait, name="settings-watch", daemon=True)
    thread.start()
    return thread


def wait_for_restore(set_path: Path, cancel: CancelToken, progress: Callable[[Progress], None]) -> bool:
    """Before a backup or check of the set at ``set_path``: wait while a restore holds its lock.

    The wait shows as phase ``waiting``. False when the run was stopped (or its drive
    pulled) meanwhile: the caller then starts nothing.
    """
    def tell(holder: dict) -> None:
        log.info("waiting for the restore from %s to finish (%s)", set_path, holder)
        progress(Progress(phase="waiting", current=f"a restore from this backup (process {holder.get('pid')} "
                                                   f"on {holder.get('host')})"))

    return wait_while_held(set_path, cancel, tell, purpose="restore")


def wait_while_held(set_path: Path, cancel: CancelToken, on_wait: Callable[[dict], None],
                    purpose: str | None = None) -> bool:
    """Wait while a live process holds the set's lock (only for ``purpose``, when given), calling
    ``on_wait(holder)`` whenever the holder changes. True once free; False when ``cancel`` was set."""
    from core.engine.layout import SetLayout
    from core.engine.lock import SetLock
    from core.engine.progress import Clock

    lock = SetLock(SetLayout(set_path).lock, Clock(), purpose="check")
    seen = None
    while True:
        holder = lock.holder() if set_path.is_dir() else None
        if holder is None or (purpose is not None and holder.get("purpose") != purpose):
            return True
        who = (holder.get("pid"), holder.get("host"), holder.get("token"), holder.get("purpose"))
        if who != seen:
            on_wait(holder)
            seen = who
        try:
            cancel.check()
        except PlugbackError:
            return False
        time.sleep(WAIT_POLL)


def waiting_text(holder: dict, job: str | None) -> str:
    """'Waiting for the backup of Docs to finish (process 12 on laptop)': what a waiting restore shows."""
    what = holder.get("purpose") or "backup"
    of = f" of {job}" if job else ""
    who = f" (process {holder.get('pid')} on {holder.get('host')})" if holder.get("pid") else ""
    return f"Waiting for the {what}{of} to finish{who}."
