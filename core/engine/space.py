"""Room on the drive: how many bytes a run needs, and making room by thinning old snapshots.

A backup used to find out that the drive was full by filling it: ENOSPC mid-run, the
drive left full of copied pieces and the next job on it failing too. Now, before
anything is written:

1. **Estimate** (:func:`estimate`): the scan streams against the parent manifest with
   the engine's own "unchanged" rule (size, mtime, inode, ctime); only new and changed
   files cost bytes (rounded up to the volume's blocks; encrypted: with the format's
   overhead). Old versions leave ``Latest/`` by a rename into ``objects/`` and cost
   nothing new, except big files in format-2 sets, stored as chunks: at most their size
   again (core/engine/chunks.py); files an interrupted run already placed (the journal's checkpointed
   records) cost nothing either. A margin covers the manifest, ``Latest.sha256``, the
   journal and new folders. Identical content stored once is not known before reading,
   so the estimate can only be too high, never too low, for the files it sees.
   No estimate at all when the drive has room for twice a fresh copy of the newest snapshot
   (:func:`_quick_fit`) or, for a first backup, twice all that the sources' volumes hold
   (:func:`_fresh_fit`, issue #11: no walk of every file before the run's own).
2. **Thin** (:func:`core.engine.retention.make_room`): when it does not fit, the oldest
   snapshots go, never the newest, and what only they needed is pruned; planned first,
   so when even that cannot make room nothing is removed.
3. **Fail before writing** (:class:`core.errors.DriveFull`), with the numbers.

If ENOSPC still comes mid-run (something else filled the drive, the sources grew
since the scan), the run ends as before (the last snapshot intact, the journal kept),
room is made for what is left with some slack, and the run goes again once, reusing
what was copied. If that cannot be done or fails too, the copies the run made are taken
back (:func:`release`), so the drive is not left full for the next job, and the message
is true about what exists.

Memory stays flat: the estimate holds one scan entry and one manifest entry at a time,
and thinning's bookkeeping lives in a scratch table (core/engine/scratch.py).
"""

from __future__ import annotations

import os
import stat
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence, cast

from core.engine import chunks
from core.engine import journal as journal_mod
from core.engine.atomic import clear_tmp
from core.engine.backup import (
    BackupOptions,
    BackupResult,
    backup,
    check_sources,
    same_stat,  # the run's own rule: the two cannot disagree
)
from core.engine.changes import ChangeHint
from core.engine.chunkstore import big_enough
from core.engine.lock import SetLock
from core.engine.manifest import DIR, FILE, Entry
from core.engine.progress import CancelToken, Progress, ProgressCallback, no_progress
from core.engine.repo import BackupSet
from core.engine.retention import make_room, plan_room, prune_objects
from core.engine.reuse import Reuse
from core.engine.scan import Excluder, plan_sources, scan
from core.engine.window import merge
from core.errors import DiskFull, DriveFull, ManifestDamaged, PlugbackError

MARGIN_FIXED = 1 << 20     # the set's small files, a checkpoint, rounding
MARGIN_PER_ENTRY = 200     # plus the path: its manifest line (gzip'd) and its Latest.sha256 line
MARGIN_PER_COPY = 300      # plus twice the path: its journal record
MARGIN_PATH = 1024         # a first backup's room check without counting (_fresh_fit): a path's bytes, at most on average
RETRY_SLACK = 1 / 8        # after ENOSPC mid-run the estimate proved low: ask for this much more
RETRY_SLACK_MIN = 4 << 20
CANCEL_EVERY = 1000        # entries between cancel checks while estimating
DEFAULT_BLOCK = 4096


@dataclass(frozen=True)
class Need:
    """What a run will write: ``content`` (new and changed files, rounded to blocks) for
    ``files`` files, and ``margin`` for the set's own files and new folders."""

    content: int = 0
    files: int = 0
    margin: int = MARGIN_FIXED

    @property
    def total(self) -> int:
        return self.content + self.margin


@dataclass
class RoomReport:
    """What making room did during one run: the snapshots ``removed`` (oldest first), the bytes
    freed, the last estimate and the free space it was held against, whether the run went twice."""

    removed: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    need: Need | None = None
    free: int | None = None
    retried: bool = False


