"""Browsing and restoring a job's snapshots for the settings window (IPC snapshots/ls/search/restore,
restore_plan), and the exclude preview. Everything goes through the engine's BackupSet, restore and
scan APIs.

"The original place" is this computer's configured sources of the job, never the
source paths a snapshot records (the drive is untrusted input, issue #10): each
top folder of the snapshot maps to one of the job's sources (:func:`original_places`),
and a top folder with no configured source is refused with a request to pick a folder.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from core.engine.restore import CONFLICTS, OnConflict, RestoreOptions, restore
from core.errors import AgentBusy, Cancelled, DamagedSet, DriveGone, PlugbackError, UsageError

if TYPE_CHECKING:
    from core.agent.config import Job
    from core.engine.repo import BackupSet

log = logging.getLogger("plugback.browse")
SEARCH_LIMIT = 500
PREVIEW_LIMIT = 1000
RESULT_LIMIT = 200      # renamed / damaged files named in a restore's result
DEFAULT_CONFLICT = "keep-both"
LOCK_WAIT = 6 * 3600.0  # a restore waits this long for another process's backup (then that lock is stale anyway)


@dataclass(frozen=True)
class Source:
    """What the window browses: a set, the job here that owns it (None: no job here uses it),
    and the drive it is on (None: a folder)."""

    bset: BackupSet
    job: Job | None
    drive_id: str | None
    #: A remote set (issue #13; a core.engine.remote.RemoteSet, which reads like a BackupSet): its
    #: rclone runs until :func:`release`.
    remote: bool = False


def source_args(args: dict) -> dict:
    """``{job}`` or ``{set}`` from a request (the window names a job here, or a set it found)."""
    if isinstance(args.get("set"), str) and args["set"]:
        return {"set": args["set"]}
    if isinstance(args.get("job"), str) and args["job"]:
        return {"job": args["job"]}
    raise UsageError("Say which backup: 'job' (a job on this computer) or 'set' (a set found on a drive).")


def source_of(agent, args: dict) -> Source:
    """Which set a browse or restore request means (``{job}`` or ``{set}``), opened with the session's unlocked keys."""
    from core.agent.jobs import resolve_target
    from core.agent.unlock import cache_of, cached_unlocker
    from core.engine.repo import BackupSet

    unlock = cached_unlocker(cache_of(agent))
    which = source_args(args)
    if "set" in which:
        return _found_set(agent, which["set"], unlock)
    job = agent.job(which["job"])
    if job.destination.remote:   # a cloud or network location (issue #13): its remote set reads alike
        from core.agent.remote_jobs import open_remote

        return Source(open_remote(job.destination.remote, unlock, interactive=True), job, None, remote=True)   # type: ignore[arg-type]
    mounts = list(agent.present.values())
    target = resolve_target(job, agent.config, mounts=mounts)
    return Source(BackupSet.open(target.set_path, unlock), job, target.drive_id)


def release(src: Source) -> None:
    """Close what :func:`source_of` opened for ``src`` (a remote set's rclone; a local set holds nothing)."""
    if src.remote:
        src.bset.close()   # type: ignore[attr-defined]   # a RemoteSet (see Source.remote)


@contextmanager
def browsing(agent, args: dict) -> Iterator[Source]:
    """:func:`source_of` for one request, released when it is answered."""
    src = source_of(agent, args)
    try:
        yield src
    finally:
        release(src)


def _checked_path(path: str):
    """A set path from the window, proven inside the drive (or folder) holding it: (path, drive_id)."""
    from core.agent.drives import list_volumes
    from core.agent.sets import boundary_of
    from core.engine.layout import SetLayout

    if not os.path.isabs(path):
        raise UsageError(f"Give the full path of the backup set, not {path!r}.")
    volumes = list_volumes()
    boundary = boundary_of(Path(path), volumes)
    SetLayout(Path(path)).check_contained(boundary)
    drive = next((v.drive_id for v in volumes if os.path.realpath(v.mount) == os.path.realpath(boundary)), None)
    return Path(path), drive


def _found_set(agent, path: str, unlock) -> Source:
    """A set the window found on a drive or in a folder (``sets``).

    A job here bound to it (the same set id) makes "the original place" available.
    """
    from core.agent.adopt import same_set
    from core.agent.remote_sets import checked_spec, is_remote_spec
    from core.engine.repo import BackupSet

    if is_remote_spec(path):   # typed on the Restore page (issue #13): opened through rclone, here
        from core.agent.remote_jobs import open_remote

        rset = open_remote(checked_spec(path), unlock, interactive=True)
        job = next((j for j in agent.config.jobs if same_set(j.set_id, rset.set_id)), None)
        return Source(rset, job, None, remote=True)   # type: ignore[arg-type]
    root, drive = _checked_path(path)
    bset = BackupSet.open(root, unlock)
    job = next((j for j in agent.config.jobs if same_set(j.set_id, bset.set_id)), None)
    return Source(bset, job, drive)


