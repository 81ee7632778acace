"""The agent's IPC commands (docs/ipc.md): one small function per command.

Each takes the request's ``args`` dict and returns the reply's ``data``;
expected failures raise core.errors types (the server turns them into error
replies). Browsing and restoring use the engine's BackupSet and restore APIs,
imported when first used so an idle agent stays small.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime, timezone
from pathlib import Path

from core import __version__
from core.agent.config import Config, Job, Prefs
from core.errors import NotFound, UsageError
from core.platform.autostart import agent_command


def _name(args: dict, key: str = "name") -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise UsageError(f"'{key}' is required.")
    return value


def build_handlers(agent, *, on_quit=lambda: None, autostart_folder: Path | None = None) -> dict:
    """The command table for ``core.agent.ipc.Server``."""

    def ping(args):
        return {"version": __version__, "pid": os.getpid()}

    def status(args):
        return agent.status()

    def open_settings(args):
        agent.open_settings()
        return {}

    def run_job(args):
        if args.get("all"):
            return {"queued": agent.run_all()}
        name = agent.job(_name(args)).name
        agent.run_job(name)
        return {"queued": [name]}

    def stop_job(args):
        agent.stop_job(args.get("name"))
        return {}

    def pause(args):
        until = args.get("until")
        when = datetime.fromisoformat(until) if until else None
        if when is not None and when.tzinfo is None:
            when = when.astimezone()   # a local time from the window
        agent.pause(when.astimezone(timezone.utc) if when else None)
        return {"paused_until": when.isoformat() if when else None}

    def resume(args):
        agent.resume()
        return {}

    def config_get(args):
        return agent.config.to_dict()

    def job_save(args):
        job = Job.from_dict(args.get("job"), "job")
        original = args.get("original_name")

        def change(cfg: Config):
            old = cfg.job(original) if original else None
            if original and old is None:
                raise NotFound(what="job", name=original)
            clash = cfg.job(job.name)
            if clash is not None and clash is not old:
                raise UsageError(f"A job named '{job.name}' exists; pick another name.")
            if old is not None:
                cfg.jobs[cfg.jobs.index(old)] = job
            else:
                cfg.jobs.append(job)

        passphrase = args.get("passphrase")
        if job.encrypt and passphrase:
            # Kept in the keyring until the first run creates the encrypted set (core.agent.jobs).
            from core.agent import keys
            from core.agent.jobs import job_key_name

            keys.store_passphrase(job_key_name(job.name), str(passphrase))
        agent.edit_config(change)
        return {"job": job.to_dict()}

    def job_remove(args):
        name = _name(args)

        def change(cfg: Config):
            job = cfg.job(name)
            if job is None:
                raise NotFound(what="job", name=name)
            cfg.jobs.remove(job)

        agent.stop_job(name)
        agent.edit_config(change)
        return {}

    def prefs_save(args):
        merged = {**agent.config.prefs.to_dict(), **(args.get("prefs") or {})}
        prefs = Prefs.from_dict(merged)
        agent.edit_config(lambda cfg: setattr(cfg, "prefs", prefs))
        from core.platform import autostarter

        autostarter(agent_command(), folder=autostart_folder).apply(prefs.start_at_login)
        return {"prefs": prefs.to_dict()}

    def drives_list(args):
        from core.agent.drives import list_volumes

        return [v.to_dict() for v in list_volumes({d["drive_id"] for d in agent.config.drives})]

    def drive_init(args):
        from core.agent.drives import enroll, find_drive

        info, _ = enroll(Path(_name(args, "mount")), args.get("label"))
        label = args.get("label") or info.label

        def change(cfg: Config):
            existing = next((d for d in cfg.drives if d["drive_id"] == info.drive_id), None)
            if existing:
                existing["label"] = label
            else:
                cfg.drives.append({"drive_id": info.drive_id, "label": label})

        agent.edit_config(change)
        # Present at once: the window may run a job on it right away, before the watcher looks.
        # Under the mount point the watcher knows it by (the path given may be a symlink).
        mount = find_drive(info.drive_id)
        if mount is not None:
            agent.drive_connected(info.drive_id, str(mount))
        return {"drive_id": info.drive_id}

    def drive_forget(args):
        drive_id = _name(args, "drive_id")
        users = [j.name for j in agent.config.jobs if j.destination.drive_id == drive_id]
        if users:
            raise UsageError(f"Jobs still back up to this drive: {', '.join(users)}. Remove them first.")
        agent.edit_config(lambda cfg: cfg.drives.__setitem__(
            slice(None), [d for d in cfg.drives if d["drive_id"] != drive_id]))
        return {}

    def eject(args):
        agent.eject(_name(args, "drive_id"))
        return {}

    def history(args):
        limit = int(args.get("limit") or 100)
        return [r.to_dict() for r in agent.history.runs(args.get("job"), limit=limit)]

    def run_log(args):
        text = agent.history.log(int(args["run_id"]))
        if text is None:
            raise NotFound(what="run", name=str(args["run_id"]))
        return {"log": text}

    def quit_(args):
        threading.Timer(0.2, on_quit).start()   # reply first, then stop
        return {}

    from core.agent import browse

    return {
        "ping": ping, "status": status, "open_settings": open_settings, "run_job": run_job,
        "stop_job": stop_job, "pause": pause, "resume": resume, "config_get": config_get,
        "job_save": job_save, "job_remove": job_remove, "prefs_save": prefs_save,
        "drives_list": drives_list, "drive_init": drive_init, "drive_forget": drive_forget,
        "eject": eject, "history": history, "run_log": run_log,
        "snapshots": lambda a: browse.snapshots(agent, _name(a, "job")),
        "ls": lambda a: browse.ls(agent, _name(a, "job"), a.get("snapshot") or "latest", a.get("path") or ""),
        "search": lambda a: browse.search(agent, _name(a, "job"), _name(a, "query")),
        "restore": lambda a: browse.start_restore(agent, a),
        "exclude_preview": lambda a: browse.exclude_preview(a.get("sources") or [], a.get("excludes") or []),
        "quit": quit_,
    }
