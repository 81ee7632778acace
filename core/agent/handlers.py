"""The agent's IPC commands (docs/ipc.md): one small method per command.

Each method takes the request's ``args`` dict and returns the reply's ``data``.
Arguments come from another process and are checked here: a missing or
mistyped one raises :class:`~core.errors.BadRequest` (``bad_request``); other
expected failures raise core.errors types; anything else is a bug, which the
server logs and answers ``internal_error`` (core/agent/ipc.py). Domain rules
(names, clashes, drives in use) live in the config's edit methods, shared with
the CLI. Browsing and restoring import the engine when first used, so an idle
agent stays small.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from core import __version__
from core.agent.config import edited_prefs
from core.agent.history import RunKind
from core.errors import BadRequest, NotFound

#: Every command, in the order of docs/ipc.md; each is the method of the same name
#: (``quit`` is :meth:`Handlers.quit_`, the name ``quit`` being a builtin).
COMMANDS = ("ping", "status", "open_settings", "run_job", "stop_job", "pause", "resume", "config_get",
            "job_save", "job_remove", "set_info", "adopt_set", "prefs_save", "drives_list", "drive_init",
            "drive_forget", "eject", "history", "run_log", "snapshots", "ls", "search", "versions", "restore_plan",
            "restore", "exclude_preview", "validate_job", "quit",
            # issue #15: sets found on drives and folders, unlocking encrypted sets
            "sets", "unlock", "recovery_key", "recovery_reminders", "recovery_key_kept",
            # issue #14, restore first: the Restore page holds automatic backups; stopping a restore
            "restore_page", "restore_stop",
            # issue #14: a drive that is not Plugback's yet
            "offer_decline",
            # issue #13: cloud and network locations (rclone remotes)
            "remotes", "remote_test",

            # issue #12: a backup that trusts no change journal and reads every file
            "full_check")
HISTORY_LIMIT = 1000
log = logging.getLogger("plugback.handlers")


def _text(args: dict, key: str, *, required: bool = True) -> str | None:
    """``args[key]`` as non-empty text (None when absent and not required)."""
    value = args.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(reason=f"'{key}' must be non-empty text")
    return value


def _texts(args: dict, key: str) -> list[str]:
    """``args[key]`` as a list of text (absent = empty)."""
    value = args.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(reason=f"'{key}' must be a list of text")
    return value


def _whole(args: dict, key: str, default: int | None = None) -> int:
    """``args[key]`` as a whole number (``default`` when absent)."""
    value = args.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(reason=f"'{key}' must be a whole number")
    return value


def _local_time(args: dict, key: str) -> datetime | None:
    """``args[key]`` as an aware time: ISO text (a time without zone is local, as the window sends it)."""
    text = _text(args, key, required=False)
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(reason=f"'{key}' must be an ISO date and time, not {text!r}") from None
    return when.astimezone() if when.tzinfo is None else when


def _source(args: dict) -> dict:
    """``{job}`` or ``{set}``: which backup a browse or restore command means (a job here, or a set found)."""
    if args.get("set") is not None:
        return {"set": _text(args, "set")}
    return {"job": _text(args, "job")}


class Handlers:
    """The commands the agent answers; :meth:`table` is what ``core.agent.ipc.Server`` serves."""

    def __init__(self, agent, *, on_quit: Callable[[], None] = lambda: None):
        self.agent = agent
        self.on_quit = on_quit

    def table(self) -> dict[str, Callable[[dict], Any]]:
        """Command name -> method."""
        return {name: getattr(self, "quit_" if name == "quit" else name) for name in COMMANDS}

    # -- the agent and its runs --------------------------------------------------------------

    def ping(self, args):
        return {"version": __version__, "pid": os.getpid()}

    def status(self, args):
        return self.agent.status()

    def open_settings(self, args):
        self.agent.open_settings()
        return {}

    def run_job(self, args):
        if args.get("all"):
            return {"queued": self.agent.run_all()}
        name = self.agent.job(_text(args, "name")).name
        self.agent.run_job(name)
        return {"queued": [name]}

    def full_check(self, args):
        from core.agent.watching import full_check

        return {"queued": [full_check(self.agent, _text(args, "name"))]}

    def stop_job(self, args):
        self.agent.stop_job(_text(args, "name", required=False))
        return {}

    def pause(self, args):
        until = _local_time(args, "until")
        self.agent.pause(until.astimezone(timezone.utc) if until else None)
        return {"paused_until": until.isoformat() if until else None}

    def resume(self, args):
        self.agent.resume()
        return {}

    def quit_(self, args):
        threading.Timer(0.2, self.on_quit).start()   # reply first, then stop
        return {}

    # -- settings ----------------------------------------------------------------------------

    def config_get(self, args):
        return self.agent.config.to_window()

    def job_save(self, args):
        from core.agent.jobcheck import check_job

        original = _text(args, "original_name", required=False)
        job = check_job(self.agent.config, args.get("job"), original)   # before any secret is stored
        passphrase = _text(args, "passphrase", required=False)
        if job.encrypt and passphrase:
            # Kept in the keyring until the first run creates the encrypted set (core.agent.jobs).
            from core.agent import keys
            from core.agent.jobs import job_key_name

            keys.store_passphrase(job_key_name(job.name), passphrase)
        # start: false = the caller starts the first backup itself (the wizard): one backup, not two.
        start = args.get("start", True)
        if not isinstance(start, bool):
            raise BadRequest(reason="'start' must be true or false")
        self.agent.edit_config(lambda cfg: cfg.save_job(job, original), start_new=start)
        return {"job": job.to_window()}

    def job_remove(self, args):
        name = _text(args, "name")
        if self.agent.config.job(name) is None:
            raise NotFound(what="job", name=name)
        from core.agent.adopt import forget_secrets

        self.agent.stop_job(name)
        removed = []
        config = self.agent.edit_config(lambda cfg: removed.append(cfg.remove_job(name)))
        # Its passphrases go with it (the set's entry only when no other job uses that set).
        forget_secrets(removed[0], config.jobs, log.warning)
        return {}

    def _job_set(self, args):
        """(the job on the drive asked for, where its set is now) for set_info / adopt_set: ``drive_id``
        one of the job's drives (rotation), else the first connected; DriveNotConnected when absent."""
        from core.agent.adopt import adoption_target

        return adoption_target(self.agent.job(_text(args, "name")), self.agent.config,
                               _text(args, "drive_id", required=False), mounts=list(self.agent.present.values()))

    def set_info(self, args):
        from core.agent.adopt import read_facts, same_set
        from core.engine.repo import BackupSet

        job, target = self._job_set(args)
        where = {"job": job.name, "path": str(target.set_path), "drive_id": target.drive_id}
        if not BackupSet.exists(target.set_path):
            return {**where, "set": None, "own": False}
        facts = read_facts(target.set_path)
        return {**where, "set": facts.to_dict(), "own": same_set(job.set_id, facts.set_id)}

    def adopt_set(self, args):
        from core.agent.adopt import check_unchanged, read_facts
        from core.agent.rotation import bind_on

        set_id = _text(args, "set_id")
        job, target = self._job_set(args)
        check_unchanged(read_facts(target.set_path), set_id)
        self.agent.edit_config(lambda cfg: bind_on(cfg, job.name, set_id, target.drive_id))
        log.info("job %s adopted the set %s at %s", job.name, set_id, target.set_path)
        return {"job": job.name, "set_id": set_id, "drive_id": target.drive_id}

    def prefs_save(self, args):
        changes = args.get("prefs") or {}
        if not isinstance(changes, dict):
            raise BadRequest(reason="'prefs' must be an object")
        prefs = edited_prefs(self.agent.config.prefs, changes)
        self.agent.edit_config(lambda cfg: setattr(cfg, "prefs", prefs))
        self.agent.apply_start_at_login()
        return {"prefs": prefs.to_dict()}

    # -- drives ------------------------------------------------------------------------------

    def drives_list(self, args):
        from core.agent.drives import list_volumes

        enrolled = {d["drive_id"] for d in self.agent.config.drives}
        volumes = [v.to_dict() for v in list_volumes(enrolled)]
        for v in volumes:
            if v.get("drive_id") in enrolled:   # the rolling check: last_full_check, check_percent...
                v.update(self.agent.rolling.summary(v["drive_id"]))
        return volumes

    def drive_init(self, args):
        from core.agent.drives import enroll, find_drive

        label = _text(args, "label", required=False)
        info, _ = enroll(Path(_text(args, "mount")), label)
        self.agent.edit_config(lambda cfg: cfg.enroll_drive(info.drive_id, label or info.label))
        # Present at once: the window may run a job on it right away, before the watcher looks.
        # Under the mount point the watcher knows it by (the path given may be a symlink).
        mount = find_drive(info.drive_id)
        if mount is not None:
            self.agent.drive_connected(info.drive_id, str(mount))
        return {"drive_id": info.drive_id}

    def drive_forget(self, args):
        drive_id = _text(args, "drive_id")
        self.agent.edit_config(lambda cfg: cfg.forget_drive(drive_id))
        return {}

    def eject(self, args):
        self.agent.eject(_text(args, "drive_id"))
        return {}

    # -- history -----------------------------------------------------------------------------

    def history(self, args):
        limit = _whole(args, "limit", 100)
        if not 1 <= limit <= HISTORY_LIMIT:
            raise BadRequest(reason=f"'limit' must be between 1 and {HISTORY_LIMIT}")
        kind = args.get("kind", "backup")   # backups only unless asked: "verify" (checks), "all"
        if kind not in ("backup", "verify", "all"):
            raise BadRequest(reason="'kind' must be backup, verify or all")
        return [r.to_dict() for r in self.agent.history.runs(_text(args, "job", required=False), limit=limit,
                                                             kind=None if kind == "all" else RunKind(kind))]

    def run_log(self, args):
        run_id = _whole(args, "run_id")
        text = self.agent.history.log(run_id)
        if text is None:
            raise NotFound(what="run", name=str(run_id))
        return {"log": text}

    # -- browsing and restoring (core.agent.browse) -------------------------------------------

    def snapshots(self, args):
        from core.agent import browse

        return browse.snapshots(self.agent, _source(args))

    def ls(self, args):
        from core.agent import browse

        snapshot = _text(args, "snapshot", required=False) or "latest"
        path = args.get("path") or ""
        if not isinstance(path, str):
            raise BadRequest(reason="'path' must be text")
        return browse.ls(self.agent, _source(args), snapshot, path)

    def search(self, args):
        from core.agent import browse

        return browse.search(self.agent, _source(args), _text(args, "query"))

    def restore_plan(self, args):
        from core.agent import browse

        _source(args)
        _texts(args, "paths")
        _text(args, "target", required=False)
        _text(args, "snapshot", required=False)
        return browse.restore_plan(self.agent, args)

    def restore(self, args):
        from core.agent import browse

        _source(args)
        _texts(args, "paths")
        _text(args, "target", required=False)
        return browse.start_restore(self.agent, args)

    def restore_page(self, args):
        """The Restore page is open (renewed every 20 s while it stays open) or closed: while it is
        open, a drive plugged in waits with its automatic backup (core.agent.restore_first)."""
        is_open = args.get("open")
        if not isinstance(is_open, bool):
            raise BadRequest(reason="'open' must be true or false")
        return {"open": self.agent.page_hold.set(is_open)}

    def restore_stop(self, args):
        from core.agent import browse

        return browse.stop_restore(self.agent)

    def versions(self, args):
        """The distinct versions of one file across the snapshots, newest first (core.agent.file_versions)."""
        from core.agent.file_versions import file_versions

        return file_versions(self.agent, _source(args), _text(args, "path"))

    def exclude_preview(self, args):
        from core.agent import browse

        return browse.exclude_preview(_texts(args, "sources"), _texts(args, "excludes"))

    # -- sets found anywhere, and unlocking them (issue #15: core.agent.sets, core.agent.unlock) ----

    def sets(self, args):
        from core.agent.drives import list_volumes
        from core.agent.sets import find_sets
        from core.agent.unlock import cache_of, keyring_available

        found = find_sets(list_volumes(), _texts(args, "folders"), self.agent.config.jobs).to_dict()
        cache = cache_of(self.agent)
        for s in found["sets"]:
            s["unlocked"] = s["encrypted"] and s["set_id"] in cache
        return {**found, "keyring": keyring_available()}

    def unlock(self, args):
        from core.agent import browse
        from core.agent.unlock import cache_of, unlock, unlock_remote

        remember = args.get("remember", False)
        if not isinstance(remember, bool):
            raise BadRequest(reason="'remember' must be true or false")
        root = browse.set_root(self.agent, _source(args))
        kind, secret = _text(args, "kind"), _text(args, "secret")
        if isinstance(root, str):   # a remote job's set (issue #13)
            return unlock_remote(cache_of(self.agent), root, kind, secret, remember)
        return unlock(cache_of(self.agent), root, kind, secret, remember)

    def recovery_key(self, args):
        from core.agent import browse
        from core.agent.unlock import cache_of, recovery_key, remote_recovery_key

        root = browse.set_root(self.agent, _source(args))
        if isinstance(root, str):   # a remote job's set (issue #13)
            return remote_recovery_key(cache_of(self.agent), root)
        return recovery_key(cache_of(self.agent), root)

    def recovery_reminders(self, args):
        """The encrypted jobs whose recovery key was not confirmed as kept (core.agent.recovery_state)."""
        from core.agent.recovery_state import RecoveryKeyState, reminders

        return {"reminders": reminders(RecoveryKeyState(self.agent.paths.data_dir), self.agent.config.jobs)}

    def recovery_key_kept(self, args):
        """A set's recovery key was shown; ``confirmed``: the user says it was kept."""
        from core.agent.recovery_state import RecoveryKeyState, check_set_id

        set_id, confirmed = check_set_id(args.get("set_id")), args.get("confirmed", False)
        if not isinstance(confirmed, bool):
            raise BadRequest(reason="'confirmed' must be true or false")
        RecoveryKeyState(self.agent.paths.data_dir).record(set_id, confirmed=confirmed)
        return {"set_id": set_id, "confirmed": confirmed}

    def offer_decline(self, args):
        """"Not this drive" for the drive offered at ``mount`` (core.agent.offers)."""
        return {"offer": self.agent.offers.decline(_text(args, "mount")).to_dict()}

    # -- cloud and network locations (issue #13) ------------------------------------------------

    def remotes(self, args):
        """The user's rclone remotes, or why there are none to offer (core.agent.remotes)."""
        from core.agent.remotes import list_remotes

        return list_remotes()

    def remote_test(self, args):
        """"Test connection": open the location and list its folder (core.agent.remotes)."""
        from core.agent.remotes import test_connection

        return test_connection(_text(args, "remote"))

    # -- checking input where it is typed (issue #15) ------------------------------------------

    def validate_job(self, args):
        """Check a job (or, before its destination is known, just its name) without saving anything."""
        from core.agent.jobcheck import check_job, check_name

        job = args.get("job")
        if not isinstance(job, dict):
            raise BadRequest(reason="'job' must be an object")
        original = _text(args, "original_name", required=False)
        if "destination" not in job:
            return {"name": check_name(self.agent.config, job.get("name"), original)}
        return {"name": check_job(self.agent.config, job, original).name}
