"""Drives, jobs and status: ``plugback drives``, ``drive init|forget``, ``job add|list|remove|run``, ``status``.

Config edits are the config's own methods (``Config.save_job``, ``forget_drive``...,
the same the agent's IPC commands call), applied here under the config file
lock (the agent notices them); ``job run`` and ``status`` go through the agent
when it runs.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from core.agent.config import RETENTION_KEYS, Config, Job, Paths
from core.agent.words import local_time
from core.cli.render import ProgressBar, ask_new_passphrase, human_size, print_json, run_summary
from core.errors import EXIT_FAILURE, EXIT_OK, EXIT_WARNINGS, AgentUnavailable, NotFound, UsageError

# The config file's and the history's modules (and the engine's) load when a command needs them,
# not for every `plugback` command (issue #11).


def exit_code(status: str) -> int:
    """The exit code for a run's status (text: the agent's replies carry it so; RunStatus is a str enum)."""
    from core.agent.history import RunStatus

    by_status: dict[str, int] = {RunStatus.OK: EXIT_OK, RunStatus.WARNINGS: EXIT_WARNINGS}
    return by_status.get(status, EXIT_FAILURE)


def register(subparsers) -> None:
    """Add this module's commands to the parser."""
    _register_drives(subparsers)
    job = subparsers.add_parser("job", help="add, list, remove or run backup jobs")
    jsub = job.add_subparsers(dest="job_command", metavar="ACTION")
    jsub.required = True
    p = jsub.add_parser("add", help="add a job", description=(
        "Add a backup job. --every takes: hourly, 6h (every N hours), daily@09:30, or a weekday "
        "mon|tue|wed|thu|fri|sat|sun@HH:MM (local time). Missed runs catch up once."))
    p.add_argument("name", metavar="NAME")
    p.add_argument("--source", action="append", required=True, metavar="DIR", help="a folder to back up (repeatable)")
    dest = p.add_mutually_exclusive_group(required=True)
    dest.add_argument("--drive", metavar="DRIVE", action="append",
                      help="an enrolled drive (drive_id or label); repeat it for drives in rotation")
    dest.add_argument("--to", metavar="FOLDER", help="a folder to hold the backup set instead of a drive, or a "
                      "cloud or network location rclone:REMOTE:PATH (always encrypted; runs on --every or by hand)")
    p.add_argument("--folder", help="with --drive: the set's folder on the drive (default Plugback/<computer>/<job>)")
    p.add_argument("--on-connect", action="store_true", help="run whenever the drive is connected")
    p.add_argument("--min-interval", metavar="HOURS", type=hours_to_minutes, default=0,
                   help="with --on-connect: not again within this many hours of the last backup "
                        "(as in the settings window; 0.5 or 30m for half an hour)")
    p.add_argument("--every", metavar="SPEC", help="schedule: hourly, 6h, daily@09:30, mon@09:30")
    p.add_argument("--live", action="store_true", help="back up changes continuously while the drive is connected")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="gitignore-style (repeatable)")
    for flag in RETENTION_KEYS:
        p.add_argument("--" + flag.replace("_", "-"), type=int, metavar="N", dest=flag)
    p.add_argument("--no-verify", action="store_true", help="skip reading back after each backup")
    p.add_argument("--encrypt", action="store_true", help="encrypt the set (passphrase kept in the keyring)")
    p.set_defaults(func=cmd_job_add)
    p = jsub.add_parser("list", help="list jobs")
    p.add_argument("--json", action="store_true", help="machine-readable output (JSON)")
    p.set_defaults(func=cmd_job_list)
    p = jsub.add_parser("remove", help="remove a job (its backups stay)")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_job_remove)
    p = jsub.add_parser("adopt", help="let a job use the backup set already at its destination", description=(
        "A job backs up only into the set it created. When its destination already holds another set "
        "(the run failed with 'set_needs_confirmation'), this shows that set's computer, job and newest "
        "snapshot and asks whether the job may use it."))
    p.add_argument("name", metavar="NAME")
    p.add_argument("--drive", metavar="DRIVE", help="a job on several drives: the set on this one "
                   "(default: the first of its drives connected)")
    p.add_argument("--yes", action="store_true", help="do not ask (for scripts)")
    p.set_defaults(func=cmd_job_adopt)
    _register_job_run(jsub)
    _register_status(subparsers)