def set_root(agent, which: dict) -> Path | str:
    """Where the set of ``{job}`` or ``{set}`` is, without opening it (for unlocking it): a path, or
    a remote job's (or a typed set's) ``rclone:REMOTE:PATH`` (issue #13; the agent opens it through rclone)."""
    from core.agent.jobs import resolve_target
    from core.agent.remote_sets import checked_spec, is_remote_spec

    if "set" in which:
        return checked_spec(which["set"]) if is_remote_spec(which["set"]) else _checked_path(which["set"])[0]
    job = agent.job(which["job"])
    if job.destination.remote:
        return job.destination.remote
    return resolve_target(job, agent.config, mounts=list(agent.present.values())).set_path


def _top_names(sources: list[str]) -> dict[str, str]:
    """The top folder name each configured source gets in a set (as core.engine.scan names new ones)."""
    names, taken = {}, set()
    for src in sources:
        base = os.path.basename(os.path.normpath(src)) or "root"
        name, n = base, 2
        while name.casefold() in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add(name.casefold())
        names[src] = name
    return names


def original_places(job, recorded: list[dict], tops) -> dict[str, str]:
    """Where each top folder in ``tops`` goes back to: one of ``job``'s configured sources.

    A top folder maps to the configured source the snapshot recorded for it
    (same path), else to the configured source that gets that folder name; the
    recorded path itself is never used as a destination. None found: UsageError
    asking for a folder.
    """
    configured = [os.path.normpath(s) for s in job.sources]
    by_name = {name: src for src, name in _top_names(configured).items()}
    recorded_path = {s.get("name"): os.path.normpath(str(s.get("path"))) for s in recorded}
    out: dict[str, str] = {}
    missing = []
    for top in sorted(tops):
        src = recorded_path.get(top)
        place = src if src in configured else by_name.get(top)
        if place is None:
            missing.append(top)
        else:
            out[top] = place
    if missing:
        raise UsageError(f"The job '{job.name}' has no folder to back up that matches "
                         f"{', '.join(repr(m) for m in missing)} in this snapshot, so there is no original "
                         "place for it on this computer. Restore it to a folder you choose.")
    return out


def restore_plan(agent, args: dict, source: Source | None = None) -> dict:
    """Where a restore would write, before it starts: ``{destinations: [{top, to}], target, creates}``.

    ``creates``: the target folder does not exist yet (the restore makes it, when asked to).
    A set no job here uses has no original place on this computer: a folder is required.
    """
    if source is None:
        with browsing(agent, args) as src:
            return restore_plan(agent, args, src)
    src = source
    bset = src.bset
    snapshot = bset.resolve_id(args.get("snapshot") or "latest")
    tops = {p.strip("/").partition("/")[0] for p in args.get("paths") or []} - {""}
    if not tops:
        with bset.open_manifest(snapshot) as reader:   # streamed: flat memory at a million files
            tops = {e.path.partition("/")[0] for e in reader}
    dest = args.get("target")
    if dest:
        base = os.path.abspath(os.path.expanduser(dest))
        places = {top: os.path.join(base, top) for top in tops}
    elif src.job is None:
        raise UsageError("This backup was not made by a job on this computer, so it has no original place "
                         "here. Choose a folder to restore into.")
    else:
        places = original_places(src.job, bset.header(snapshot).sources, tops)
    return {"snapshot": snapshot, "target": dest, "creates": bool(dest) and not os.path.isdir(base),
            "destinations": [{"top": top, "to": places[top]} for top in sorted(places)]}


