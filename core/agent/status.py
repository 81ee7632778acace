"""Truthful status (issue #15): the last *successful* backup apart from the last *attempt*.

Every place that shows a backup (``status`` over IPC and on the CLI, the tray,
the window) reads it from here, so a failed run is never shown as a backup and
"needs attention" means the same everywhere: a job needs attention when its
last finished backup attempt failed or was cut off by a pulled drive (a later
success clears it; a run the user stopped does not count), or when a check of
its backup (issue #14, rolling verification) found damage it could not repair
(a check round begun since, that ended clean, clears it: :func:`check_damage`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.agent.history import History, Run, RunKind, RunStatus
from core.agent.words import ago

#: Finished runs (a running row is not an attempt yet).
FINISHED = tuple(s for s in RunStatus if s is not RunStatus.RUNNING)
#: Last-attempt results that need the user's attention.
ATTENTION = (RunStatus.FAILED, RunStatus.DRIVE_REMOVED)


@dataclass
class Record:
    """What the history says about one job (or one drive): its last success and its last attempt."""

    last_success: Run | None = None
    last_attempt: Run | None = None
    damage: Run | None = None      # the newest check that found damage still unrepaired (jobs only)

    @property
    def attention(self) -> str | None:
        """Why this needs the user's attention (the last attempt's problem), or None."""
        run = self.last_attempt
        if run is None or run.status not in ATTENTION:
            return None
        if run.status == RunStatus.DRIVE_REMOVED:
            return "the drive was removed during the backup"
        return run.error or "the backup failed"

    def to_dict(self) -> dict:
        """``last_success`` and ``last_attempt`` as IPC ``Run`` dicts (or null), ``attention``, and
        ``damage``: what the check found unrepaired (its run's error), or null."""
        return {"last_success": _run(self.last_success), "last_attempt": _run(self.last_attempt),
                "attention": self.attention, "damage": self.damage.error if self.damage else None}


def _run(run: Run | None) -> dict | None:
    return run.to_dict() if run else None


def job_record(history: History | None, name: str) -> Record:
    """The job's last successful backup, last finished attempt and unrepaired damage (an empty Record
    without history)."""
    if history is None:
        return Record()
    return Record(history.last_success(name), history.last(name, statuses=FINISHED), check_damage(history, name))


#: Check runs looked at for damage (a rolling check records only rounds finished and damage found).
CHECK_RUNS = 200


def check_damage(history: History, name: str) -> Run | None:
    """The newest check of job ``name`` that failed (damage it could not repair), on any of its sets,
    unless a clean check of that set began after it: a later round read everything again and found
    nothing it could not repair. A repair (status warnings) or a backup clears nothing: damage in an
    old snapshot stays in it."""
    decided: set[str | None] = set()
    clean: set[str | None] = set()
    for run in history.runs(name, limit=CHECK_RUNS, kind=RunKind.VERIFY):   # newest start first
        key = run.drive_id
        if key in decided:
            continue
        if run.status == RunStatus.OK:
            clean.add(key)        # began after every older row of this set
        elif run.status == RunStatus.FAILED and run.error_code == "damaged":
            if key not in clean:
                return run
            decided.add(key)
    return None


def merged(records: list[Record]) -> Record:
    """A drive's record from its jobs' records: the newest success and the newest attempt."""
    def newest(runs):
        runs = [r for r in runs if r is not None]
        return max(runs, key=lambda r: r.last_time) if runs else None
    return Record(newest(r.last_success for r in records), newest(r.last_attempt for r in records))


_ATTEMPT_WORDS = {RunStatus.FAILED: "failed", RunStatus.DRIVE_REMOVED: "was cut off",
                  RunStatus.CANCELLED: "was stopped"}


def describe(record: Record, now: datetime) -> str:
    """'Last successful backup: never · last attempt failed 2 min ago: drive full' (one line)."""
    success = record.last_success
    text = f"Last successful backup: {ago(success.last_time if success is not None else None, now)}"
    attempt = record.last_attempt
    if attempt is not None and attempt.status in _ATTEMPT_WORDS:
        text += f" · last attempt {_ATTEMPT_WORDS[attempt.status]} {ago(attempt.last_time, now)}"
        if record.attention:
            text += f": {record.attention}"
    return text


def attention_list(jobs: list[dict]) -> list[dict]:
    """``status.attention``: ``[{job, message}]`` for every job entry whose ``attention`` is set, and
    one for each whose backup check found damage (``damage``)."""
    return [{"job": j["name"], "message": f"{j['name']}: {j[key]}"} for j in jobs for key in ("attention", "damage")
            if j.get(key)]


def job_entry(job, record: Record, *, present: bool, next_due: datetime | None, last_run: Run | None,
              running: bool = False, queued: bool = False, progress: dict | None = None,
              drives: list | None = None, reminder=None, scan: dict | None = None) -> dict:
    """One IPC ``JobStatus`` (docs/ipc.md); ``drives`` and ``reminder`` from core.agent.rotation; ``scan``: the
    change journal's fields (core/agent/watching.py)."""
    return {"name": job.name, "sources": job.sources, "destination": job.destination.to_dict(),
            "drive_present": present, "running": running, "queued": queued, "progress": progress,
            "last_run": _run(last_run), **record.to_dict(),
            "next_due": next_due.isoformat() if next_due else None, "triggers": job.triggers.to_window(),
            "drives": drives or [], "reminder": reminder.to_dict() if reminder else None, **(scan or {})}


def _rotation(config, history, present: dict[str, str], now: datetime) -> tuple[dict, dict]:
    """Per job: its drives' ages (``drive_ages``) and its reminder, if one holds (issue #14)."""
    from core.agent.rotation import drive_ages, job_since, overdue

    ages = {j.name: drive_ages(j, config, history, present) for j in config.jobs}
    due = overdue({j.name: job_since(history, j.name) for j in config.jobs}, now, config.prefs.remind_after_days)
    return ages, {r.job: r for r in due}


def drive_entries(config, records: dict[str, Record], present: dict[str, str], busy=lambda drive_id: False,
                  history: History | None = None, checks=lambda drive_id: None) -> list:
    """IPC ``DriveStatus`` for each enrolled drive, with the newest success and attempt of its jobs
    (of a job on several drives, its runs on that drive), and ``check``: its rolling check (the agent's
    ``rolling.summary``; null without an agent), connected or not."""
    by_drive = {j.name: (history.last_by_drive(j.name), history.last_by_drive(j.name, FINISHED))
                for j in config.jobs if history is not None and len(j.destination.drive_ids) > 1}
    out = []
    for d in config.drives:
        rec = merged([Record(by_drive[j.name][0].get(d["drive_id"]), by_drive[j.name][1].get(d["drive_id"]))
                      if j.name in by_drive else records[j.name]
                      for j in config.jobs if d["drive_id"] in j.destination.drive_ids])
        out.append({"drive_id": d["drive_id"], "label": d.get("label", ""), "present": d["drive_id"] in present,
                    "mount": present.get(d["drive_id"]), "busy": busy(d["drive_id"]),
                    "check": checks(d["drive_id"]), **rec.to_dict()})
    return out


def agent_status(agent) -> dict:
    """The agent's ``status`` reply (docs/ipc.md)."""
    from core import __version__
    from core.agent.schedule import next_due
    from core.agent.watching import scan_status

    now = agent.clock.now()
    running = {r["job"]: r for r in agent.running()}
    queued = agent.queued()
    records = {j.name: job_record(agent.history, j.name) for j in agent.config.jobs}
    ages, due = _rotation(agent.config, agent.history, agent.present, now)
    jobs = []
    for j in agent.config.jobs:
        rec = records[j.name]
        nd = next_due(j, rec.last_success.started if rec.last_success else None, now.astimezone())
        jobs.append(job_entry(j, rec, present=agent._destination_present(j), next_due=nd,
                              last_run=agent.history.last(j.name), running=j.name in running,
                              queued=j.name in queued, progress=(running.get(j.name) or {}).get("progress"),
                              drives=ages[j.name], reminder=due.get(j.name),
                              scan=scan_status(agent, j)))
        jobs[-1]["waiting"] = agent._waiting(j.name)   # a remote job while its remote cannot be reached
        jobs[-1]["check"] = agent.rolling.job_summary(j)   # a remote job's rolling check (remote_rolling)
    return {"version": __version__, "paused": agent.is_paused(),
            "paused_until": agent.paused_until.isoformat() if agent.paused_until else None,
            "backend": agent.backend, "drive_events": agent.drive_events, "jobs": jobs,
            "drives": drive_entries(agent.config, records, agent.present, agent._drive_busy, agent.history,
                                    agent.rolling.summary),
            "queued": queued, "attention": attention_list(jobs),
            "pending": [{"drive_id": p.drive_id, "jobs": p.jobs, "starts_at": p.starts_at.isoformat(), "held": p.held}
                        for p in list(agent.pending.values())],
            "problem": agent.problem, "restore": agent.restore_task, "restore_page": agent.page_hold.active,
            "reminders": [r.to_dict() for r in due.values()],
            "offers": [o.to_dict() for o in agent.offers.current()]}


def offline_status(paths, config, now: datetime) -> dict:
    """What ``plugback status`` reports without an agent, in the same shape (``agent: false``)."""
    from core.agent.drives import find_drive, mount_points
    from core.agent.schedule import next_due
    from core.agent.watching import offline_scan_status

    # Reading status creates nothing: no history file yet means no runs yet.
    history = History(paths.history_file) if paths.history_file.exists() else None
    mounts = mount_points()
    present = {}
    for d in config.drives:
        mount = find_drive(d["drive_id"], mounts)
        if mount is not None:
            present[d["drive_id"]] = str(mount)
    records = {j.name: job_record(history, j.name) for j in config.jobs}
    ages, due = _rotation(config, history, present, now)
    jobs = []
    for j in config.jobs:
        rec = records[j.name]
        nd = next_due(j, rec.last_success.started if rec.last_success else None, now.astimezone())
        jobs.append(job_entry(j, rec, present=bool(j.destination.path) or any(d in present for d in j.destination.drive_ids),
                              next_due=nd, last_run=history.last(j.name) if history else None,
                              drives=ages[j.name], reminder=due.get(j.name),
                              scan=offline_scan_status(paths, j, config)))
    return {"agent": False, "paused": False, "paused_until": None, "backend": None, "drive_events": None,
            "jobs": jobs,
            "drives": drive_entries(config, records, present, history=history), "queued": [], "attention": attention_list(jobs),
            "pending": [], "problem": None, "restore": None,
            "reminders": [r.to_dict() for r in due.values()], "offers": []}
