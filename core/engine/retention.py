"""Retention: which snapshots to keep, forgetting the rest, and pruning content nobody names.

Policies work like restic's ``forget``: keep the newest N, and the newest
snapshot of each of the last N hours / days / weeks / months (-1 = no limit),
plus everything within a time window. The newest snapshot is always kept.
Order (crash safety): manifests are deleted first, unreferenced objects after,
so a crash leaves at worst unreferenced objects, never a snapshot without its
content.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterable, Iterator

from core.engine import chunks, scratch
from core.engine import journal as journal_mod
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


def prune_objects(bset: BackupSet, keep: Iterable[str] = ()) -> tuple[int, int]:
    """Delete objects no snapshot names (nor ``keep``); (count, bytes). The caller holds the lock.

    The objects present go into a scratch table (core/engine/scratch.py), every manifest
    streams through it striking out the names it references, then (format 2) every chunk list
    of a referenced content strikes out its chunks, and what is left is deleted: memory stays
    flat however many files and snapshots (issue #11). Every manifest, and every chunk list
    still referenced, must read to its checked end first, or nothing is deleted.
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
        for batch in scratch.batches((bytes.fromhex(n),) for n in keep):
            db.executemany("DELETE FROM unused WHERE name = ?", batch)
        for cl in _referenced_lists(bset, lambda n: db.execute("SELECT 1 FROM unused WHERE name = ?",
                                                               (bytes.fromhex(n),)).fetchone() is None):
            db.executemany("DELETE FROM unused WHERE name = ?", ((bytes.fromhex(c),) for c, _ in cl.chunks))
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


def _referenced_lists(bset: BackupSet, referenced: Callable[[str], bool]) -> Iterator[chunks.ChunkList]:
    """The chunk list of every content ``referenced`` says is still needed (format 2), read one at a
    time; a damaged one stops the prune (it cannot say which chunks it needs)."""
    if not bset.chunked:
        return
    for name, path in bset.layout.iter_object_files():
        if not path.name.endswith(chunks.LIST_SUFFIX) or not referenced(name):
            continue
        try:
            cl = chunks.load(bset, name, path)
        except PlugbackError as err:
            raise PlugbackError(f"Cannot prune: {err} Pruning could delete chunks it needs; run "
                                "'plugback verify SET' first.") from None
        if cl is not None:
            yield cl


def thin_count(alone: list[int], unused: int, free: int, need: int) -> int | None:
    """How many of the oldest snapshots to forget so that ``need`` bytes fit; None if nothing can.

    ``alone[i]``: the bytes only snapshot ``i`` (oldest first) and older ones still need, i.e.
    what forgetting snapshots ``0..i`` frees; ``unused``: bytes of objects nobody needs (a prune
    frees them whatever is forgotten). The newest snapshot (the last) is never counted. Pure:
    table-tested. 0 means "no snapshot needs to go" (a prune may still be needed: see
    :class:`RoomPlan`).
    """
    if free >= need:
        return 0
    freed = unused
    for k in range(max(1, len(alone))):   # k of the oldest snapshots forgotten
        if free + freed >= need:
            return k
        if k >= len(alone) - 1:
            break   # the newest stays
        freed += alone[k]
    return None


@dataclass
class RoomPlan:
    """What making room would do: forget ``forget`` (oldest first) and prune, freeing ``frees``
    bytes; ``most``: what forgetting every snapshot but the newest would free. ``forget`` is
    None when even that is not enough."""

    forget: list[str] | None
    frees: int
    most: int


def plan_room(bset: BackupSet, free: int, need: int) -> RoomPlan:
    """Which oldest snapshots must go for ``need`` bytes to fit next to ``free`` (one streaming pass).

    Every object present goes into a scratch table with its size on the drive; each manifest,
    oldest first, marks the objects it names as last needed by it; so the bytes each prefix
    of the oldest snapshots alone needs are one query. A damaged manifest (prune would
    refuse) makes nothing removable. The caller holds the lock.
    """
    ids = bset.snapshot_ids()
    if free >= need:
        return RoomPlan([], 0, 0)
    try:
        alone, unused = _needed_alone(bset, ids)
    except PlugbackError:
        return RoomPlan(None, 0, 0)
    most = unused + sum(alone[:-1])
    k = thin_count(alone, unused, free, need)
    if k is None:
        return RoomPlan(None, 0, most)
    return RoomPlan(ids[:k], unused + sum(alone[:k]), most)


def in_flight(bset: BackupSet) -> list[str]:
    """Objects an interrupted run on the newest snapshot placed (its journal's checkpointed records;
    encrypted sets): making room for that run to resume must not delete them."""
    newest = bset.newest_id()
    header, records = journal_mod.load(bset.layout.journal, bset.keys)
    if header is None or header.get("parent") != newest or header.get("snapshot") == newest:
        return []
    return [r.obj for r in records.values() if r.obj]


def _needed_alone(bset: BackupSet, ids: list[str]) -> tuple[list[int], int]:
    """(bytes last needed by each snapshot, oldest first; bytes of objects nobody needs). Objects
    :func:`in_flight` get a mark past the newest: never counted as freeable."""
    with closing(scratch.connect()) as db:
        db.execute("CREATE TABLE obj (name BLOB PRIMARY KEY, size INTEGER, last INTEGER) WITHOUT ROWID")
        db.execute("BEGIN")
        rows = ((bytes.fromhex(name), _on_disk(path)) for name, path in bset.layout.iter_object_files())
        for batch in scratch.batches(rows):
            db.executemany("INSERT INTO obj VALUES (?, ?, -1) ON CONFLICT(name) DO UPDATE "
                           "SET size = size + excluded.size", batch)
        for i, sid in enumerate(ids):
            with bset.open_manifest(sid) as reader:
                refs = ((i, bytes.fromhex(bset.object_name(e))) for e in reader if e.type == FILE)
                for batch in scratch.batches(refs):
                    db.executemany("UPDATE obj SET last = ? WHERE name = ?", batch)
        for cl in _referenced_lists(bset, lambda n: True):
            # A chunk is needed as long as the last content whose list names it.
            db.executemany("UPDATE obj SET last = max(last, (SELECT last FROM obj WHERE name = ?)) WHERE name = ?",
                           ((bytes.fromhex(cl.sha256), bytes.fromhex(c)) for c, _ in cl.chunks))
        flying = ((len(ids), bytes.fromhex(n)) for n in in_flight(bset))
        for batch in scratch.batches(flying):
            db.executemany("UPDATE obj SET last = ? WHERE name = ?", batch)
        totals = dict(db.execute("SELECT last, SUM(size) FROM obj GROUP BY last").fetchall())
        db.execute("COMMIT")
    return [totals.get(i, 0) for i in range(len(ids))], totals.get(-1, 0)


def _on_disk(path: Path) -> int:
    """The space a file takes on its volume (blocks where the OS says, else its size)."""
    st = path.lstat()
    blocks = getattr(st, "st_blocks", None)
    return blocks * 512 if blocks is not None else st.st_size


def make_room(bset: BackupSet, free: int, need: int, *, clock: Clock | None = None,
              boundary: Path | None = None) -> RoomPlan:
    """Drive nearly full: forget the oldest snapshots (never the newest) and prune, so that ``need``
    bytes fit next to ``free`` (DESIGN §4, "drop oldest snapshots first").

    Planned first (:func:`plan_room`): when even forgetting all but the newest would not make
    room, nothing is removed and the plan's ``forget`` is None (the caller fails before
    writing). Otherwise the plan's snapshots are forgotten (manifests first) and what only
    they needed is pruned.
    """
    clock = clock or Clock()
    bset.layout.check_contained(boundary)
    with SetLock(bset.layout.lock, clock, purpose="make room"):
        plan = plan_room(bset, free, need)
        if plan.forget is None or free >= need:
            return plan
        _forget_ids(bset, plan.forget)
        plan.frees = prune_objects(bset, keep=in_flight(bset))[1]
    return plan
