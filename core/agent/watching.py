"""The agent's side of the change journal and live mode (issue #12): what ``core/agent/agent.py`` hooks call.

Kept apart so the agent stays a list of thin hooks: starting the watchers and the
live loop, the scan plan of a run, a live run's start, and the ``scan`` fields of
a job's status.
"""

from __future__ import annotations

import logging

from core.agent.changes import ScanPlan
from core.agent.history import Trigger
from core.agent.journal import FULL, JOURNAL
from core.agent.live import LiveLoop

log = logging.getLogger("plugback.watching")


def start(agent) -> None:
    """Watch every job's sources and start the live loop (the tray's agent does this; tests too)."""
    loop = LiveLoop(agent.clock.monotonic, lambda: float(agent.config.prefs.live_quiet_seconds),
                    lambda name: is_live(agent, name), lambda name: start_live_run(agent, name))
    agent.live = loop
    agent.changes.on_change = loop.changed   # every change in a job's sources; the loop keeps live jobs'
    try:
        agent.changes.start(agent.config, list(agent.present.values()))
    except Exception:   # noqa: BLE001 - watching is an optimisation: backups go on, scanning everything
        log.exception("watching the sources failed; every backup scans all folders")
    loop.start()


def full_check(agent, name: str) -> str:
    """"Full check now": back up ``name`` now, scanning every folder and reading every file again."""
    name = agent.job(name).name
    agent.changes.request_full(name)        # before the run is queued: its runner may start it at once
    try:
        agent.run_job(name)
    except Exception:
        agent.changes.request_full(name, False)   # nothing queued (drive away): no full check pending
        raise
    return name


def stop(agent) -> None:
    if agent.live is not None:
        agent.live.stop()
    agent.changes.stop()


def is_live(agent, name: str) -> bool:
    job = agent.config.job(name)
    return bool(job and job.triggers.live)


def start_live_run(agent, name: str) -> bool:
    """Queue a live run of ``name``; False when it must wait (paused, battery, running already).

    A job whose drive is away drops its pending changes (True): the connect run covers them.
    """
    job = agent.config.job(name)
    if job is None or not job.triggers.live or not agent._destination_present(job):
        return True
    if agent.is_paused() or not agent.battery_ok() or \
            (job.destination.drive_id and agent.restore_drive == job.destination.drive_id):
        return False
    return agent._runner(job).enqueue(job.name, trigger=Trigger.LIVE)


def _safety_net(agent) -> dict:
    prefs = agent.config.prefs
    return {"full_days": prefs.full_scan_days, "full_runs": prefs.full_scan_runs}


def last_snapshot(agent, name: str, drive_id: str | None) -> str | None:
    """The newest snapshot this computer committed into the job's set on ``drive_id`` (or its folder)."""
    job = agent.config.job(name)
    if drive_id and job is not None and len(job.destination.drive_ids) > 1:
        run = agent.history.last_by_drive(name).get(drive_id)   # a drive in rotation: its own set
    else:
        run = agent.history.last_success(name)
    return run.snapshot_id if run else None


def plan(agent, job, drive_id: str | None = None) -> ScanPlan:
    """How the run of ``job`` (on ``drive_id``) starting now scans (that set's journal starts over here)."""
    if agent.live is not None:
        agent.live.run_began(job.name)
    return agent.changes.begin(job.name, last_snapshot(agent, job.name, drive_id), where=job.destination.key(),
                               **_safety_net(agent))


def finished(agent, scan: ScanPlan, outcome) -> None:
    """After the run: a committed snapshot becomes the journal's base (also a damaged read-back's)."""
    agent.changes.end(scan, outcome.snapshot_id, engine_scan=outcome.scan)


def next_scan_words(fields: dict) -> str:
    """How the next backup looks for changes, as the window's Overview says it:
    "Next backup: only changed folders (2 changed so far)" or "Next backup: checks every file — <why>"."""
    from core.agent.words import plural

    if fields["next_scan"] == JOURNAL:
        changed = fields.get("changed_folders")
        return "Next backup: only changed folders" + \
            (f" ({plural(changed, 'folder')} changed so far)" if changed is not None else "")
    return f"Next backup: checks every file — {fields['next_scan_reason']}"


def live_words(job, drive_label: str | None) -> str | None:
    """A live job's line ("Live: backs up changes while “Backup A” is connected"); None for other jobs."""
    if not job.triggers.live:
        return None
    if drive_label is None:
        return "Live: backs up changes while the backup folder is reachable"
    return f"Live: backs up changes while “{drive_label}” is connected"


def _worded(fields: dict, job, drive_label: str | None) -> dict:
    """``fields`` with the window's lines (``next_scan_text``, ``live_text``): the words are made here only."""
    return {**fields, "live": job.triggers.live, "next_scan_text": next_scan_words(fields),
            "live_text": live_words(job, drive_label)}


def scan_status(agent, job) -> dict:
    """The ``scan`` fields of ``job``'s status (docs/ipc.md): for the drive a run would go to now
    (the first connected one; else its first drive), or its folder."""
    from core.agent.rotation import present_drive

    if job.destination.remote:   # a remote backup scans every folder (unchanged files are not read again)
        return {"scan": None, "full_scan_reason": None, "watching": False, "next_scan": FULL,
                "next_scan_reason": None, "changed_folders": None, "live": False, "next_scan_text": None,
                "live_text": None}
    drive_id = None if job.destination.path else (present_drive(job, agent.present) or job.destination.drive_id)
    where = f"drive:{drive_id}" if drive_id else job.destination.key()
    snapshot = last_snapshot(agent, job.name, drive_id)
    fields = agent.changes.status(job.name, snapshot, where=where, **_safety_net(agent))
    return _worded(fields, job, agent.config.drive_label(drive_id) if drive_id else None)


def offline_scan_status(paths, job, config=None) -> dict:
    """The ``scan`` fields without an agent: what the last agent's journal file says; nothing is watched."""
    from core.agent.journal import JournalStore, reason_text

    where = job.destination.key()   # its first drive's set, or its folder
    record = JournalStore(paths.data_dir).read(job.name, where)
    fields = {"scan": record["last_scan"] if record else None,
              "full_scan_reason": reason_text(record["last_full_reason"]) if record else None,
              "watching": False, "next_scan": FULL, "next_scan_reason": reason_text("no_watch"),
              "changed_folders": None}
    drive_id = job.destination.drive_id
    return _worded(fields, job, (config.drive_label(drive_id) if config else drive_id) if drive_id else None)
