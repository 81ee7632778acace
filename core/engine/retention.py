"""Retention: which snapshots to keep, forgetting the rest, and pruning content nobody names.

Policies work like restic's ``forget``: keep the newest N, and the newest
snapshot of each of the last N hours / days / weeks / months (-1 = no limit),
plus everything within a time window. The newest snapshot is always kept.
Order (crash safety): manifests are deleted first, unreferenced objects after,
so a crash leaves at worst unreferenced objects, never a snapshot without its
content.
"""

from __future__ import annotations

import shutil
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from core.engine import scratch
from core.engine.lock import SetLock
from core.engine.manifest import FILE
from core.engine.progress import Clock
from core.engine.repo import BackupSet
from core.errors import PlugbackError, UsageError


@dataclass(frozen=True)
class RetentionPolicy:
    """How many to keep per kind; None = not used, -1 = no limit."""

    last: int | None = None
    hourly: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    within_hours: int | None = None

    @classmethod
    def default(cls) -> "RetentionPolicy":
        """Like Time Machine: everything for 24 hours, daily for 30 days, weekly beyond."""
        return cls(within_hours=24, daily=30, weekly=-1)

    def is_empty(self) -> bool:
        return all(v is None for v in self.__dict__.values())

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> "RetentionPolicy":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise UsageError(f"Unknown retention setting(s): {', '.join(sorted(unknown))}.")
        for k, v in d.items():
            if v is not None and (not isinstance(v, int) or v < -1):
                raise UsageError(f"Retention '{k}' must be a whole number (or -1 for no limit).")
        return cls(**d)


_BUCKETS = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: t.isocalendar()[:2],
    "monthly": lambda t: (t.year, t.month),
}


def snapshot_time(snapshot_id: str) -> datetime:
    from datetime import timezone

    return datetime.strptime(snapshot_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def choose(ids: list[str], policy: RetentionPolicy, now: datetime) -> tuple[list[str], list[str]]:
    """(keep, forget) for snapshot ids (oldest first). Pure: table-tested."""
    if not ids:
        return [], []
    newest_first = sorted(ids, reverse=True)
    keep = {newest_first[0]}
    if policy.last:
        keep.update(newest_first[: policy.last] if policy.last > 0 else newest_first)
    if policy.within_hours is not None:
        limit = now - timedelta(hours=policy.within_hours)
        keep.update(i for i in ids if snapshot_time(i) >= limit)
    for kind, bucket in _BUCKETS.items():
        count = getattr(policy, kind)
        if not count:
            continue
        seen: list = []
        for sid in newest_first:
            b = bucket(snapshot_time(sid).astimezone())   # the user's calendar, not UTC's
            if seen and seen[-1] == b:
                continue
            if count > 0 and len(seen) >= count:
                break
            seen.append(b)
            keep.add(sid)
    return sorted(keep), sorted(set(ids) - keep)


@dataclass
class ForgetResult:
    kept: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    objects_removed: int = 0
    bytes_freed: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def forget(bset: BackupSet, policy: RetentionPolicy, *, prune: bool = True, dry_run: bool = False,
           clock: Clock | None = None, boundary: Path | None = None) -> ForgetResult:
    """Forget the snapshots of ``bset`` that ``policy`` does not keep; with ``prune`` delete content
    nobody names. ``boundary``: as for a backup (BackupOptions), the drive's mount point."""
    if policy.is_empty():
        raise UsageError("Say what to keep, e.g. --keep-last 10 or --keep-daily 7 --keep-weekly 8.")
    clock = clock or Clock()
    bset.layout.check_contained(boundary)   # a symlinked objects/ must not lead prune elsewhere
    with SetLock(bset.layout.lock, clock, purpose="forget"):
        keep, drop = choose(bset.snapshot_ids(), policy, clock.now())
        result = ForgetResult(keep, drop)
        if dry_run:
            return result
        _forget_ids(bset, drop)
        if prune:
            result.objects_removed, result.bytes_freed = prune_objects(bset)
        return result


def _forget_ids(bset: BackupSet, ids: list[str]) -> None:
    for sid in ids:
        bset.fs.unlink(bset.layout.manifest(sid))
        bset.forget_cached(sid)
    if ids:
        bset.fs.fsync_dir(bset.layout.snapshots)


def prune_objects(bset: BackupSet) -> tuple[int, int]:
    """Delete objects no snapshot names; (count, bytes). The caller holds the lock.

    The objects present go into a scratch table (core/engine/scratch.py), every manifest
    streams through it striking out the names it references, and what is left is
    deleted: memory stays flat however many files and snapshots (issue #11). Every
    manifest must read to its checked end first, or nothing is deleted.
    """
    with closing(scratch.connect()) as db:
        db.execute("CREATE TABLE unused (name BLOB PRIMARY KEY) WITHOUT ROWID")
        db.execute("BEGIN")   # one transaction: nothing here needs to survive a crash
        names = ((bytes.fromhex(n),) for n in bset.layout.iter_object_names())
        for batch in scratch.batches(names):
            db.executemany("INSERT OR IGNORE INTO unused VALUES (?)", batch)
        for sid in bset.snapshot_ids():
            try:
                with bset.open_manifest(sid) as reader:
                    refs = ((bytes.fromhex(bset.object_name(e)),) for e in reader if e.type == FILE)
                    for batch in scratch.batches(refs):
                        db.executemany("DELETE FROM unused WHERE name = ?", batch)
            except PlugbackError as err:
                raise PlugbackError(f"Cannot prune: snapshot {sid} is damaged ({err}); pruning could delete "
                                    "content it still needs. Run 'plugback verify SET' first.") from None
        db.execute("COMMIT")
        removed = freed = 0
        last = None
        for name, path in bset.layout.iter_object_files():
            if db.execute("SELECT 1 FROM unused WHERE name = ?", (bytes.fromhex(name),)).fetchone() is None:
                continue
            bset.layout.check_not_link(path.parent)   # deletes only in the set's own folders
            freed += path.lstat().st_size
            bset.fs.unlink(path)
            removed += name != last
            last = name
    return removed, freed


def make_room(bset: BackupSet, bytes_needed: int, *, clock: Clock | None = None) -> list[str]:
    """Drive nearly full: forget the oldest snapshots (never the newest) until ``bytes_needed`` fit.

    Not called yet: the drive-full issue wires it into the backup run next (DESIGN §4,
    "drive nearly full: drop oldest snapshots first"), so it stays, tested, until then.
    """
    clock = clock or Clock()
    dropped: list[str] = []
    bset.layout.check_contained()
    with SetLock(bset.layout.lock, clock, purpose="make room"):
        while shutil.disk_usage(bset.root).free < bytes_needed:
            ids = bset.snapshot_ids()
            if len(ids) <= 1:
                break
            _forget_ids(bset, ids[:1])
            dropped.append(ids[0])
            prune_objects(bset)
    return dropped