def _iso_ns(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat()


def snapshots(agent, args: dict) -> list[dict]:
    """``[{id, time, files, bytes}]`` newest first."""
    with browsing(agent, args) as src:
        return [{"id": s.id, "time": s.time, "files": s.files, "bytes": s.bytes}
                for s in reversed(src.bset.snapshots())]


def ls(agent, args: dict, snapshot: str, path: str) -> list[dict]:
    """The direct children of ``path`` ('' = the top: one folder per source) in a snapshot."""
    parent = path.strip("/")
    out = []
    with browsing(agent, args) as src, src.bset.open_manifest(src.bset.resolve_id(snapshot)) as reader:
        for e in reader:
            head, _, name = e.path.rpartition("/")
            if head == parent:
                out.append({"name": name, "path": e.path, "type": e.type, "size": e.size,
                            "mtime": _iso_ns(e.mtime_ns)})
    return out


def search(agent, args: dict, query: str) -> list[dict]:
    """One row per distinct version of each entry whose name contains ``query`` (case-insensitive).

    A file unchanged across snapshots is one version: its row names the newest snapshot
    holding it (``snapshot``), the oldest (``first_snapshot``) and how many hold it
    (``snapshots``). Newest versions first, at most SEARCH_LIMIT rows.
    """
    with browsing(agent, args) as src:
        return _search(src.bset, query)


def _search(bset, query: str) -> list[dict]:
    needle = query.casefold()
    rows: dict[tuple, dict] = {}
    for info in reversed(bset.snapshots()):
        try:
            with bset.open_manifest(info.id) as reader:   # streamed: flat memory at a million files
                for e in reader:
                    if needle in e.path.rpartition("/")[2].casefold():
                        _count_version(rows, info.id, e)
        except DamagedSet:
            continue   # a snapshot found damaged adds nothing (verify names it)
    return list(rows.values())


def _count_version(rows: dict, snapshot: str, e) -> None:
    key = (e.path, e.type, e.size, e.mtime_ns, e.sha256, e.target)
    row = rows.get(key)
    if row is not None:
        row["first_snapshot"], row["snapshots"] = snapshot, row["snapshots"] + 1
    elif len(rows) < SEARCH_LIMIT:
        rows[key] = {"snapshot": snapshot, "first_snapshot": snapshot, "snapshots": 1, "path": e.path,
                     "type": e.type, "size": e.size, "mtime": _iso_ns(e.mtime_ns)}


def _conflict(args: dict) -> str:
    # The CLI's spelling (keep-both) and the JSON-friendly one (keep_both) both work. The default is
    # keep-both in the window, the agent and the CLI: nothing already there is lost, and the restored
    # version is always written (its new name is in the result).
    on_conflict = (args.get("on_conflict") or DEFAULT_CONFLICT).replace("_", "-")
    if on_conflict not in CONFLICTS:
        raise UsageError("'on_conflict' must be skip, overwrite or keep-both.")
    return on_conflict


def _make_target(dest: str | None, create: bool) -> None:
    """A target folder that does not exist is made only when the user confirmed it (``create``)."""
    if not dest:
        return
    if not os.path.isabs(os.path.expanduser(dest)):
        raise UsageError(f"Give the full path of the folder to restore into, not {dest!r}.")
    folder = os.path.expanduser(dest)
    if os.path.isdir(folder):
        return
    if os.path.lexists(folder):
        raise UsageError(f"{folder} is not a folder. Choose another place to restore into.")
    if not create:
        raise UsageError(f"There is no folder at {folder}. Confirm to create it, or choose another folder.")
    try:
        os.makedirs(folder)
    except OSError as err:
        raise UsageError(f"The folder {folder} cannot be created ({err.strerror or err}).") from None


def start_restore(agent, args: dict) -> dict:
    """Queue a restore on the runner of the drive (or folder) it reads; progress and the result appear
    in ``status.restore``. It goes ahead of queued backups and waits for the one running (issue #14);
    only one restore at a time (a second is refused with AgentBusy)."""
    _refuse_second(agent)   # early, before a folder is made; again below, atomically
    on_conflict = _conflict(args)
    src = source_of(agent, args)
    try:
        _start_restore(agent, args, src, on_conflict)
    except BaseException:
        release(src)
        raise
    return {"started": True}


def _start_restore(agent, args: dict, src: Source, on_conflict: str) -> None:
    bset = src.bset
    snapshot = bset.resolve_id(args.get("snapshot") or "latest")
    paths = list(args.get("paths") or [])
    dest = args.get("target")
    # "The original place" is this computer's sources of the job: the engine gets the mapping.
    places = restore_plan(agent, {**args, "snapshot": snapshot}, src)["destinations"]
    _make_target(dest, bool(args.get("create_target")))
    where = Path(os.path.expanduser(dest)) if dest else {d["top"]: d["to"] for d in places}
    label = args.get("job") or (src.job.name if src.job else None)
    task = {"job": label, "set": args.get("set"), "snapshot": snapshot, "paths": paths, "target": dest,
            "running": True, "waiting": None, "destinations": places, "progress": None, "result": None,
            "error": None}

    def progress(p):
        task["progress"] = p.to_dict()

    options = RestoreOptions(snapshot=snapshot, paths=paths, on_conflict=OnConflict(on_conflict), progress=progress,
                             lock_wait=LOCK_WAIT)
    runner = agent.runner_at(_runner_key(src, bset))
    with agent.lock:   # the check and the claim in one step: two restores started together cannot both run
        _refuse_second(agent)
        agent.restore_task, agent.restore_drive = task, src.drive_id
        agent.restore_stop = (runner, f"restore:{id(task)}")
    if runner.current:
        task["waiting"] = _waiting_for_run(agent, runner)

    def work(cancel, _runner_progress):
        try:
            _work(agent, src, where, replace(options, cancel=cancel,
                                             on_lock_wait=lambda h: _lock_wait(agent, task, bset, h)), task)
        finally:
            release(src)

    runner.enqueue_restore(f"restore:{id(task)}", work)
    agent.changed()


def _refuse_second(agent) -> None:
    if agent.restore_task and agent.restore_task.get("running"):
        raise AgentBusy(reason="a restore is already running; wait for it to finish, or stop it")


def stop_restore(agent) -> dict:
    """Stop the restore: a queued one never starts, a running one stops after the file it is writing
    (what is restored stays; no file is left half written)."""
    stop = agent.restore_stop
    task = agent.restore_task
    if stop is None or not task or not task.get("running"):
        return {"stopped": False}
    if stop[0].stop_restore(stop[1]) == "dropped":
        task["error"] = {"code": Cancelled.code, "message": "The restore was stopped before it started."}
        _finish(agent, task)
    return {"stopped": True}


def _runner_key(src: Source, bset) -> str:
    """The runner whose queue the restore joins: its drive's, else its job's folder, else the set's folder."""
    if src.drive_id:
        return f"drive:{src.drive_id}"
    if src.job is not None:
        return src.job.destination.key()
    return f"path:{bset.root}"


def _waiting_for_run(agent, runner) -> str:
    return f"Waiting for the backup of {runner.current} to finish."


def _lock_wait(agent, task: dict, bset, holder: dict) -> None:
    """Another process (``plugback``, another computer) holds the set: the restore waits and says for what."""
    from core.agent.restore_first import waiting_text

    task["waiting"] = waiting_text(holder, bset.meta.get("job") if not bset.encrypted else None)
    agent.changed()


def _finish(agent, task: dict) -> None:
    task["running"], task["waiting"] = False, None
    agent.restore_drive = None
    agent.changed()


def _work(agent, src: Source, where, options: RestoreOptions, task: dict) -> None:
    """The restore, on its runner's thread: runs it, then puts the result (with renamed files named) into the task."""
    task["waiting"] = None
    agent.changed()
    try:
        result = _restore(src, where, options)
        task["result"] = {k: v for k, v in vars(result).items() if isinstance(v, (int, str, float, bool))}
        task["result"]["renamed"] = [{"path": p, "to": t, "as": a} for p, t, a in result.kept_as]
        task["result"]["damaged_files"] = [{"path": p, "reason": r} for p, r in result.damaged[:RESULT_LIMIT]]
    except Cancelled:
        task["error"] = {"code": Cancelled.code, "message": "The restore was stopped. The files restored so far "
                                                          "are in place (none is half written)."}
    except PlugbackError as err:
        task["error"] = {"code": err.code, "message": err.message}
    except Exception as err:   # noqa: BLE001 - report, never kill the agent
        log.exception("restore failed")
        task["error"] = {"code": "error", "message": f"The restore failed unexpectedly: {err!r}"}
    finally:
        _finish(agent, task)


def _restore(src: Source, where, options: RestoreOptions):
    """The engine's restore of ``src``: a remote set's (its lock on the remote), or a drive's or folder's."""
    from core.agent.restore_first import wait_while_held

    bset = src.bset
    if src.remote:
        from core.engine.remote.restore import restore as remote_restore

        return remote_restore(bset, where, options)   # type: ignore[arg-type]
    if not os.path.isdir(bset.root):   # pulled while the restore waited its turn
        raise DriveGone("The backup drive was removed before the restore started. Plug it in and "
                        "start the restore again.")
    # Another process's backup first (its lock), so the names below are looked up after it.
    if not wait_while_held(bset.root, options.cancel, options.on_lock_wait or (lambda _: None)):
        raise Cancelled()
    return restore(bset, where, options)


def exclude_preview(sources: list, excludes: list) -> dict:
    """Which files and folders under ``sources`` the patterns (plus the defaults) leave out."""
    from core.engine.scan import Excluder

    excluder = Excluder(excludes)
    excluded: list[str] = []
    count = 0
    for src in sources:
        root = os.path.abspath(os.path.expanduser(str(src)))
        if not os.path.isdir(root):
            continue
        for folder, dirs, files in os.walk(root):
            rel_dir = os.path.relpath(folder, root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            for name in sorted(dirs):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if excluder.excluded(rel, True):
                    dirs.remove(name)          # nothing under an excluded folder is backed up
                    count += 1
                    if len(excluded) < PREVIEW_LIMIT:
                        excluded.append(os.path.join(folder, name) + os.sep)
            dirs.sort()
            for name in sorted(files):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if excluder.excluded(rel, False):
                    count += 1
                    if len(excluded) < PREVIEW_LIMIT:
                        excluded.append(os.path.join(folder, name))
    return {"excluded": excluded, "count": count}
