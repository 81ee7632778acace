"""Running one job end to end: destination -> set -> engine -> retention -> flush -> history.

Used by the agent's JobRunner threads and by ``plugback job run`` when no
agent is running. It never talks to people: progress goes to a callback and
the outcome (with the history row id) is returned for the caller to render.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.agent.config import Config, Job
from core.agent.drives import find_drive
from core.agent.history import History, RunEnd, RunStatus, Trigger, warnings_text
from core.agent.words import plural, removed_backups, size
from core.engine.cache import engine_cache as engine_cache  # (the agent imports it from here)
from core.engine.layout import check_chain, drive_dir, drive_set_path
from core.engine.progress import CancelToken, Clock, Progress, no_progress
from core.engine.repo import BackupSet, Unlocker
from core.errors import (
    Cancelled,
    DamagedSet,
    DriveGone,
    DriveNotConnected,
    PassphraseNeeded,
    PlugbackError,
    UsageError,
)

logger = logging.getLogger("plugback.jobs")


def host_name() -> str:
    """This computer's name, as sets record it (socket.gethostname, like core.engine.repo and core.engine.lock)."""
    return socket.gethostname() or "computer"


@dataclass
class Target:
    """Where a job writes right now: the set folder and, for drive jobs, the drive."""

    set_path: Path
    drive_id: str | None = None
    mount: Path | None = None


@dataclass
class Outcome:
    """How a run ended. ``status`` is the history's; ``flushed`` = safe to unplug."""

    run_id: int
    job: str
    status: RunStatus
    target: Target
    snapshot_id: str | None = None
    files_copied: int = 0
    bytes_copied: int = 0
    files_scanned: int = 0
    warnings: int = 0
    warning_summary: str = ""   # e.g. "1 file skipped, 1 copy in Latest/ changed by hand ..."
    error: PlugbackError | None = None
    flushed: bool = False
    log: list[str] = field(default_factory=list)
    #: How the engine scanned: "journal" (it used the change hint) or "full" (BackupResult.scan; issue #12).
    scan: str | None = None
    made_room: str = ""   # what was removed to make room on a full drive (words), for a notification


def resolve_target(job: Job, config: Config, *, host: str | None = None, mounts=None) -> Target:
    """The set folder for ``job`` now; raises DriveNotConnected when its drive is absent."""
    dest = job.destination
    if dest.path:
        return Target(set_path=Path(dest.path))
    assert dest.drive_id is not None   # a path, or a drive (Destination.from_dict)
    mount = find_drive(dest.drive_id, mounts)
    if mount is None:
        raise DriveNotConnected(label=config.drive_label(dest.drive_id))
    if dest.folder:
        set_path = drive_dir(mount) / dest.folder
    else:
        set_path = drive_set_path(mount, host or host_name(), job.name)
    return Target(set_path=set_path, drive_id=dest.drive_id, mount=mount)