def _register_job_run(jsub) -> None:
    p = jsub.add_parser("run", help="run a job now (through the agent when it runs)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--wait", action="store_true", help="with the agent: wait until the run ends")
    p.add_argument("--rehash", action="store_true", help="a full check: read every file again (no change journal)")
    p.set_defaults(func=cmd_job_run)


def _register_drives(subparsers) -> None:
    p = subparsers.add_parser("drives", help="list mounted volumes and Plugback drives")
    p.add_argument("--json", action="store_true", help="machine-readable output (JSON)")
    p.set_defaults(func=cmd_drives)

    drive = subparsers.add_parser("drive", help="enroll, forget or decline a backup drive")
    dsub = drive.add_subparsers(dest="drive_command", metavar="ACTION")
    dsub.required = True
    p = dsub.add_parser("init", help="make a mounted drive a Plugback drive")
    p.add_argument("mount", metavar="MOUNTPOINT", help="where the drive is mounted (plugback drives lists them)")
    p.add_argument("--label", help="a name for the drive (default: its volume name)")
    p.set_defaults(func=cmd_drive_init)
    p = dsub.add_parser("forget", help="stop using a drive (its backups stay on it)")
    p.add_argument("drive", metavar="DRIVE", help="drive_id or label")
    p.set_defaults(func=cmd_drive_forget)
    p = dsub.add_parser("decline", help="'Not this drive': never offer this drive for backups")
    p.add_argument("mount", metavar="MOUNTPOINT", help="where the drive is mounted")
    p.set_defaults(func=cmd_drive_decline)


def _register_status(subparsers) -> None:
    p = subparsers.add_parser("status", help="jobs, last runs and the agent's state", description=(
        "Each job's last successful backup and last attempt. Exit status: 0 all fine, "
        f"{EXIT_ATTENTION} a job (or the agent) needs attention or was not backed up for the reminder's days, "
        f"{EXIT_NO_AGENT} the agent is not running."))
    p.add_argument("--json", action="store_true",
                   help="machine-readable output: last_success and last_attempt per job and per drive")
    p.set_defaults(func=cmd_status)


# -- helpers ------------------------------------------------------------------------------------

def hours_to_minutes(text: str) -> int:
    """``--min-interval``: hours like the window ("2", "0.5"), or minutes with an m ("30m"); stored in minutes."""
    import argparse

    try:
        minutes = float(text[:-1]) if text.endswith("m") else float(text.removesuffix("h")) * 60
    except ValueError:
        raise argparse.ArgumentTypeError(f"give hours (e.g. 2 or 0.5) or minutes (e.g. 30m), not {text!r}") from None
    if minutes < 0:
        raise argparse.ArgumentTypeError("the interval cannot be negative")
    return round(minutes)


def _paths() -> Paths:
    return Paths.default()


def _config() -> Config:
    from core.agent.config_file import read_config

    return read_config(_paths().config_file)


def _update(change):
    """``update_config`` on the user's config file: (the config after, ``change``'s result)."""
    from core.agent.config_file import update_config

    return update_config(_paths().config_file, change)


def _agent(cmd: str, **args):
    """Call the agent; AgentUnavailable when it does not run."""
    from core.agent.ipc import call

    return call(cmd, _paths(), **args)


# -- drives -------------------------------------------------------------------------------------

def cmd_drives(args) -> int:
    from core.agent.drives import list_volumes

    cfg = _config()
    volumes = list_volumes({d["drive_id"] for d in cfg.drives})
    if args.json:
        print_json([v.to_dict() for v in volumes])
        return EXIT_OK
    if not volumes:
        print("No drives are mounted.")
        return EXIT_OK
    print(f"{'MOUNT':30} {'LABEL':24} {'FS':8} {'FREE':>9} {'SIZE':>9}  PLUGBACK")
    for v in volumes:
        state = ("enrolled " + v.drive_id[:8]) if v.enrolled and v.drive_id else ("drive.json, not enrolled here" if v.drive_id
                                                                   else "-")
        free, total = (human_size(v.free), human_size(v.total)) if v.total else ("unknown", "unknown")
        print(f"{v.mount:30} {v.label[:24]:24} {v.filesystem:8} {free:>9} {total:>9}  {state}")
    return EXIT_OK


