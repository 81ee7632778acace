"""A job is bound to the set it made; another set is used only after the user confirms (issue #10).

The drive is untrusted input: a stranger's stick can carry ``Plugback/drive.json``
and a set at ``Plugback/<this computer>/<a default job name>/``. So a job
records the id of the set it created (``Job.set_id`` in config.json), and a run
that finds a set with another id (or any set, when the job has none yet) fails
with :class:`~core.errors.SetNeedsConfirmation` instead of writing into it.
The user confirms after seeing the set's computer, job and newest snapshot
(the window's "Use this backup", ``adopt_set`` over IPC, ``plugback job adopt``).

One allowance, for jobs made before set ids were recorded: a job without a
``set_id`` owns the set when this computer's history holds a backup of that job
into one of the set's snapshots (snapshot ids carry a random part a stranger
cannot know). Nothing here decrypts anything: a set's facts come from its
``plugback.json`` and its snapshot file names, and for an encrypted set the
binding is checked before any passphrase is tried.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, cast

from core.agent.words import plural
from core.engine.repo import BackupSet
from core.errors import KeyringUnavailable, NotFound, PlugbackError, SetNeedsConfirmation, UsageError

if TYPE_CHECKING:
    from core.engine.crypto import SetKeys

#: How far back the history is searched for a job's own snapshots (jobs from before set ids).
HISTORY_LOOKBACK = 10000
# Stands in for the keys of an encrypted set that is only looked at (never used to decrypt).
_LOCKED = cast("SetKeys", object())


def same_set(a: str | None, b: str | None) -> bool:
    """Whether two set ids name the same set (a set's plugback.json may spell a UUID its own way)."""
    try:
        return a is not None and b is not None and uuid.UUID(a) == uuid.UUID(b)
    except ValueError:
        return False


def canonical_id(set_id: str) -> str:
    """The set id as config.json keeps it (lower-case, with dashes)."""
    return str(uuid.UUID(set_id))


@dataclass(frozen=True)
class SetFacts:
    """What the user sees before adopting a set: whose it is and how recent."""

    set_id: str
    path: str
    encrypted: bool
    host: str | None          # None when encrypted (an encrypted set keeps no names in the clear)
    job: str | None
    snapshots: int
    newest: str | None        # the newest snapshot's id
    newest_time: str | None   # ISO (UTC), from the id
    newest_files: int | None  # None when encrypted or unreadable

    def describe(self) -> str:
        """One line: "made on computer 'laptop' by job 'My files', newest snapshot 2026-11-22 01:30 UTC"."""
        if self.encrypted:
            who = "an encrypted backup (its computer and job cannot be read without its passphrase)"
        else:
            who = f"made on computer '{self.host or '?'}' by job '{self.job or '?'}'"
        if self.newest_time is None:
            return f"{who}, with no snapshots"
        when = datetime.fromisoformat(self.newest_time).strftime("%Y-%m-%d %H:%M UTC")
        files = f", {self.newest_files} files" if self.newest_files is not None else ""
        return f"{who}, newest snapshot {when}{files} ({plural(self.snapshots, 'snapshot')})"

    def to_dict(self) -> dict:
        """The IPC shape (``set_info``), with :meth:`describe` as ``summary``."""
        return {**asdict(self), "summary": self.describe()}


def open_locked(root: Path) -> BackupSet:
    """The set at ``root`` for looking only: metadata and snapshot ids, nothing decrypted."""
    return BackupSet.open(root, lambda enc, set_id: _LOCKED)


def _id_time(snapshot_id: str) -> str | None:
    try:
        return datetime.strptime(snapshot_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).isoformat()
    except ValueError:
        return None


def read_facts(root: Path) -> SetFacts:
    """The facts of the set at ``root`` (NotASet, DriveFileDamaged... from the engine's decoder)."""
    bset = open_locked(Path(root))
    encrypted = bool(bset.meta.get("encryption"))
    ids = bset.snapshot_ids()
    newest = ids[-1] if ids else None
    files = None
    if newest and not encrypted:
        try:
            files = bset.header(newest).totals.get("files")   # the header only (issue #11)
        except PlugbackError:
            files = None   # a damaged newest manifest: the id and time still say how recent it is
    meta = bset.meta
    return SetFacts(set_id=bset.set_id, path=str(root), encrypted=encrypted,
                    host=None if encrypted else meta.get("host"), job=None if encrypted else meta.get("job"),
                    snapshots=len(ids), newest=newest, newest_time=_id_time(newest) if newest else None,
                    newest_files=files if isinstance(files, int) else None)


def needs_confirmation(job_name: str, root: Path) -> SetNeedsConfirmation:
    """The error a run of ``job_name`` ends with when the set at ``root`` is not its own."""
    try:
        facts = read_facts(root).describe()
    except PlugbackError as err:
        facts = f"it cannot be read: {err.message}"
    return SetNeedsConfirmation(job=job_name, path=str(root), facts=facts)


def made_by(job_name: str, root: Path, history) -> bool:
    """Whether this computer's history has a backup of ``job_name`` into a snapshot of the set at ``root``."""
    if history is None:
        return False
    recorded = {r.snapshot_id for r in history.runs(job_name, limit=HISTORY_LOOKBACK) if r.snapshot_id}
    return bool(recorded) and not recorded.isdisjoint(open_locked(root).snapshot_ids())


def require_own(job, root: Path, set_id: str, history=None) -> None:
    """Raise SetNeedsConfirmation unless the set ``set_id`` at ``root`` is ``job``'s own."""
    if job.set_id:
        if same_set(job.set_id, set_id):
            return
    elif made_by(job.name, root, history):
        return
    raise needs_confirmation(job.name, root)


def open_own(job, root: Path, unlock, history=None) -> BackupSet:
    """Open the existing set at ``root`` for ``job``'s run, only if it is the job's own.

    For an encrypted set the check runs before any secret is tried (a stranger's
    encrypted set gets neither a keyring lookup nor PLUGBACK_PASSPHRASE).
    """
    def guarded(enc: dict, set_id: str):
        require_own(job, root, set_id, history)
        return unlock(enc, set_id)

    bset = BackupSet.open(root, guarded)
    if not bset.encrypted:
        require_own(job, root, bset.set_id, history)
    return bset


def adoption_target(job, config, drive: str | None = None, mounts=None):
    """``(the job as it runs on that drive, where its set is there)``: what "Review the backup on the
    drive…" and ``plugback job adopt`` look at and bind. ``drive`` (an id or a label) is one of the
    job's drives (issue #14: each drive in rotation holds a set of its own); None: the first of them
    connected now, as a run would pick. DriveNotConnected when that drive is not; UsageError when
    ``drive`` is not one of the job's."""
    from core.agent.drives import find_drive
    from core.agent.jobs import resolve_target

    ids = job.destination.drive_ids
    if drive is not None:
        found = config.drive(drive)
        if found is None or found["drive_id"] not in ids:
            names = ", ".join(f"'{config.drive_label(i)}'" for i in ids) or "none: it backs up to a folder"
            raise UsageError(f"'{job.name}' does not back up to a drive '{drive}' (its drives: {names}).")
        drive_id: str | None = found["drive_id"]
    else:
        drive_id = next((i for i in ids if find_drive(i, mounts) is not None), ids[0] if ids else None)
    on = job.on_drive(drive_id) if drive_id else job
    return on, resolve_target(on, config, mounts=mounts)


def bind(config, job_name: str, set_id: str) -> None:
    """A config edit: ``job_name`` now owns the set ``set_id`` (its first run made it, or the user adopted it)."""
    job = config.job(job_name)
    if job is None:
        raise NotFound(what="job", name=job_name)
    job.set_id = canonical_id(set_id)


def check_unchanged(facts: SetFacts, set_id: str) -> None:
    """Refuse to adopt when the set at the destination is not the one the user was shown."""
    if not same_set(facts.set_id, set_id):
        raise UsageError("The backup at the destination is not the one you confirmed (was the drive "
                         "changed?). Look at it again before using it.")


def keyring_entries(removed, remaining_jobs) -> list[str]:
    """The keyring entries to delete with the job ``removed``: its pending passphrase (``job:NAME``)
    and its set's passphrase, unless a remaining job uses that set."""
    from core.agent.jobs import job_key_name

    names = [job_key_name(removed.name)]
    # Each drive in rotation holds a set of its own (issue #14): those go too.
    in_use = [j.on_drive(d).set_id for j in remaining_jobs for d in j.destination.drive_ids] + \
        [j.set_id for j in remaining_jobs]
    for set_id in [removed.set_id, *(r.get("set_id") for r in removed.destination.rotation)]:
        if set_id and not any(same_set(u, set_id) for u in in_use):
            names.append(set_id)
    return names


def forget_secrets(removed, remaining_jobs, warn: Callable[[str], None]) -> list[str]:
    """Delete the keyring entries of the removed job (:func:`keyring_entries`); returns the deleted names.

    A keyring that cannot be reached is reported through ``warn``: the job is removed all the same.
    """
    from core.agent import keys

    deleted = []
    for name in keyring_entries(removed, remaining_jobs):
        try:
            if keys.delete_passphrase(name):
                deleted.append(name)
        except KeyringUnavailable as err:
            warn(f"The passphrase of '{removed.name}' could not be removed from the keyring: {err.message}")
            break
    return deleted