def free_space(root: Path) -> int | None:
    """Bytes free for this user on the volume holding ``root``; None when the file system does not
    say (fusefat reports a size of 0): then only ENOSPC guards the run."""
    if sys.platform != "win32":   # (as shutil.disk_usage reads it, without importing shutil: bz2, lzma)
        st = os.statvfs(root)
        return st.f_bavail * st.f_frsize if st.f_blocks * st.f_frsize > 0 else None
    import shutil

    usage = shutil.disk_usage(root)
    return usage.free if usage.total > 0 else None


def block_size(root: Path) -> int:
    """The volume's allocation unit (a file of 1 byte takes one)."""
    if sys.platform != "win32":
        try:
            return os.statvfs(root).f_frsize or DEFAULT_BLOCK
        except OSError:
            pass
    return DEFAULT_BLOCK


def stored_size(size: int, encrypted: bool, block: int) -> int:
    """The bytes one file's content takes in the set: rounded up to blocks; encrypted with the
    stream format's header and per-chunk tags (docs/encryption.md)."""
    if encrypted:
        from core.engine.crypto import encrypted_size

        size = encrypted_size(size)
    return -(-size // block) * block if size else 0


def estimate(bset: BackupSet, sources: Sequence[str], excludes: Iterable[str] = (),
             cancel: CancelToken | None = None, progress: ProgressCallback = no_progress,
             changes: ChangeHint | None = None) -> Need:
    """The bytes a backup of ``sources`` into ``bset`` will write, streaming (see the module docstring).

    A damaged parent manifest means the run copies everything: so does the estimate.
    ``changes``: the run's change hint (core/engine/changes.py); where the run could use it, the
    estimate lists only the folders it names and takes the parent's records elsewhere, as the
    run's journal scan does (the same pairs a full scan gives: the same estimate, without the scan).
    ``progress`` hears phase "scan" with the path reached (no totals: they are not known yet).
    """
    paths = check_sources(sources, bset.layout.root)
    parent_id = bset.newest_id()
    hooks = (cancel or CancelToken(), progress)
    try:
        return _count(bset, paths, tuple(excludes), parent_id, hooks, changes)
    except ManifestDamaged:
        return _count(bset, paths, tuple(excludes), None, hooks)


def _trusted(bset: BackupSet, parent_id: str | None) -> dict[str, journal_mod.Placed]:
    """An interrupted run's checkpointed records on the same parent (what the run will reuse)."""
    header, trusted = journal_mod.load(bset.layout.journal, bset.keys)
    if header is None or header.get("parent") != parent_id or header.get("snapshot") == parent_id:
        return {}
    return trusted


def _pairs(bset: BackupSet, paths: list[str], excludes: tuple[str, ...], parent_id: str | None,
           changes: ChangeHint | None, stack: ExitStack) -> Iterator[tuple]:
    """The run's ``(scan entry, parent entry)`` pairs: a full scan merged with the parent, or the
    journal scan the run would make with ``changes`` (core/engine/reuse.py decides, as in the run)."""
    root = str(bset.layout.root)
    header = bset.header(parent_id) if parent_id else None
    sources = plan_sources(paths, header.sources if header else [])
    excluder = Excluder(excludes, skip_dirs=[root])
    if parent_id is None or header is None:
        return merge(scan(sources, excluder, []), ())
    reuse = Reuse(changes, excludes, False, paths, root)
    # Only the header is noted, none of the parent's folders: every named folder counts as new to
    # the parent, so the journal scan also lists the folders above it (more listing, the same pairs)
    # and the parent is read once, not twice.
    reuse.begin(header)
    pairs = reuse.pairs(parent_id, sources, excluder, [], stack.enter_context(bset.open_manifest(parent_id)))
    return cast("Iterator[tuple]", pairs)   # (a Splice comes only from a proven parent's lines, never given here)


def _count(bset: BackupSet, paths: list[str], excludes: tuple[str, ...], parent_id: str | None,
           hooks: tuple[CancelToken, ProgressCallback], changes: ChangeHint | None = None) -> Need:
    root = bset.layout.root
    block, encrypted = block_size(root), bset.encrypted
    trusted = _trusted(bset, parent_id) if parent_id else {}
    content = files = 0
    margin = MARGIN_FIXED
    with ExitStack() as stack:
        for count, (se, prev) in enumerate(_pairs(bset, paths, excludes, parent_id, changes, stack)):
            if count % CANCEL_EVERY == 0:
                hooks[0].check()
                hooks[1](Progress("scan", 0, 0, 0, 0, getattr(se or prev, "path", "")))
            margin += _chunking(bset, prev, se, block)
            if se is None:
                continue   # removed: its content moves into objects/ by a rename
            n = len(se.path.encode("utf-8", "surrogatepass"))
            margin += MARGIN_PER_ENTRY + n
            if se.type == DIR:
                margin += block if prev is None or prev.type != DIR else 0
                continue
            if se.type != FILE:
                continue
            if prev is not None and prev.type == FILE and same_stat(prev, se):
                continue
            t = trusted.get(se.path)
            if t is not None and same_stat(t, se) and _still_placed(bset, t):
                continue   # placed by the interrupted run: reused
            files += 1
            content += stored_size(se.size, encrypted, block)
            margin += MARGIN_PER_COPY + 2 * n
    return Need(content, files, margin)


def _chunking(bset: BackupSet, prev: Entry | None, se, block: int) -> int:
    """Format 2: what moving ``prev`` (a big file in ``Latest/`` that is removed or changed) out as
    chunks can write: at most its size again (a rename costs nothing, chunks are new bytes), and
    its chunk list. Not known before reading which chunks are new, so the most."""
    if prev is None or prev.type != FILE or prev.parts or not bset.chunked or not big_enough(prev.size):
        return 0
    if se is not None and se.type == FILE and same_stat(prev, se):
        return 0
    chunk_lines = prev.size // (chunks.MIN_SIZE) + 1
    return stored_size(prev.size, False, block) + chunk_lines * 80 + block


def _still_placed(bset: BackupSet, t: journal_mod.Placed) -> bool:
    """Whether a journal record's copy is still there (a released run's are not)."""
    layout = bset.layout
    if t.obj is not None:
        return _regular_size(layout.object(t.obj) if not t.parts else layout.object_part(t.obj, 1)) is not None
    first = layout.latest_file(t.mirror) if not t.parts else layout.latest_part(t.mirror, 1)
    return _regular_size(first) is not None


def _quick_fit(bset: BackupSet, free: int) -> bool:
    """Room for a fresh copy of everything the newest snapshot holds: no estimate is needed (the
    common run; a source that grew beyond that is caught by the estimate next time, or by ENOSPC)."""
    parent_id = bset.newest_id()
    if parent_id is None:
        return False
    try:
        totals = bset.header(parent_id).totals
    except ManifestDamaged:
        return False
    block = block_size(bset.layout.root)
    entries = totals["files"] + totals["dirs"] + totals["links"]
    worst = (stored_size(totals["bytes"], bset.encrypted, block) + totals["files"] * block
             + entries * (MARGIN_PER_ENTRY + MARGIN_PER_COPY + 768) + MARGIN_FIXED)
    return free >= 2 * worst


def _fresh_fit(bset: BackupSet, sources: Sequence[str], free: int) -> bool:
    """A first backup (no snapshot to compare with) on a drive with plenty of room: room for twice
    all that the sources' volumes hold (their used bytes and used inodes, each file rounded up to a
    block of the drive, with its margins), so the estimate's walk of every file is not needed (issue
    #11: it was a second walk before the copy). Only where the volumes count their inodes (not
    btrfs, not Windows: then the estimate counts); volumes mounted inside a source count too.

    An upper bound for files as they take room on their own volume; a sparse file, a clone
    (APFS) or a hard link takes more in the set than on its volume, which the factor 2 covers
    within reason; beyond it ENOSPC mid-run is handled as for a source that grew (module docstring)."""
    if bset.newest_id() is not None:
        return False
    try:
        volumes = _source_volumes(sources)
    except OSError:
        return False
    if not volumes or any(v.f_files == 0 for v in volumes):
        return False
    block = block_size(bset.layout.root)
    per_entry = stored_size(1, bset.encrypted, block) + MARGIN_PER_ENTRY + MARGIN_PER_COPY + 3 * MARGIN_PATH
    worst = MARGIN_FIXED
    for v in volumes:
        worst += (stored_size((v.f_blocks - v.f_bfree) * v.f_frsize, bset.encrypted, block)
                  + (v.f_files - v.f_ffree) * per_entry)
    return free >= 2 * worst


def _source_volumes(sources: Sequence[str]) -> list:
    """``statvfs`` of each volume a backup of ``sources`` reads: theirs, and those mounted inside them
    (none on Windows: no inode counts there)."""
    if sys.platform == "win32":
        return []
    import psutil  # (only a first backup asks)

    roots = [os.path.realpath(os.path.abspath(os.path.expanduser(str(s)))) for s in sources]
    paths = set(roots)
    inside = tuple(r.rstrip(os.sep) + os.sep for r in roots)
    for part in psutil.disk_partitions(all=True):   # (by name: no volume outside the sources is touched)
        if part.mountpoint.startswith(inside):
            paths.add(part.mountpoint)
    by_device = {os.stat(p).st_dev: p for p in paths}
    return [os.statvfs(p) for p in by_device.values()]


def _tmp_bytes(tmp: Path) -> int:
    """What an interrupted run left in ``tmp/`` (cleared when the run starts)."""
    total = 0
    try:
        with os.scandir(tmp) as it:
            for entry in it:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    except OSError:
        pass
    return total


def ensure_room(bset: BackupSet, sources: Sequence[str], options: BackupOptions, report: RoomReport, *,
                thin: bool = True, slack: bool = False) -> None:
    """Make sure the run fits: estimate, thin the oldest snapshots when allowed, or raise DriveFull
    (before anything is written). ``slack``: after ENOSPC, ask for more than the estimate."""
    root = bset.layout.root
    free = free_space(root)
    if free is None:
        return
    free += _tmp_bytes(bset.layout.tmp)
    if not slack and (_quick_fit(bset, free) or _fresh_fit(bset, sources, free)):
        return
    need = estimate(bset, sources, options.excludes, options.cancel, options.progress,
                    None if options.rehash else options.changes)
    want = need.total + (max(int(need.total * RETRY_SLACK), RETRY_SLACK_MIN) if slack else 0)
    report.need, report.free = need, free
    if free >= want:
        return
    ids = bset.snapshot_ids()
    if not thin:
        raise DriveFull(needed=want, free=free, intact=bool(ids), partial=slack)
    plan = make_room(bset, free, want, clock=options.clock, boundary=options.boundary)
    if plan.forget is None:
        raise DriveFull(needed=want, free=free, free_after=free + plan.most, thinned=len(ids) > 1,
                        intact=bool(ids), partial=slack)
    report.removed.extend(plan.forget)
    report.bytes_freed += plan.frees


def backup_with_room(bset: BackupSet, sources: Sequence[str], options: BackupOptions | None = None, *,
                     thin: bool = True, report: RoomReport | None = None) -> tuple[BackupResult, RoomReport]:
    """A backup that checks the room first (see the module docstring); ``thin``: whether old
    snapshots may be removed to make room (the agent: always; the CLI: ``--make-room``).
    ``report`` (filled as it goes, so a caller learns what was removed even when the run
    then fails) is returned with the result.

    Raises DriveFull before writing when the run cannot fit, and DiskFull (saying truly
    whether a complete backup exists) when ENOSPC came mid-run and no room could be made.
    """
    options = options or BackupOptions()
    report = report if report is not None else RoomReport()
    ensure_room(bset, sources, options, report, thin=thin)
    try:
        return backup(bset, sources, options), report
    except DiskFull as err:   # ENOSPC: the engine ended cleanly, its journal kept
        failure: DiskFull = err
    if thin and free_space(bset.layout.root) is not None:
        # The run ended cleanly (its journal kept): make room for what is left, with slack, and go once more.
        try:
            ensure_room(bset, sources, options, report, thin=True, slack=True)
        except DriveFull as err:
            failure = err
        else:
            report.retried = True
            try:
                return backup(bset, sources, options), report
            except DiskFull as err:
                failure = err
    raise _ended_full(bset, sources, options, failure) from None


def _ended_full(bset: BackupSet, sources: Sequence[str], options: BackupOptions, failure: DiskFull) -> DiskFull:
    """The error a run that could not finish for lack of space ends with, after its copies were
    taken back (:func:`release`): with the numbers as they are now, when they can be had."""
    released = release(bset, options)
    ids = bset.snapshot_ids()
    if not isinstance(failure, DriveFull):
        return DiskFull(path=failure.details.get("path", ""), intact=bool(ids), released=released)
    details = {**failure.details, "intact": bool(ids), "partial": True, "released": released}
    free = free_space(bset.layout.root)
    if released and free is not None:
        try:
            need = estimate(bset, sources, options.excludes, changes=options.changes).total   # what was taken back counts again
            most = plan_room(bset, free, need).most
        except (PlugbackError, OSError):
            return DriveFull(**details)
        details.update(needed=need, free=free, free_after=free + most, thinned=len(ids) > 1)
    return DriveFull(**details)


def release(bset: BackupSet, options: BackupOptions) -> bool:
    """After a run that could not finish for lack of space: take back what it wrote that no
    committed snapshot needs, so the drive is not left full (the next job on it must run).

    Under the set's lock: ``tmp/`` is cleared; the copies the run placed in ``Latest/`` (its
    journal's checkpointed records) are removed unless the newest snapshot names that content
    at that place (its version went to ``objects/`` before, so every snapshot stays
    restorable); unreferenced objects (an encrypted run's new content) are pruned. The journal
    stays, so ``Latest/`` is known to be between snapshots; its records no longer count.
    Whether anything was taken back; never raises for a drive that fails meanwhile (the
    run's own error is what the user hears).
    """
    layout = bset.layout
    try:
        layout.check_contained(options.boundary)
        with SetLock(layout.lock, options.clock, purpose="release"):
            clear_tmp(bset.fs, layout.tmp)
            parent = bset.newest_id()
            header, records = journal_mod.load(layout.journal, bset.keys)
            if header is None or header.get("parent") != parent or header.get("snapshot") == parent:
                return _prune_quietly(bset) > 0
            # The journal stays: it says Latest/ is between two snapshots (docs/format.md); the
            # next run finds its records' copies gone and copies them again.
            removed = 0 if bset.encrypted else _take_back(bset, parent, records)
            return removed + _prune_quietly(bset) > 0
    except (PlugbackError, OSError):
        return False


def _prune_quietly(bset: BackupSet) -> int:
    """Objects nobody names deleted (how many); 0 when a damaged manifest makes prune refuse."""
    try:
        return prune_objects(bset)[0]
    except PlugbackError:
        return 0


def _take_back(bset: BackupSet, parent: str | None, records: dict[str, journal_mod.Placed]) -> int:
    """Remove the plain copies ``records`` placed in ``Latest/`` that the newest snapshot does not
    name there with that content; how many were removed."""
    by_mirror = {r.mirror: r for r in records.values()}
    if parent is not None:
        with bset.open_manifest(parent) as reader:   # all of it (damaged: nothing is taken back)
            for e in reader:
                r = by_mirror.get(e.mirror_path)
                if r is not None and e.type == FILE and e.sha256 == r.sha256:
                    del by_mirror[e.mirror_path]     # the newest snapshot's own copy
    removed = 0
    for r in by_mirror.values():
        paths = ([bset.layout.latest_part(r.mirror, i, writing=True) for i in range(1, r.parts + 1)]
                 if r.parts else [bset.layout.latest_file(r.mirror, writing=True)])
        sizes = [_regular_size(p) for p in paths]
        if None in sizes or sum(s or 0 for s in sizes) != r.size:
            continue   # not the copy the run made: left alone
        if bset.chunked and not r.parts and big_enough(r.size):
            continue   # a chunk list may name this place for chunks of the version it replaced
        for p in paths:
            bset.fs.unlink(p)
        removed += 1
    return removed


def _regular_size(path: Path) -> int | None:
    """A regular file's size, never through a symlink; None for anything else."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None
