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
from core.agent.history import History, RunEnd, warnings_text
from core.engine.layout import SetLayout, drive_dir, drive_set_path
from core.engine.progress import CancelToken, Clock, Progress, no_progress
from core.errors import Cancelled, DamagedSet, DriveGone, DriveNotConnected, PlugbackError

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
    """How a run ended. ``status`` is a history status; ``flushed`` = safe to unplug."""

    run_id: int
    job: str
    status: str
    target: Target
    snapshot_id: str | None = None
    files_copied: int = 0
    bytes_copied: int = 0
    files_scanned: int = 0
    warnings: int = 0
    error: PlugbackError | None = None
    flushed: bool = False
    log: list[str] = field(default_factory=list)


def resolve_target(job: Job, config: Config, *, host: str | None = None, mounts=None) -> Target:
    """The set folder for ``job`` now; raises DriveNotConnected when its drive is absent."""
    dest = job.destination
    if dest.path:
        return Target(set_path=Path(dest.path))
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

    The engine fsyncs what it writes; ``sync`` here also covers file-system
    metadata and FUSE drives (exFAT), whose daemon flushes on sync.
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


def remember_set_passphrase(set_path: Path, passphrase: str, log: list[str]) -> None:
    """Keep the new set's passphrase in the keyring under its set_id, so unattended runs open it."""
    from core.agent import keys
    from core.agent.keys import make_unlocker
    from core.engine.repo import BackupSet
    from core.errors import KeyringUnavailable

    try:
        bset = BackupSet.open(set_path, make_unlocker(keys.Secret.passphrase(passphrase)))
        keys.store_passphrase(bset.set_id, passphrase)
    except KeyringUnavailable as err:
        log.append(f"warning: {err.message}")


def retention_policy(job: Job):
    """The job's retention as the engine's RetentionPolicy; none configured = the Time Machine-like default."""
    from core.engine.retention import RetentionPolicy

    if not job.retention:
        return RetentionPolicy.default()
    return RetentionPolicy.from_dict({k.removeprefix("keep_"): v for k, v in job.retention.items()})


def _apply_retention(job: Job, set_path: Path, clock, unlock, log: list[str]) -> None:
    from core.engine.retention import forget

    result = forget(set_path, retention_policy(job), prune=True, clock=clock, unlock=unlock)
    if result.forgotten:
        log.append(f"retention: forgot {len(result.forgotten)} old snapshot(s), freed {result.bytes_freed} bytes")


def verify_job(job: Job, config: Config, history: History, *, target: Target | None = None,
               progress: Callable[[Progress], None] | None = None, clock: Clock | None = None) -> Outcome:
    """Read back everything in the job's set and compare with the manifests (the monthly check).

    Recorded in history as a run of kind ``verify``: ``ok``, or ``failed`` with
    error code ``damaged`` naming what does not match.
    """
    from core.agent.keys import make_unlocker
    from core.engine.verify import verify

    clock = clock or Clock()
    target = target or resolve_target(job, config)
    run_id = history.start(job.name, clock.now(), drive_id=target.drive_id, kind="verify")
    outcome = Outcome(run_id=run_id, job=job.name, status="failed", target=target)
    try:
        result = verify(target.set_path, read_all=True, unlock=make_unlocker(), progress=progress or no_progress)
        outcome.log.append(f"checked {result.snapshots} snapshot(s), {result.contents} contents, "
                           f"{result.bytes_read} bytes read")
        outcome.log.extend(result.notices)
        if result.damaged:
            outcome.log.extend(f"damaged: {what}: {why}" for what, why in result.damaged)
            what = "; ".join(w for w, _ in result.damaged[:5])
            raise DamagedSet(what=f"{len(result.damaged)} file(s) do not match their backup ({what})")
        outcome.status = "ok"
        history.append_log(run_id, "\n".join(outcome.log))
        history.finish(run_id, RunEnd(status="ok", ended=clock.now()))
    except PlugbackError as err:
        outcome.status = "drive_removed" if isinstance(err, DriveGone) else "failed"
        outcome.error = err
        outcome.log.append(f"{outcome.status}: {err.message}")
        history.append_log(run_id, "\n".join(outcome.log))
        history.finish(run_id, RunEnd(status=outcome.status, ended=clock.now(), error=err.message,
                                      error_code=err.code))
    return outcome