def flush_drive(target: Target) -> None:
    """Make everything written to the destination durable before saying "safe to unplug".

    The engine flushes the volume once (``syncfs``) before it commits a snapshot,
    but retention and the run's last writes come after that; ``sync`` here covers
    them, file-system metadata and FUSE drives (exFAT), whose daemon flushes on sync.
    """
    if hasattr(os, "sync"):
        os.sync()
    try:
        fd = os.open(target.set_path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_on_drive(target: Target) -> None:
    """Before a set is created on a drive: the drive is still mounted, and every folder from its
    mount point down to the set is a real folder on it (not a symlink, not another volume).

    A drive pulled between finding it and creating the set leaves an empty mount point
    on the computer's own disk; the set must not be made there.
    """
    if target.mount is None:
        return
    if not os.path.ismount(target.mount):
        raise DriveGone(path=str(target.mount))
    check_chain(target.mount, target.set_path)


_SUMMARY = {   # warning code -> (what is counted, what happened to one, to several)
    "unreadable": ("file", "skipped", "skipped"),
    "special_file": ("special file", "skipped", "skipped"),
    "kept_previous": ("file", "kept its previous version", "kept their previous version"),
    "changed_while_reading": ("file", "changed while copied (copied again next time)",
                              "changed while copied (copied again next time)"),
    "latest_edited": ("copy", "in Latest/ changed outside Plugback (its older version is lost)",
                      "in Latest/ changed outside Plugback (their older versions are lost)"),
    "latest_foreign": ("folder", "in Latest/ holds files Plugback did not put there",
                       "in Latest/ hold files Plugback did not put there"),
    "snapshot_damaged": ("damaged snapshot", "(everything was copied again)", "(everything was copied again)"),
    "symlink_not_restored": ("symlink", "not restored", "not restored"),
    "locked": ("file", "open in another program (not backed up now)", "open in other programs (not backed up now)"),
    "renamed": ("name", "this computer cannot hold was restored under another", "this computer cannot hold were "
                "restored under others"),
}


def warning_summary(warnings) -> str:
    """The run's warnings counted by kind, for a notification: "2 files skipped, 1 file kept its ..."."""
    counts: dict[str, int] = {}
    for w in warnings:
        counts[w.code.value] = counts.get(w.code.value, 0) + 1
    return ", ".join(_counted(code, n) for code, n in counts.items())


def _counted(code: str, n: int) -> str:
    """One kind of warning in words: "1 file skipped", "3 files skipped"; an unknown code as "2 warnings (code)"."""
    if code not in _SUMMARY:
        return f"{plural(n, 'warning')} ({code})"
    what, one, many = _SUMMARY[code]
    return f"{plural(n, what)} {one if n == 1 else many}"


def job_key_name(job_name: str) -> str:
    """The keyring entry holding an encrypted job's passphrase until its set exists."""
    return f"job:{job_name}"


def new_set_passphrase(job_name: str) -> str | None:
    """The passphrase for an encrypted job's first run: PLUGBACK_PASSPHRASE, else the keyring."""
    from core.agent import keys
    from core.errors import KeyringUnavailable

    if os.environ.get("PLUGBACK_PASSPHRASE"):
        return os.environ["PLUGBACK_PASSPHRASE"]
    try:
        return keys.stored_passphrase(job_key_name(job_name))
    except KeyringUnavailable:
        return None


def remember_set_passphrase(bset: BackupSet, passphrase: str, log: list[str]) -> None:
    """Keep the new set's passphrase in the keyring under its set_id, so unattended runs open it."""
    from core.agent import keys
    from core.errors import KeyringUnavailable

    try:
        keys.store_passphrase(bset.set_id, passphrase)
    except KeyringUnavailable as err:
        log.append(f"warning: {err.message}")


def open_job_set(job: Job, target: Target, *, host: str, clock: Clock, passphrase: str | None,
                 log: list[str], history: History | None = None, unlock: Unlocker | None = None) -> BackupSet:
    """The job's set, opened with the keyring / environment secret, or created when new.

    An existing set is opened only when it is the job's own (core.agent.adopt:
    its ``set_id``, or for a job from before set ids, its ``history``); any other
    raises SetNeedsConfirmation and nothing is written.

    A new set of an ``encrypt`` job is encrypted with ``passphrase`` (else
    PLUGBACK_PASSPHRASE or the job's keyring entry), which is then remembered
    under the set's id. Sources are checked before anything is created.
    """
    from core.agent.adopt import open_own
    from core.agent.keys import make_unlocker
    from core.engine.backup import check_sources

    if BackupSet.exists(target.set_path):
        bset = open_own(job, target.set_path, unlock or make_unlocker(), history)
        if job.encrypt and not bset.encrypted:
            raise UsageError(f"The set at {target.set_path} is not encrypted, but the job '{job.name}' asks "
                             "for encryption, which is chosen when a set is created. Point the job at a "
                             "new folder, or turn encryption off for it.")
        return bset
    check_sources(job.sources, target.set_path)
    if job.encrypt:
        passphrase = passphrase or new_set_passphrase(job.name)
        if not passphrase:
            raise PassphraseNeeded()
    else:
        passphrase = None
    # The agent knows the drive is mounted, so Plugback/<computer>/<job> may be created,
    # once it is proven to still be there and the way down to the set is the drive's own.
    check_on_drive(target)
    bset = BackupSet.create(target.set_path, clock.now(), job=job.name, host=host, passphrase=passphrase,
                            parents=True)
    if passphrase:
        remember_set_passphrase(bset, passphrase, log)
    return bset


def retention_policy(job: Job):
    """The job's retention as the engine's RetentionPolicy; none configured = the Time Machine-like default."""
    from core.engine.retention import RetentionPolicy

    if not job.retention:
        return RetentionPolicy.default()
    return RetentionPolicy.from_dict({k.removeprefix("keep_"): v for k, v in job.retention.items()})


def _apply_retention(job: Job, bset: BackupSet, clock: Clock, log: list[str], boundary: Path | None) -> None:
    from core.engine.retention import forget

    result = forget(bset, retention_policy(job), prune=True, clock=clock, boundary=boundary)
    if result.forgotten:
        log.append(f"retention: forgot {plural(len(result.forgotten), 'old snapshot')}, "
                   f"freed {plural(result.bytes_freed, 'byte')}")


def run_job(job: Job, config: Config, history: History, *, target: Target | None = None,
            host: str | None = None, progress: Callable[[Progress], None] | None = None,
            cancel: CancelToken | None = None, clock: Clock | None = None,
            passphrase: str | None = None, bind: Callable[[str, str], None] | None = None,
            trigger: Trigger = Trigger.MANUAL, unlock: Unlocker | None = None, scan=None,
            cache: Path | None = None) -> Outcome:
    """Run ``job`` once and record it in ``history``; returns the outcome, never raises PlugbackError.

    ``scan``: the change tracker's ScanPlan (core/agent/changes.py): its ``hint`` makes the
    engine rescan only the changed folders, its ``rehash`` read everything; None: a full scan.
    ``cache``: the engine's folder on this computer (:func:`engine_cache`; ``BackupOptions.cache``).

    DriveNotConnected is raised before anything is recorded when the job's
    drive is absent (nothing ran). A drive pulled mid-run ends the run as
    ``drive_removed``; a cancel as ``cancelled``; other expected errors as
    ``failed`` with the error's message. ``passphrase`` encrypts a new set of an
    ``encrypt`` job; existing encrypted sets are opened with the keyring /
    environment secret (core.agent.keys), never a prompt. A set the job made (or
    owns from before set ids) is recorded on ``job`` and passed to ``bind(job
    name, set_id)`` so the caller keeps it in config.json; a set that is not the
    job's own ends the run ``failed`` with ``set_needs_confirmation``.
    """
    from core.agent.adopt import canonical_id, same_set
    from core.engine.backup import BackupOptions  # the engine; imported late so the agent starts light
    from core.engine.space import RoomReport, backup_with_room

    clock = clock or Clock()
    host = host or host_name()
    target = target or resolve_target(job, config, host=host)
    run_id = history.start(job.name, clock.now(), drive_id=target.drive_id, trigger=trigger)
    outcome = Outcome(run_id=run_id, job=job.name, status=RunStatus.FAILED, target=target)
    outcome.log.append(f"backup of {', '.join(job.sources)} to {target.set_path}")
    if scan is not None:
        outcome.log.append(scan.note)
    try:
        bset = open_job_set(job, target, host=host, clock=clock, passphrase=passphrase, log=outcome.log,
                            history=history, unlock=unlock)
        if not same_set(job.set_id, bset.set_id):
            job.set_id = canonical_id(bset.set_id)
            outcome.log.append(f"this job's backup set is {bset.set_id}")
            if bind is not None:
                bind(job.name, bset.set_id)
        room = RoomReport()
        try:
            # A full drive: the oldest snapshots go (never the newest), or the run fails before writing.
            result, _ = backup_with_room(bset, job.sources, BackupOptions(
                excludes=job.excludes, job=job.name, host=host, verify=job.verify != "none", boundary=target.mount,
                progress=progress or no_progress, cancel=cancel or CancelToken(), clock=clock,
                changes=scan.hint if scan else None, rehash=bool(scan and scan.rehash), cache=cache), report=room)
        finally:
            _note_room(room, outcome, clock)
        if scan is not None and scan.hint is not None and result.scan == "full":
            outcome.log.append("scan: the engine scanned every folder instead (the hint did not apply)")
        _finish_backup(job, bset, result, outcome, history, clock)
    except BaseException as err:
        if not _record_failure(err, outcome, history, clock):
            raise
    return outcome


def _note_room(room, outcome: Outcome, clock: Clock) -> None:
    """Put what making room removed in the run's log and, in words, on the outcome (the agent notifies)."""
    from core.engine.retention import snapshot_time

    if room.need is not None:
        outcome.log.append(f"room: needs about {size(room.need.total)} ({plural(room.need.files, 'file')} to "
                           f"copy), {size(room.free)} free")
    if room.retried:
        outcome.log.append("room: the drive filled up during the run; made room and ran again")
    if room.removed or room.bytes_freed:
        outcome.made_room = removed_backups([snapshot_time(i) for i in room.removed], room.bytes_freed,
                                            clock.now())
        outcome.log.append(f"room: removed {', '.join(room.removed) or 'unused backup data'}: {outcome.made_room}")


def _finish_backup(job: Job, bset: BackupSet, result, outcome: Outcome, history: History, clock: Clock,
                   retain: Callable[..., None] | None = None) -> None:
    """After the engine's run: a damaged read-back fails the run; then retention, flush, history.

    ``retain(job, set, clock, log, boundary)``: retention (default: a local set's; core.agent.remote_jobs
    gives a remote set's, and there is no drive to flush then)."""
    from core.engine.backup import BackupStatus

    log = outcome.log
    outcome.snapshot_id = result.snapshot_id
    outcome.scan = result.scan
    if result.status is BackupStatus.DAMAGED:
        # The snapshot is committed but reading it back found a mismatch: loud, never "ok".
        what = "; ".join(f"{p}: {r}" for p, r in result.damaged[:5])
        raise DamagedSet(what=f"{plural(len(result.damaged), 'file')} read back wrong after the backup ({what})")
    outcome.status = RunStatus(result.status.value)   # a committed backup: ok or warnings
    outcome.files_scanned = result.files_scanned
    outcome.files_copied, outcome.bytes_copied = result.files_copied, result.bytes_copied
    outcome.warnings = len(result.warnings)
    outcome.warning_summary = warning_summary(result.warnings)
    log.append(f"snapshot {result.snapshot_id}: {result.files_scanned} files scanned, "
               f"{result.files_copied} copied ({result.bytes_copied} bytes)")
    if result.warnings:
        log.append(warnings_text(result.warnings).rstrip("\n"))
    try:
        (retain or _apply_retention)(job, bset, clock, log, outcome.target.mount)
    except PlugbackError as err:
        # The new snapshot is committed; a failed clean-up is a warning, not a failed backup.
        outcome.status, outcome.warnings = RunStatus.WARNINGS, outcome.warnings + 1
        outcome.warning_summary = ", ".join(filter(None, [outcome.warning_summary,
                                                          "old snapshots could not be cleaned up"]))
        log.append(f"warning: retention: {err.message}")
    if retain is None:
        flush_drive(outcome.target)
        outcome.flushed = True
    # The log goes in before the final status, so whoever sees the run ended also sees its log.
    history.append_log(outcome.run_id, "\n".join(log))
    history.finish(outcome.run_id, RunEnd(status=outcome.status, ended=clock.now(), snapshot_id=result.snapshot_id,
                                          files_scanned=result.files_scanned, bytes_scanned=result.bytes_scanned,
                                          files_copied=result.files_copied, bytes_copied=result.bytes_copied,
                                          warnings=outcome.warnings))


def _record_failure(err: BaseException, outcome: Outcome, history: History, clock: Clock) -> bool:
    """Record a run that ended with ``err``; False when ``err`` must go on up (KeyboardInterrupt...)."""
    log, run_id = outcome.log, outcome.run_id
    if isinstance(err, DriveGone):
        outcome.status = RunStatus.DRIVE_REMOVED
    elif isinstance(err, Cancelled):
        outcome.status = RunStatus.CANCELLED
    else:
        outcome.status = RunStatus.FAILED
    if isinstance(err, PlugbackError):
        outcome.error = err
    elif isinstance(err, Exception):
        # A bug, not an expected failure: keep the traceback in the run's log.
        log.append("".join(traceback.format_exception(err)).rstrip("\n"))
        outcome.error = PlugbackError(f"Unexpected error: {err!r}. The details are in the run's log.")
    else:
        history.append_log(run_id, "\n".join(log))
        history.finish(run_id, RunEnd(status=RunStatus.CANCELLED, ended=clock.now(), error="interrupted"))
        return False
    log.append(f"{outcome.status}: {outcome.error.message}")
    history.append_log(run_id, "\n".join(log))
    history.finish(run_id, RunEnd(status=outcome.status, ended=clock.now(), error=outcome.error.message,
                                  error_code=outcome.error.code, snapshot_id=outcome.snapshot_id,
                                  files_scanned=outcome.files_scanned, files_copied=outcome.files_copied,
                                  bytes_copied=outcome.bytes_copied, warnings=outcome.warnings))
    return True