def cmd_drive_init(args) -> int:
    from core.agent.drives import enroll

    info, created = enroll(Path(args.mount), args.label)
    label = args.label or info.label
    _update(lambda cfg: cfg.enroll_drive(info.drive_id, label))
    verb = "is now" if created else "was already"
    print(f"{args.mount} {verb} a Plugback drive: '{label}' (drive_id {info.drive_id}).")
    print(f"Add a job for it: plugback job add NAME --source DIR --drive '{label}' --on-connect")
    return EXIT_OK


def cmd_drive_forget(args) -> int:
    forgotten = []
    _update(lambda cfg: forgotten.append(cfg.forget_drive(args.drive)))
    label = forgotten[0].get("label") or args.drive
    print(f"Forgot drive '{label}'. Its backups stay on it; 'plugback drive init' enrolls it again.")
    return EXIT_OK


def cmd_drive_decline(args) -> int:
    from core.agent.offers import declinable

    key, name, words = declinable(args.mount)
    _update(lambda cfg: cfg.decline_drive(key, name))   # the agent reloads it
    print(f"Plugback will not offer {words} for backups again ('plugback drive init' still prepares it).")
    return EXIT_OK


# -- jobs ---------------------------------------------------------------------------------------

def build_job(args, cfg: Config) -> Job:
    """A Job from ``job add`` arguments, checked by the same rules as the window (core.agent.jobcheck)."""
    from core.agent.jobcheck import check_job, check_name

    check_name(cfg, args.name)   # first: before drives or folders are looked at
    if args.drive:
        ids = []
        for ref in args.drive:
            drive = cfg.drive(ref)
            if drive is None:
                raise NotFound(what="enrolled drive", name=ref, hint="Enroll it with 'plugback drive init MOUNTPOINT'.")
            ids.append(drive["drive_id"])
        destination = {"drive_id": ids[0], **({"folder": args.folder} if args.folder else {}),
                       **({"rotation": [{"drive_id": i} for i in ids[1:]]} if ids[1:] else {})}
    else:
        if args.folder:
            raise UsageError("--folder goes with --drive; with --to give the folder itself.")
        from core.engine.storage.rclone import is_remote_spec

        destination = {"remote": args.to} if is_remote_spec(args.to) else \
            {"path": str(Path(args.to).expanduser().absolute())}
    sources = []
    for s in args.source:
        p = Path(s).expanduser().absolute()
        if not p.is_dir():
            raise UsageError(f"The folder to back up does not exist: {p}.")
        sources.append(str(p))
    retention = {k: getattr(args, k) for k in RETENTION_KEYS if getattr(args, k) is not None}
    data = {"name": args.name, "sources": sources, "destination": destination,
            "triggers": {"on_connect": args.on_connect, "schedule": args.every,
                         "min_interval_minutes": args.min_interval, "live": args.live},
            "excludes": args.exclude, "retention": retention,
            "verify": "none" if args.no_verify else "after_backup", "encrypt": args.encrypt}
    return check_job(cfg, data, window=False)


def cmd_job_add(args) -> int:
    cfg = _config()
    job = build_job(args, cfg)
    cfg.save_job(job)   # a name in use is refused here, before a passphrase is asked or stored
    if job.encrypt:
        from core.agent import keys
        from core.agent.jobs import job_key_name

        # Kept in the keyring for the agent's first run (KeyringUnavailable says what to do).
        keys.store_passphrase(job_key_name(job.name), ask_new_passphrase("the new encrypted backup"))
    _update(lambda c: c.save_job(job))
    print(f"Added job '{job.name}': {', '.join(job.sources)} -> {_describe_destination(job, _config())}; "
          f"{job.triggers.describe()}.")
    return EXIT_OK


def _describe_destination(job: Job, cfg: Config) -> str:
    d = job.destination
    if d.drive_id:
        return " or ".join(f"drive '{cfg.drive_label(i)}'" for i in d.drive_ids) + (f" ({d.folder})" if d.folder else "")
    return d.remote or d.path or ""   # a job has a drive, a folder or a remote (Config validates it)