def run_job(job: Job, config: Config, history: History, *, target: Target | None = None,
            host: str | None = None, progress: Callable[[Progress], None] | None = None,
            cancel: CancelToken | None = None, clock: Clock | None = None,
            passphrase: str | None = None) -> Outcome:
    """Run ``job`` once and record it in ``history``; returns the outcome, never raises PlugbackError.

    DriveNotConnected is raised before anything is recorded when the job's
    drive is absent (nothing ran). A drive pulled mid-run ends the run as
    ``drive_removed``; a cancel as ``cancelled``; other expected errors as
    ``failed`` with the error's message. ``passphrase`` encrypts a new set of an
    ``encrypt`` job; existing encrypted sets are opened with the keyring /
    environment secret (core.agent.keys), never a prompt.
    """
    from core.agent.keys import make_unlocker
    from core.engine.backup import backup  # the engine; imported late so the agent starts light

    clock = clock or Clock()
    target = target or resolve_target(job, config, host=host)
    run_id = history.start(job.name, clock.now(), drive_id=target.drive_id)
    outcome = Outcome(run_id=run_id, job=job.name, status="failed", target=target)
    log = outcome.log
    log.append(f"backup of {', '.join(job.sources)} to {target.set_path}")
    unlock = make_unlocker()
    new_encrypted_set = job.encrypt and not SetLayout(target.set_path).meta.exists()
    if new_encrypted_set and passphrase is None:
        passphrase = new_set_passphrase(job.name)
    try:
        result = backup(target.set_path, [Path(s) for s in job.sources], excludes=tuple(job.excludes),
                        job=job.name, host=host or host_name(), encrypt=job.encrypt, passphrase=passphrase,
                        unlock=unlock, progress=progress or no_progress, cancel=cancel, clock=clock,
                        verify=job.verify != "none", create_parents=True)
        if new_encrypted_set and passphrase:
            remember_set_passphrase(target.set_path, passphrase, log)
        outcome.snapshot_id = result.snapshot_id
        if result.status == "damaged":
            # The snapshot is committed but reading it back found a mismatch: loud, never "ok".
            what = "; ".join(f"{p}: {r}" for p, r in result.damaged[:5])
            raise DamagedSet(what=f"{len(result.damaged)} file(s) read back wrong after the backup ({what})")
        outcome.status = result.status
        outcome.files_scanned = result.files_scanned
        outcome.files_copied, outcome.bytes_copied = result.files_copied, result.bytes_copied
        outcome.warnings = len(result.warnings)
        log.append(f"snapshot {result.snapshot_id}: {result.files_scanned} files scanned, "
                   f"{result.files_copied} copied ({result.bytes_copied} bytes)")
        if result.warnings:
            log.append(warnings_text(result.warnings).rstrip("\n"))
        try:
            _apply_retention(job, target.set_path, clock, unlock, log)
        except PlugbackError as err:
            # The new snapshot is committed; a failed clean-up is a warning, not a failed backup.
            outcome.status, outcome.warnings = "warnings", outcome.warnings + 1
            log.append(f"warning: retention: {err.message}")
        flush_drive(target)
        outcome.flushed = True
        # The log goes in before the final status, so whoever sees the run ended also sees its log.
        history.append_log(run_id, "\n".join(log))
        history.finish(run_id, RunEnd(status=outcome.status, ended=clock.now(), snapshot_id=result.snapshot_id,
                                      files_scanned=result.files_scanned, bytes_scanned=result.bytes_scanned,
                                      files_copied=result.files_copied, bytes_copied=result.bytes_copied,
                                      warnings=outcome.warnings))
    except BaseException as err:
        if isinstance(err, DriveGone):
            outcome.status = "drive_removed"
        elif isinstance(err, Cancelled):
            outcome.status = "cancelled"
        else:
            outcome.status = "failed"
        if isinstance(err, PlugbackError):
            outcome.error = err
        elif isinstance(err, Exception):
            # A bug, not an expected failure: keep the traceback in the run's log.
            log.append(traceback.format_exc().rstrip("\n"))
            outcome.error = PlugbackError(f"Unexpected error: {err!r}. The details are in the run's log.")
        else:
            history.append_log(run_id, "\n".join(log))
            history.finish(run_id, RunEnd(status="cancelled", ended=clock.now(), error="interrupted"))
            raise
        log.append(f"{outcome.status}: {outcome.error.message}")
        history.append_log(run_id, "\n".join(log))
        history.finish(run_id, RunEnd(status=outcome.status, ended=clock.now(), error=outcome.error.message,
                                      error_code=outcome.error.code, snapshot_id=outcome.snapshot_id,
                                      files_scanned=outcome.files_scanned, files_copied=outcome.files_copied,
                                      bytes_copied=outcome.bytes_copied, warnings=outcome.warnings))
    return outcome
