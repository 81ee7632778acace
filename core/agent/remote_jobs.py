"""Jobs whose destination is a cloud or network location (``rclone:REMOTE:PATH``, issue #13).

Such a job runs on its schedule or from "Back up now" (nothing is plugged in), on
the runner of its remote (``Destination.key()``: one writer per destination). Its
set is a remote set (core/engine/remote), always encrypted: a new one gets the
passphrase the job was added with (keyring ``job:NAME`` or PLUGBACK_PASSPHRASE),
then remembered under the set's id like a drive job's.

While the remote cannot be reached (:class:`~core.errors.RemoteUnavailable`: no
network, the server down) the job *waits*: a run that could not even open the set
records nothing, one cut off part-way is recorded as failed (nothing half-committed:
the engine commits the manifest last), and either way the job is tried again
:data:`RETRY` later by the scheduler's tick, with "waiting for the network" in its
status. Every other error ends the run as failed with its one-line message.

Progress is the engine's, plus what was uploaded and how fast (:class:`UploadProgress`).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from core.agent.history import SUCCESS, History, RunStatus, Trigger
from core.agent.jobs import Outcome, Target, _finish_backup, _record_failure, new_set_passphrase, retention_policy
from core.engine.progress import CancelToken, Clock, Progress, no_progress
from core.errors import PassphraseNeeded, PlugbackError, RcloneFailed, RemoteUnavailable, SetNeedsConfirmation

if TYPE_CHECKING:
    from core.agent.config import Job
    from core.engine.remote.rset import RemoteSet

#: How long a job whose remote could not be reached waits before it is tried again.
RETRY = timedelta(minutes=5)
#: The errors that mean "not reachable now" (the job waits), not "wrong" (the run fails).
UNREACHABLE = (RemoteUnavailable, RcloneFailed)
#: More rclone flags for every remote job (tests shorten rclone's own retries; empty: rclone's defaults).
RCLONE_FLAGS: tuple[str, ...] = ()
#: rclone's flags where a person waits (browse, unlock, Test connection): rclone itself does not
#: retry a refused connection (its default: 10 low-level tries, ~5 s per operation) and gives up
#: connecting after 15 s (default 1 min); Plugback's own retries (``Retrying``) do the rest.
INTERACTIVE_FLAGS = ("--low-level-retries", "1", "--contimeout", "15s")


def is_remote_job(job: "Job") -> bool:
    return bool(job.destination.remote)


@dataclass
class UploadProgress(Progress):
    """The engine's progress, with the bytes uploaded so far and the upload speed (bytes/s)."""

    uploaded: int = 0
    speed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class _Counting:
    """A storage backend that counts the bytes it puts (the rest goes to ``inner`` as it is)."""

    def __init__(self, inner):
        self.inner = inner
        self.where = inner.where
        self.sent = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def _add(self, n: int) -> None:
        with self._lock:
            self.sent += n

    @property
    def can_stage(self) -> bool:
        """Stages (storage.base.Stages) when ``inner`` does: the staged bytes are counted here too."""
        from core.engine.storage.base import can_stage

        return can_stage(self.inner)

    def put(self, name: str, data) -> None:
        self.inner.put(name, self._counted(data))

    def stage(self, name: str, data):
        return self.inner.stage(name, self._counted(data))

    def _counted(self, data):
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._add(len(data))
            return data

        def counted() -> Iterable[bytes]:
            for chunk in data():
                self._add(len(chunk))
                yield chunk

        return counted


def _metered(progress: Callable[[Progress], None], backend: _Counting, clock: Clock) -> Callable[[Progress], None]:
    """``progress`` fed :class:`UploadProgress`: the engine's report plus ``backend``'s bytes sent and speed."""
    started = clock.monotonic()

    def report(p: Progress) -> None:
        elapsed = clock.monotonic() - started
        speed = int(backend.sent / elapsed) if elapsed > 0 else 0
        progress(UploadProgress(**asdict(p), uploaded=backend.sent, speed=speed))

    return report


def open_remote_set(job: "Job", backend, *, clock: Clock, unlock, passphrase: str | None,
                    log: list[str]) -> "RemoteSet":
    """The job's remote set on ``backend``: opened (only the job's own, when it has one; unlocked
    later, by the backup: ``RemoteSet.open_started``), or created (``RemoteSet.create_started``:
    finished in the background, as for the command line)."""
    from core.agent import keys
    from core.agent.adopt import same_set
    from core.engine.remote.rset import RemoteSet
    from core.engine.scan import plan_sources
    from core.errors import KeyringUnavailable

    if RemoteSet.exists(backend):
        # Unlocked by the backup, its scan and small files' reads beside the scrypt, as for the command
        # line (core/engine/remote/ahead.py); plugback.json is read and checked here, and its set id.
        rset = RemoteSet.open_started(backend, _or_job_passphrase(unlock, job, passphrase))
        if job.set_id and not same_set(job.set_id, rset.set_id):
            rset.close()
            raise SetNeedsConfirmation(job=job.name, path=job.destination.remote,
                                       facts=f"set {rset.set_id}, not this job's {job.set_id}")
        return rset
    if job.set_id:   # as for a drive or folder: an empty location (the job edited to a new folder) gets a new set
        log.append(f"no backup set at {job.destination.remote}: a new one is made there")
    plan_sources(job.sources)   # a typo in a source leaves no empty set behind
    passphrase = passphrase or new_set_passphrase(job.name)
    if not passphrase:
        raise PassphraseNeeded()
    # As `plugback backup --to` does (core/cli/remote_cmds.py): the set's scrypt and plugback.json run in
    # a thread beside the scan; the engine's first write waits for them (RemoteSet.created). The keyring
    # gets the passphrase now: a backup cut off later still leaves a set this computer can open.
    rset = RemoteSet.create_started(backend, clock.now(), passphrase)
    try:
        keys.store_passphrase(rset.set_id, passphrase)
    except KeyringUnavailable as err:
        log.append(f"warning: {err.message}")
    return rset