def cmd_job_list(args) -> int:
    cfg = _config()
    if args.json:
        print_json([j.to_dict() for j in cfg.jobs])
        return EXIT_OK
    if not cfg.jobs:
        print("No jobs. Add one with 'plugback job add NAME --source DIR --drive DRIVE --on-connect'.")
    for j in cfg.jobs:
        print(f"{j.name}: {', '.join(j.sources)} -> {_describe_destination(j, cfg)}; {j.triggers.describe()}"
              + ("; encrypted" if j.encrypt else ""))
    return EXIT_OK


def cmd_job_remove(args) -> int:
    from core.agent.adopt import forget_secrets

    removed = []
    cfg, _ = _update(lambda c: removed.append(c.remove_job(args.name)))
    forget_secrets(removed[0], cfg.jobs, lambda text: print(f"plugback: {text}", file=sys.stderr))
    print(f"Removed job '{args.name}'. Its backups stay where they are.")
    return EXIT_OK


def cmd_job_adopt(args) -> int:
    from core.agent.adopt import adoption_target, check_unchanged, read_facts, same_set
    from core.agent.rotation import bind_on

    cfg = _config()
    job = cfg.job(args.name)
    if job is None:
        raise NotFound(what="job", name=args.name, hint="'plugback job list' lists jobs.")
    job, target = adoption_target(job, cfg, args.drive)   # a drive in rotation: its own set
    facts = read_facts(target.set_path)   # NotASet when there is nothing to adopt
    if same_set(job.set_id, facts.set_id):
        print(f"'{job.name}' already backs up into the set at {target.set_path}.")
        return EXIT_OK
    print(f"The destination of '{job.name}' holds a backup set it did not make:\n  {target.set_path}\n"
          f"  {facts.describe()}\n  set id {facts.set_id}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("Confirm with --yes to use that set without a question.")
        if input(f"Back up '{job.name}' into this set from now on? [y/N] ").strip().lower() not in ("y", "yes"):
            print("Nothing changed.")
            return EXIT_FAILURE
    check_unchanged(read_facts(target.set_path), facts.set_id)
    _update(lambda cfg: bind_on(cfg, job.name, facts.set_id, target.drive_id))
    print(f"'{job.name}' now backs up into that set. Run it with 'plugback job run \"{job.name}\"'.")
    return EXIT_OK


def cmd_job_run(args) -> int:
    cfg = _config()
    job = cfg.job(args.name)
    if job is None:
        raise NotFound(what="job", name=args.name, hint="'plugback job list' lists jobs.")
    try:
        queued = _agent("full_check" if args.rehash else "run_job", name=job.name)["queued"]
    except AgentUnavailable:
        return _run_in_process(job, cfg, rehash=args.rehash)
    print(f"The agent started {', '.join(queued) or job.name}.")
    if not args.wait:
        return EXIT_OK
    last = _follow(job.name)
    if last.get("error"):
        print(f"plugback: {last['error']}", file=sys.stderr)
    elif last:
        print(run_summary(job.name, last.get("snapshot_id"), last))
    return exit_code(last.get("status", ""))


def _follow(name: str) -> dict:
    """Wait for the agent's run of ``name``, with the same progress bar as a run in this process."""
    from core.engine.progress import Progress

    bar = ProgressBar()
    try:
        while True:
            time.sleep(0.5)
            status = _agent("status")
            js = next((j for j in status["jobs"] if j["name"] == name), None)
            if js is None or not js["running"] and name not in status.get("queued", []):
                return (js or {}).get("last_run") or {}
            if js.get("progress"):
                bar(Progress(**js["progress"]))
    finally:
        bar.done()


def _bind_in_config(name: str, set_id: str, drive_id: str | None = None) -> None:
    """Keep the set a run made (or owns from before set ids) as the job's set_id in config.json."""
    from core.agent.rotation import bind_on

    _update(lambda cfg: bind_on(cfg, name, set_id, drive_id))


def _run_in_process(job: Job, cfg: Config, *, rehash: bool = False) -> int:
    from core.agent.changes import ScanPlan
    from core.agent.drives import find_drive
    from core.agent.history import History
    from core.agent.jobs import engine_cache, run_job

    paths = _paths()
    paths.ensure()
    # A job on several drives backs up to the first of them that is connected (issue #14).
    here = next((d for d in job.destination.drive_ids if find_drive(d) is not None), None)
    job = job.on_drive(here) if here else job
    bar = ProgressBar()
    try:
        scan = ScanPlan(job.name, "full", "requested" if rehash else "no_watch", rehash=rehash)
        outcome = run_job(job, cfg, History(paths.history_file), progress=bar,
                          bind=lambda n, set_id: _bind_in_config(n, set_id, here), scan=scan,
                          cache=engine_cache(paths))
    finally:
        bar.done()
    if outcome.made_room:   # the drive was full: the oldest backups went (issue #14)
        print(outcome.made_room, file=sys.stderr)
    if outcome.error is not None:
        print(f"plugback: {outcome.error.message}", file=sys.stderr)
        return outcome.error.exit_code
    print(run_summary(job.name, outcome.snapshot_id, vars(outcome)))
    if outcome.flushed and outcome.target.mount:
        print("The drive is safe to unplug.")
    return exit_code(outcome.status)


# -- status -------------------------------------------------------------------------------------

#: ``plugback status`` exit codes besides 0 (all fine): a job needs attention, or no agent runs.
EXIT_ATTENTION = EXIT_FAILURE
EXIT_NO_AGENT = 5


def cmd_status(args) -> int:
    from core.agent.status import offline_status

    try:
        data = _agent("status")
        data["agent"] = True
    except AgentUnavailable as err:
        if err.details.get("reason") == "no_answer":   # something listens but never answers: say so
            print(f"plugback: {err.message}", file=sys.stderr)
        data = offline_status(_paths(), _config(), datetime.now(timezone.utc))
    if args.json:
        print_json(data)
    else:
        print_status(data, datetime.now(timezone.utc))
    if not data["agent"]:
        return EXIT_NO_AGENT
    return EXIT_ATTENTION if data.get("attention") or data.get("problem") or data.get("reminders") else EXIT_OK


def print_status(data: dict, now: datetime) -> None:
    """``plugback status`` for people: the agent, a pause, what needs attention, one line per job."""
    print("Agent: " + ("running" + agent_details(data) if data["agent"] else
                       "not running (start it with 'plugback-tray')"))
    if data.get("paused"):
        until = data.get("paused_until")
        print("Automatic backups paused " + (f"until {local_time(until, now)}." if until else "until you resume them."))
    if data.get("problem"):
        print(f"Needs attention: {data['problem']}")
    if not data["jobs"]:
        print("No jobs.")
    for j in data["jobs"]:
        print(job_line(j, now))
    from core.agent.rotation import status_lines

    for line in status_lines(data, now):   # issue #14: drives in rotation, reminders, drives offered
        print(line)


def agent_details(data: dict) -> str:
    """' (tray: appindicator; drive events: mount-table)', or '' when the agent named neither."""
    parts = [f"{label}: {data[key]}" for key, label in (("backend", "tray"), ("drive_events", "drive events"))
             if data.get(key)]
    return f" ({'; '.join(parts)})" if parts else ""


def _run(d: dict | None):
    from core.agent.history import Run

    if d is None:
        return None
    times = {k: datetime.fromisoformat(d[k]) if d.get(k) else None for k in ("started", "ended")}
    return Run(**{**d, **times})


def job_line(j: dict, now: datetime) -> str:
    """'Docs: Last successful backup: never · last attempt failed 2 min ago: …; drive connected; next …'."""
    from core.agent.status import Record, describe

    line = f"{j['name']}: " + describe(Record(_run(j.get("last_success")), _run(j.get("last_attempt"))), now)
    ok = j.get("last_success")
    if ok:
        line += f" ({local_time(ok.get('ended') or ok['started'], now)})"
    if j["running"]:
        p = j.get("progress") or {}
        line += "; running" + (f" {100 * p['bytes_done'] // p['bytes_total']}%" if p.get("bytes_total") else "")
    elif j.get("queued"):
        line += "; waiting to start"
    line += "; drive connected" if j["drive_present"] else "; drive not connected"
    if j.get("next_due"):
        line += f"; next backup {local_time(j['next_due'], now)}"
    if j.get("live"):
        line += "; live"
    if j.get("watching") and j.get("next_scan_text"):   # the Overview's line (core/agent/watching.py)
        line += f"; {j['next_scan_text'][:1].lower()}{j['next_scan_text'][1:]}"
    if j.get("damage"):   # issue #14: the rolling check found damage it could not repair
        line += f"\n  Needs attention: the backup check found damage: {j['damage']}"
    return line
