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
import threading
from datetime import datetime, timezone
from pathlib import Path

from core.engine.restore import CONFLICTS, RestoreOptions, restore
from core.errors import AgentBusy, DamagedSet, PlugbackError, UsageError

log = logging.getLogger("plugback.browse")
SEARCH_LIMIT = 500
PREVIEW_LIMIT = 1000


def _set(agent, job_name: str):
    from core.agent.jobs import resolve_target
    from core.agent.keys import make_unlocker
    from core.engine.repo import BackupSet

    job = agent.job(job_name)
    mounts = list(agent.present.values())
    target = resolve_target(job, agent.config, mounts=mounts)
    return BackupSet.open(target.set_path, make_unlocker()), target


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
    out, missing = {}, []
    for top in sorted(tops):
        src = recorded_path.get(top)
        out[top] = src if src in configured else by_name.get(top)
        if out[top] is None:
            missing.append(top)
    if missing:
        raise UsageError(f"The job '{job.name}' has no folder to back up that matches "
                         f"{', '.join(repr(m) for m in missing)} in this snapshot, so there is no original "
                         "place for it on this computer. Restore it to a folder you choose.")
    return out


def restore_plan(agent, args: dict) -> dict:
    """Where a restore would write, before it starts: ``{destinations: [{top, to}], target}``."""
    bset, _ = _set(agent, args["job"])
    snapshot = bset.resolve_id(args.get("snapshot") or "latest")
    tops = {p.strip("/").partition("/")[0] for p in args.get("paths") or []} - {""}
    if not tops:
        with bset.open_manifest(snapshot) as reader:   # streamed: flat memory at a million files
            tops = {e.path.partition("/")[0] for e in reader}
    dest = args.get("target")
    if dest:
        base = os.path.abspath(os.path.expanduser(dest))
        places = {top: os.path.join(base, top) for top in tops}
    else:
        places = original_places(agent.job(args["job"]), bset.header(snapshot).sources, tops)
    return {"snapshot": snapshot, "target": dest,
            "destinations": [{"top": top, "to": places[top]} for top in sorted(places)]}


def _iso_ns(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat()


def snapshots(agent, job_name: str) -> list[dict]:
    """``[{id, time, files, bytes}]`` newest first."""
    bset, _ = _set(agent, job_name)
    return [{"id": s.id, "time": s.time, "files": s.files, "bytes": s.bytes} for s in reversed(bset.snapshots())]


def ls(agent, job_name: str, snapshot: str, path: str) -> list[dict]:
    """The direct children of ``path`` ('' = the top: one folder per source) in a snapshot."""
    bset, _ = _set(agent, job_name)
    parent = path.strip("/")
    out = []
    with bset.open_manifest(bset.resolve_id(snapshot)) as reader:
        for e in reader:
            head, _, name = e.path.rpartition("/")
            if head == parent:
                out.append({"name": name, "path": e.path, "type": e.type, "size": e.size,
                            "mtime": _iso_ns(e.mtime_ns)})
    return out


def search(agent, job_name: str, query: str) -> list[dict]:
    """Entries whose name contains ``query`` (case-insensitive), newest snapshot first; a snapshot
    found damaged adds nothing."""
    bset, _ = _set(agent, job_name)
    needle = query.casefold()
    out: list[dict] = []
    for info in reversed(bset.snapshots()):
        found = []
        try:
            with bset.open_manifest(info.id) as reader:
                for e in reader:
                    if needle in e.path.rpartition("/")[2].casefold():
                        found.append({"snapshot": info.id, "path": e.path, "type": e.type, "size": e.size,
                                      "mtime": _iso_ns(e.mtime_ns)})
                        if len(out) + len(found) >= SEARCH_LIMIT:
                            return out + found
        except DamagedSet:
            continue
        out += found
    return out


def start_restore(agent, args: dict) -> dict:
    """Start a restore in the background; progress and the result appear in ``status.restore``."""
    from core.engine.progress import CancelToken

    if agent.restore_task and agent.restore_task.get("running"):
        raise AgentBusy(reason="a restore is already running")
    job_name = args.get("job")
    if not isinstance(job_name, str):
        raise UsageError("'job' is required.")
    # The CLI's spelling (keep-both) and the JSON-friendly one (keep_both) both work.
    on_conflict = (args.get("on_conflict") or "skip").replace("_", "-")
    if on_conflict not in CONFLICTS:
        raise UsageError("'on_conflict' must be skip, overwrite or keep-both.")
    bset, target = _set(agent, job_name)
    snapshot = bset.resolve_id(args.get("snapshot") or "latest")
    paths = list(args.get("paths") or [])
    dest = args.get("target")
    # "The original place" is this computer's sources of the job: the engine gets the mapping.
    places = restore_plan(agent, {**args, "snapshot": snapshot})["destinations"]
    where = Path(dest) if dest else {d["top"]: d["to"] for d in places}
    task = {"job": job_name, "snapshot": snapshot, "paths": paths, "target": dest, "running": True,
            "destinations": places, "progress": None, "result": None, "error": None}
    cancel = CancelToken()

    def progress(p):
        task["progress"] = p.to_dict()

    options = RestoreOptions(snapshot=snapshot, paths=paths, on_conflict=on_conflict, progress=progress,
                             cancel=cancel)
    agent.restore_task, agent.restore_drive = task, target.drive_id
    agent.restore_cancel = cancel
    agent.changed()

    def work():
        try:
            result = restore(bset, where, options)
            task["result"] = {k: v for k, v in vars(result).items() if isinstance(v, (int, str, float, bool))}
        except PlugbackError as err:
            task["error"] = {"code": err.code, "message": err.message}
        except Exception as err:   # noqa: BLE001 - report, never kill the agent
            log.exception("restore failed")
            task["error"] = {"code": "error", "message": f"The restore failed unexpectedly: {err!r}"}
        finally:
            task["running"] = False
            agent.restore_drive = None
            agent.changed()

    threading.Thread(target=work, name="restore", daemon=True).start()
    return {"started": True}


def exclude_preview(sources: list, excludes: list) -> dict:
    """Which files and folders under ``sources`` the patterns (plus the defaults) leave out."""
    from core.engine.scan import Excluder

    excluder = Excluder(excludes)
    excluded, count = [], 0
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