def _or_job_passphrase(unlock, job: "Job", passphrase: str | None):
    """``unlock``, else the passphrase the job was added with (keyring ``job:NAME``): a job added again
    on a new computer finds its set with it. A set that opens with it is the user's own (an unbound
    job then binds it; a bound one still checks the set id)."""
    from core.agent.keys import Secret, make_unlocker
    from core.errors import WrongPassphrase

    def unlock_set(enc: dict, set_id: str):
        try:
            return unlock(enc, set_id)
        except (PassphraseNeeded, WrongPassphrase):
            given = passphrase or new_set_passphrase(job.name)
            if not given:
                raise
            return make_unlocker(Secret.passphrase(given, "the job's passphrase"))(enc, set_id)

    return unlock_set


def open_backend(spec: str, clock: Clock | None = None, *, interactive: bool = False, attempts: int = 6):
    """The storage of a remote job's ``spec``: rclone (with :data:`RCLONE_FLAGS`), with retries.
    ``interactive`` (a person waits): an unreachable remote fails at once ("Can't reach ...";
    ``Retrying(fail_fast=True)``, :data:`INTERACTIVE_FLAGS`), other transient errors are retried."""
    from core.engine.storage import RcloneBackend, Retrying, parse_spec

    flags = RCLONE_FLAGS + INTERACTIVE_FLAGS if interactive else RCLONE_FLAGS
    return Retrying(RcloneBackend(parse_spec(spec), extra_args=flags), clock, attempts=attempts,
                    fail_fast=interactive)


def open_remote(spec: str, unlock, *, interactive: bool = False) -> "RemoteSet":
    """The remote set at ``spec``, opened with ``unlock`` (its rclone stopped again if it does not open).
    The caller closes it (``with``). ``interactive``: an unreachable remote fails at once while the set
    opens (:func:`open_backend`); once open, what follows (a restore) keeps its retries."""
    from core.engine.remote.rset import RemoteSet

    backend = open_backend(spec, interactive=interactive)
    rset = RemoteSet.open_closing(backend, unlock)
    backend.fail_fast = False
    return rset


def run_remote_job(job: "Job", history: History, *, progress: Callable[[Progress], None] | None = None,
                   cancel: CancelToken | None = None, clock: Clock | None = None, passphrase: str | None = None,
                   bind: Callable[[str, str], None] | None = None, trigger: Trigger = Trigger.MANUAL,
                   unlock=None) -> Outcome:
    """Run the remote job once and record it in ``history``; never raises PlugbackError but one:
    UNREACHABLE before anything ran (the set could not be opened), with nothing recorded."""
    from core.agent.keys import make_unlocker

    clock = clock or Clock()
    spec = job.destination.remote
    assert spec is not None
    log = [f"backup of {', '.join(job.sources)} to {spec}"]
    backend: _Counting | None = None
    try:
        backend = _Counting(open_backend(spec, clock))
        rset = open_remote_set(job, backend, clock=clock, unlock=unlock or make_unlocker(),
                               passphrase=passphrase, log=log)
    except BaseException as err:
        if backend is not None:
            backend.close()
        if isinstance(err, UNREACHABLE):
            raise
        outcome = _started(job, history, clock, trigger, spec, log)
        if not _record_failure(err, outcome, history, clock):
            raise
        return outcome
    try:
        outcome = _started(job, history, clock, trigger, spec, log)
        try:
            with rset:
                _backup(job, rset, outcome, history, clock, bind,
                        _metered(progress or no_progress, backend, clock), cancel or CancelToken())
        except BaseException as err:
            if not _record_failure(err, outcome, history, clock):
                raise
        return outcome
    finally:
        backend.close()


def _started(job: "Job", history: History, clock: Clock, trigger: Trigger, spec: str, log: list[str]) -> Outcome:
    run_id = history.start(job.name, clock.now(), trigger=trigger)
    # The Target names the location for the run's log; there is no drive (no mount, nothing to flush).
    outcome = Outcome(run_id=run_id, job=job.name, status=RunStatus.FAILED, target=Target(set_path=Path(spec)))
    outcome.log.extend(log)
    return outcome


