"""The settings window's API: what the pages may ask for.

pywebview exposes an :class:`Api` object to the page as ``window.pywebview.api``;
the browser-fallback server (``ui/server.py``) maps ``POST /api/<method>`` to
the same object. Both enter through :meth:`Api.call`, so both behave the same.

Methods stay one to three lines: check the input, ask the agent over IPC (or
look at the local disk for pure local things such as "is this a folder"), and
return ``{"ok": True, "data": ...}`` or ``{"ok": False, "code", "message"}``.
The agent owns every state change; this process never writes config itself.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Callable

from core.agent.config import Paths
from core.agent.ipc import Client
from core.errors import AgentUnavailable, PlugbackError, UsageError

log = logging.getLogger(__name__)

#: Sends one request to the agent and returns its reply dict (``{"ok": ...}``).
AgentRequest = Callable[[str, dict], dict]
#: Opens a native folder picker; returns the chosen folder or None (cancelled).
FolderPicker = Callable[[str | None], str | None]

CONFLICT_CHOICES = ("skip", "overwrite", "keep_both")


def agent_request(paths: Paths | None = None) -> AgentRequest:
    """The real link to the agent: one short ``core.agent.ipc`` connection per request.

    A fresh connection each time costs a millisecond and survives the agent
    restarting while the window is open.
    """
    def request(cmd: str, args: dict) -> dict:
        with Client(paths) as client:
            return _ok(client.call(cmd, **args))

    return request


def _need(condition: bool, message: str) -> None:
    """Refuse bad input from the page with a message the page can show as is."""
    if not condition:
        raise UsageError(message)


def _ok(data=None) -> dict:
    return {"ok": True, "data": {} if data is None else data}


def _which(job, set_path) -> dict:
    """A job of this computer, or a set found on a drive (its path): exactly one is needed."""
    if set_path is not None:
        return {"set": _text(set_path, "The backup set")}
    return {"job": _text(job, "The job name")}


def _drive(drive_id) -> dict:
    """``{drive_id}`` when one is given (a job on several drives), else nothing."""
    return {"drive_id": _text(drive_id, "The drive")} if drive_id is not None else {}


def _text(value, what: str) -> str:
    _need(isinstance(value, str) and value.strip() != "", f"{what} is missing.")
    return value


class Api:
    """Every method the settings pages call; the single entry point is :meth:`call`."""

    #: The names the page may call. Anything else gets ``unknown_method``.
    METHODS = frozenset({
        "info", "status", "run_job", "stop_job", "pause", "resume", "config_get",
        "job_save", "job_remove", "set_info", "adopt_set", "prefs_save", "drives_list", "drive_init",
        "drive_forget", "eject", "history", "run_log", "snapshots", "ls", "search", "restore_plan", "restore",
        "exclude_preview", "pick_folder", "check_folder", "validate_job",
        "sets", "unlock", "recovery_key", "recovery_reminders", "recovery_key_kept", "check_target",
        "versions", "restore_page", "restore_stop", "offer_decline", "full_check", "remotes", "remote_test",
    })

    def __init__(self, agent: AgentRequest, *, mode: str, pick_folder: FolderPicker | None = None):
        self._agent = agent
        self._mode = mode
        self._pick_folder = pick_folder

    def call(self, method: str, args: dict | None = None) -> dict:
        """Run one API method by name; never raises (errors become ``{"ok": False}`` replies)."""
        fn = getattr(self, method, None) if method in self.METHODS else None
        if fn is None:
            return {"ok": False, "code": "unknown_method", "message": f"The settings window has no action '{method}'."}
        if args is not None and not isinstance(args, dict):
            return {"ok": False, "code": "bad_request", "message": "The request's arguments must be an object."}
        try:
            inspect.signature(fn).bind(**(args or {}))
        except TypeError as err:
            return {"ok": False, "code": "bad_request", "message": f"Bad request for '{method}': {err}."}
        try:
            reply = fn(**(args or {}))
        except PlugbackError as err:
            reply = err.to_dict()
        except Exception as err:  # a bug here must not take the window down; the log keeps the trace
            log.exception("API method %s failed", method)
            return {"ok": False, "code": "internal",
                    "message": f"The settings window hit an unexpected problem ({type(err).__name__}: {err}). "
                               "Try again; if it keeps happening, report it with the log file."}
        log.debug("api %s -> %s", method, "ok" if reply.get("ok") else reply.get("code"))
        return reply

    def _ask(self, cmd: str, **args) -> dict:
        """Forward one command to the agent; an unreachable agent is an error reply, not an exception."""
        try:
            return self._agent(cmd, args)
        except PlugbackError as err:
            return err.to_dict()
        except (OSError, EOFError) as err:
            log.info("agent unreachable for %s: %s", cmd, err)
            return AgentUnavailable().to_dict()

    # -- about this window -------------------------------------------------

    def info(self) -> dict:
        """How the page runs (``window`` or ``browser``), whether pickers exist and the agent answers.

        The page calls this once when it loads; the log line is how one sees (and the window
        test checks) that the page reached Python and Python reached the agent.
        """
        agent = self._ask("ping").get("ok", False)
        log.info("settings page loaded (%s mode; agent answering: %s)", self._mode, "yes" if agent else "no")
        return _ok({"mode": self._mode, "can_pick_folders": self._pick_folder is not None, "agent": agent,
                    "home": str(Path.home()), "sep": os.sep})

    # -- status and runs ---------------------------------------------------

    def status(self) -> dict:
        """Jobs, drives, progress and the running restore, as the agent sees them now."""
        return self._ask("status")

    def run_job(self, name: str | None = None, all: bool = False) -> dict:  # noqa: A002 - protocol name
        """Queue one job (or all jobs) to run now."""
        return self._ask("run_job", all=True) if all else self._ask("run_job", name=_text(name, "The job name"))

    def full_check(self, name: str) -> dict:
        """"Full check now": back the job up now, reading every file again (not trusting the change journal)."""
        return self._ask("full_check", name=_text(name, "The job name"))

    def stop_job(self, name: str | None = None) -> dict:
        """Stop a running or queued job; None stops all and cancels pending connect backups.

        What was copied is reused by the next run.
        """
        return self._ask("stop_job", name=None if name is None else _text(name, "The job name"))

    def pause(self, until: str | None = None) -> dict:
        """Pause automatic backups until an ISO time, or until resumed (None)."""
        return self._ask("pause", until=until)

    def resume(self) -> dict:
        """Resume automatic backups."""
        return self._ask("resume")

    # -- configuration -----------------------------------------------------

    def config_get(self) -> dict:
        """The whole config: jobs, drives, preferences."""
        return self._ask("config_get")

    def job_save(self, job: dict, original_name: str | None = None, passphrase: str | None = None,
                 start: bool = True) -> dict:
        """Create or change a job; the agent validates it and names any bad field (``start``: see ipc.md)."""
        _need(isinstance(job, dict) and bool(str(job.get("name", "")).strip()), "Give the job a name.")
        _need(isinstance(job.get("sources"), list) and len(job["sources"]) > 0, "Add at least one folder to back up.")
        extra = {"passphrase": passphrase} if passphrase else {}
        return self._ask("job_save", job=job, original_name=original_name, start=bool(start), **extra)

    def job_remove(self, name: str) -> dict:
        """Remove a job from the config (its backups on the drive stay)."""
        return self._ask("job_remove", name=_text(name, "The job name"))

    def set_info(self, name: str, drive_id: str | None = None) -> dict:
        """The backup set at a job's destination now (computer, job, newest snapshot), and whether it is the
        job's; ``drive_id``: on that one of its drives (rotation)."""
        return self._ask("set_info", name=_text(name, "The job name"), **_drive(drive_id))

    def adopt_set(self, name: str, set_id: str, drive_id: str | None = None) -> dict:
        """The user confirmed: the job may back up into the set ``set_id`` found at its destination
        (on ``drive_id``, one of its drives)."""
        return self._ask("adopt_set", name=_text(name, "The job name"), set_id=_text(set_id, "The backup set"),
                         **_drive(drive_id))

    def prefs_save(self, prefs: dict) -> dict:
        """Save the preferences."""
        _need(isinstance(prefs, dict), "The preferences are missing.")
        return self._ask("prefs_save", prefs=prefs)

    # -- drives ------------------------------------------------------------

    def drives_list(self) -> dict:
        """Mounted volumes, with free space and whether each is an enrolled Plugback drive."""
        return self._ask("drives_list")

    def drive_init(self, mount: str, label: str | None = None) -> dict:
        """Prepare a mounted volume as a Plugback drive (writes ``Plugback/drive.json``)."""
        return self._ask("drive_init", mount=_text(mount, "The drive's mount point"), label=label or None)

    def drive_forget(self, drive_id: str) -> dict:
        """Stop using a drive for backups (nothing on it is deleted)."""
        return self._ask("drive_forget", drive_id=_text(drive_id, "The drive"))

    def eject(self, drive_id: str) -> dict:
        """Unmount / eject a drive so it is safe to unplug."""
        return self._ask("eject", drive_id=_text(drive_id, "The drive"))

    # -- history -----------------------------------------------------------

    def history(self, job: str | None = None, limit: int = 100, kind: str = "backup") -> dict:
        """Past runs, newest first: backups, checks of the backup (``verify``) or ``all``."""
        _need(isinstance(limit, int) and 0 < limit <= 10000, "The number of runs to show must be 1 to 10000.")
        return self._ask("history", **({"job": job} if job else {}), limit=limit, kind=kind)

    def run_log(self, run_id) -> dict:
        """The log text of one run."""
        _need(isinstance(run_id, (int, str)) and str(run_id) != "", "Which run's log? The run id is missing.")
        return self._ask("run_log", run_id=run_id)

    # -- restore -----------------------------------------------------------

    def snapshots(self, job: str | None = None, set: str | None = None) -> dict:  # noqa: A002 - protocol name
        """The snapshots of a job's set, or of a set found on a drive (``set``: its path), newest first."""
        return self._ask("snapshots", **_which(job, set))

    def ls(self, snapshot: str, path: str = "", job: str | None = None, set: str | None = None) -> dict:  # noqa: A002
        """The entries of one folder in a snapshot."""
        return self._ask("ls", **_which(job, set), snapshot=_text(snapshot, "The snapshot"), path=path)

    def search(self, query: str, job: str | None = None, set: str | None = None) -> dict:  # noqa: A002
        """Find a file name across all snapshots: one row per distinct version."""
        _need(isinstance(query, str) and len(query.strip()) >= 2, "Type at least two characters to search for.")
        return self._ask("search", **_which(job, set), query=query.strip())

    def versions(self, path: str, job: str | None = None, set: str | None = None) -> dict:  # noqa: A002
        """The versions of one file across the snapshots, newest first (the "Versions…" list)."""
        return self._ask("versions", **_which(job, set), path=_text(path, "The file"))

    def restore_plan(self, snapshot: str, paths: list, target: str | None = None, job: str | None = None,
                     set: str | None = None) -> dict:  # noqa: A002
        """Where a restore would write each top folder (shown before it starts)."""
        _need(isinstance(paths, list), "The selection must be a list.")
        return self._ask("restore_plan", **_which(job, set), snapshot=_text(snapshot, "The snapshot"),
                         paths=paths, target=target or None)

    def restore(self, snapshot: str, paths: list, target: str | None = None, on_conflict: str = "keep_both",
                job: str | None = None, set: str | None = None, create_target: bool = False) -> dict:  # noqa: A002
        """Start restoring ``paths`` of a snapshot to their original place (target None) or a folder
        (made first when ``create_target``: the user confirmed it)."""
        _need(isinstance(paths, list) and len(paths) > 0, "Select at least one file or folder to restore.")
        _need(on_conflict in CONFLICT_CHOICES, f"Choose what to do with existing files: {', '.join(CONFLICT_CHOICES)}.")
        return self._ask("restore", **_which(job, set), snapshot=_text(snapshot, "The snapshot"),
                         paths=paths, target=target or None, on_conflict=on_conflict,
                         create_target=create_target is True)

    def restore_page(self, open: bool) -> dict:  # noqa: A002 - protocol name
        """The Restore page is open (sent again every 20 s) or closed: automatic backups of a drive
        plugged in meanwhile wait for it to close."""
        _need(isinstance(open, bool), "'open' must be true or false.")
        return self._ask("restore_page", open=open)

    def restore_stop(self) -> dict:
        """Stop the restore (a queued one never starts; a running one stops after the current file)."""
        return self._ask("restore_stop")

    def exclude_preview(self, sources: list, excludes: list) -> dict:
        """What the exclude patterns would leave out of the sources (for the live preview)."""
        _need(isinstance(sources, list) and isinstance(excludes, list), "Sources and excludes must be lists.")
        return self._ask("exclude_preview", sources=sources, excludes=excludes)

    # -- checking input where it is typed (issue #15) ----------------------

    def validate_job(self, job: dict, original_name: str | None = None) -> dict:
        """Ask the agent whether a job (or just its name) may be saved; nothing is written."""
        _need(isinstance(job, dict), "The job is missing.")
        return self._ask("validate_job", job=job, original_name=original_name)

    # -- cloud and network locations (issue #13) ---------------------------

    def remotes(self) -> dict:
        """The user's rclone remotes (``data.error``: why there are none, e.g. rclone is not installed)."""
        return self._ask("remotes")

    def remote_test(self, remote: str) -> dict:
        """"Test connection": ``data.ok`` and the message to show (the location's error when not ok)."""
        return self._ask("remote_test", remote=_text(remote, "The location"))

    # -- local things: no agent needed -------------------------------------

    def pick_folder(self, start: str | None = None) -> dict:
        """Open the native folder picker (window mode only); ``data.path`` is None when cancelled."""
        if self._pick_folder is None:
            return {"ok": False, "code": "no_picker", "message": "Type the folder's path instead."}
        return _ok({"path": self._pick_folder(start)})

    def check_folder(self, path: str) -> dict:
        """Check a typed folder path: it must exist and be a folder. Returns its absolute form.
        ``rclone:REMOTE:PATH`` (issue #13) is passed on as typed: the agent checks it (``sets``)."""
        typed = _text(path, "The folder path").strip()
        if typed.startswith("rclone:"):
            _need(typed.count(":") >= 2 and typed.split(":")[1] != "",
                  "Give a cloud or network location as rclone:REMOTE:FOLDER (a remote of 'rclone listremotes').")
            return _ok({"path": typed})
        folder = Path(os.path.expandvars(typed)).expanduser()
        _need(folder.is_absolute(), f"Give the full path of the folder, e.g. {Path.home() / 'Documents'}.")
        _need(folder.is_dir(), f"There is no folder at {folder}. Check the spelling.")
        return _ok({"path": str(folder.resolve())})

    # -- restore anywhere and encrypted sets (issue #15) ---------------------------------

    def sets(self, folders: list | None = None) -> dict:
        """Every backup set on the connected drives and in ``folders`` the user opened."""
        _need(folders is None or isinstance(folders, list), "The folders must be a list.")
        return self._ask("sets", folders=folders or [])

    def unlock(self, kind: str, secret: str, remember: bool = False, job: str | None = None,
               set: str | None = None) -> dict:  # noqa: A002 - protocol name
        """Open an encrypted set with a passphrase or recovery key, for this session (and the keyring)."""
        _need(isinstance(secret, str) and secret != "", "Type the passphrase or the recovery key.")
        return self._ask("unlock", **_which(job, set), kind=kind, secret=secret, remember=remember is True)

    def recovery_key(self, job: str | None = None, set: str | None = None) -> dict:  # noqa: A002
        """The recovery key of an encrypted set (shown once when it is created, to keep on paper)."""
        return self._ask("recovery_key", **_which(job, set))

    def recovery_reminders(self) -> dict:
        """The encrypted jobs whose recovery key the user has not yet said was kept."""
        return self._ask("recovery_reminders")

    def recovery_key_kept(self, set_id: str, confirmed: bool = False) -> dict:
        """A set's recovery key was shown (``confirmed``: and kept), so it is not shown again."""
        _need(isinstance(confirmed, bool), "Say whether the recovery key was kept.")
        return self._ask("recovery_key_kept", set_id=set_id, confirmed=confirmed)

    def offer_decline(self, mount: str) -> dict:
        """"Not this drive": the drive offered at ``mount`` is not offered again (issue #14)."""
        return self._ask("offer_decline", mount=mount)

    def check_target(self, path: str) -> dict:
        """A typed restore folder: its absolute form and whether it exists (the restore may create it)."""
        folder = Path(os.path.expandvars(_text(path, "The folder path").strip())).expanduser()
        _need(folder.is_absolute(), f"Give the full path of the folder, e.g. {Path.home() / 'Restored'}.")
        _need(folder.is_dir() or not folder.exists(), f"{folder} is a file, not a folder. Choose another place.")
        return _ok({"path": str(folder), "exists": folder.is_dir()})