def _backup(job: "Job", rset: "RemoteSet", outcome: Outcome, history: History, clock: Clock, bind,
            progress: Callable[[Progress], None], cancel: CancelToken) -> None:
    """The engine's remote backup, then the run's bookkeeping (core.agent.jobs._finish_backup)."""
    from core.agent.adopt import canonical_id, same_set
    from core.engine.backup_options import BackupOptions
    from core.engine.remote.backup import backup

    if not same_set(job.set_id, rset.set_id):
        rset.unlock()   # a job binds only a set its passphrase opens (the backup unlocks a bound job's set)
        job.set_id = canonical_id(rset.set_id)
        outcome.log.append(f"this job's backup set is {rset.set_id}")
        if bind is not None:
            bind(job.name, rset.set_id)
    result = backup(rset, job.sources, BackupOptions(
        excludes=job.excludes, job=job.name, verify=job.verify != "none", progress=progress, cancel=cancel,
        clock=clock))
    _finish_backup(job, rset, result, outcome, history, clock, _retain)   # type: ignore[arg-type]


def _retain(job: "Job", rset: "RemoteSet", clock: Clock, log: list[str], _boundary) -> None:
    """The job's retention on its remote set: forget, then prune what no snapshot names."""
    from core.agent.words import plural
    from core.engine.remote.check import forget

    result = forget(rset, retention_policy(job), prune=True, clock=clock)
    if result.forgotten:
        log.append(f"retention: forgot {plural(len(result.forgotten), 'old snapshot')}, "
                   f"freed {plural(result.bytes_freed, 'byte')}")


class Waiting:
    """The remote jobs waiting for their remote to be reachable: name -> (try again at, why)."""

    def __init__(self) -> None:
        self._jobs: dict[str, tuple[datetime, str]] = {}
        self._lock = threading.Lock()

    def wait(self, name: str, until: datetime, reason: str) -> None:
        with self._lock:
            self._jobs[name] = (until, reason)

    def clear(self, name: str) -> None:
        with self._lock:
            self._jobs.pop(name, None)

    def get(self, name: str) -> tuple[datetime, str] | None:
        with self._lock:
            return self._jobs.get(name)

    def due(self, now: datetime) -> list[str]:
        """The jobs whose wait is over (they stay listed until their next run ends)."""
        with self._lock:
            return [n for n, (until, _) in self._jobs.items() if until <= now]

    def status(self, name: str) -> dict | None:
        """The ``waiting`` member of the job's status (docs/ipc.md), or None."""
        entry = self.get(name)
        if entry is None:
            return None
        return {"reason": "network", "text": "waiting for the network", "retry_at": entry[0].isoformat(),
                "error": entry[1]}


def waiting_of(agent) -> Waiting:
    """The agent's :class:`Waiting` (made when first needed)."""
    waits = getattr(agent, "remote_waiting", None)
    if waits is None:
        waits = agent.remote_waiting = Waiting()
    return waits


def execute(agent, job: "Job", trigger: Trigger, cancel, progress) -> None:
    """Run a remote job on its runner's thread (the agent's ``_execute``) and tell the user how it went."""
    waits = waiting_of(agent)
    try:
        outcome = run_remote_job(job, agent.history, progress=progress, cancel=cancel, clock=agent.clock,
                                 bind=lambda n, set_id: agent.bind_set(n, set_id), trigger=trigger,
                                 unlock=agent._unlocker())
    except UNREACHABLE as err:
        _wait(agent, waits, job, err, first=waits.get(job.name) is None)
        return
    if isinstance(outcome.error, UNREACHABLE):   # cut off part-way: recorded as failed, and tried again
        _wait(agent, waits, job, outcome.error, first=waits.get(job.name) is None)
        return
    waits.clear(job.name)
    agent._notify_outcome(job, outcome)
    if outcome.status in SUCCESS:
        agent.rolling.after_backup(job)   # the rolling check of the remote set (core.agent.remote_rolling)


def _wait(agent, waits: Waiting, job: "Job", err: PlugbackError, *, first: bool) -> None:
    """Mark ``job`` waiting for the network; say so once (not at every retry)."""
    waits.wait(job.name, agent.clock.now() + RETRY, err.message)
    if first:
        agent.notifier.notify(f"{job.name}: waiting for the network",
                              f"{job.destination.remote} cannot be reached now; Plugback tries again every "
                              f"{int(RETRY.total_seconds() // 60)} minutes.", "info")
    agent.changed()


def retry_due(agent) -> list[str]:
    """Queue the waiting remote jobs whose wait is over (the scheduler's tick); their names."""
    from core.agent.history import RunKind

    queued = []
    for name in waiting_of(agent).due(agent.clock.now()):
        job = agent.config.job(name)
        if job is None or not is_remote_job(job):
            waiting_of(agent).clear(name)
            continue
        if agent.runner_at(job.destination.key()).enqueue(job.name, RunKind.BACKUP, Trigger.SCHEDULE):
            queued.append(job.name)
    return queued


