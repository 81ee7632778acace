"""Restore: any snapshot, any subset, to a folder or to where the files came from.

Every byte is checked against the manifest while it is written to a temporary
file next to its destination; only a file whose hash matches is renamed into
place, so damaged content is never restored silently (a root not there yet is made
under a temporary name, its files written at their own names, and named once they are
all whole: ``_work_roots``). Manifest paths that
could write outside the target (``..``, absolute paths, drive letters) are
refused before anything is written, and nothing is written through a symlink.
"""

from __future__ import annotations

import ntpath
import os
import secrets
import sys
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from core.engine import restore_ahead, winattrs
from core.engine.fs import WORKERS, VolumeInfo, long_path
from core.engine.lock import SetLock
from core.engine.manifest import DIR, FILE, WINDOWS_PATHS, Entry, Manifest
from core.engine.objindex import ObjectIndex
from core.engine.progress import (
    CancelToken,
    Clock,
    Progress,
    ProgressCallback,
    RunWarning,
    WarningCode,
    no_progress,
)
from core.engine.repo import BackupSet
from core.engine.restore_dirs import DirSpool as _DirSpool
from core.engine.restore_dirs import Folders as _Folders
from core.engine.restore_file import LOCKED, OnConflict, RestoreOutcome, Room, Unfinished, make_room, restore_file
from core.engine.restore_names import RestoreNamer
from core.engine.restore_spool import EntrySpool
from core.errors import UnsafePath, UsageError

__all__ = ["CONFLICTS", "LOCKED", "OnConflict", "RestoreOptions", "RestoreOutcome", "RestoreResult", "check_safe",
           "restore", "select"]

KEPT_NAMED = 200   # files kept under another name that a result names (the count is never capped)
# Restored folders never get setuid/setgid (a manifest is untrusted input); they keep the sticky bit.
_FOLDER_BITS = 0o1777
# Batches handed to the workers ahead of the one being counted: enough that they never wait for
# the manifest reader, few enough that memory stays flat.
AHEAD = 16
# Files go to a worker in batches: a hand-off per small file (a future, a lock, a GIL switch) cost more
# than restoring it. A big file ends its batch, so big files still spread over the workers.
BATCH = 32
BIG_FILE = 1 << 20
# Reads from a cold drive wait on it: with files handed over in batches, more threads than cores keep
# its queue full (20,000 small files, cold, 2 cores: 2 threads 13-16 s, 8 threads 9-11 s and less CPU).
# Where a thread can start reads ahead (Linux, plain local sets), core/engine/restore_ahead.py instead.
IO_WORKERS = max(8, WORKERS)


CONFLICTS = tuple(c.value for c in OnConflict)   # the spellings the CLI and the agent accept


@dataclass(frozen=True)
class RestoreOptions:
    """What to restore and how: ``paths`` empty = everything in ``snapshot``.

    A restore holds the set's lock (purpose "restore", so no backup or prune changes the set
    under it); ``lock_wait`` seconds it waits for another holder, telling ``on_lock_wait``
    who holds it (core/engine/lock.py), before failing with SetLocked.
    ``names``: the naming rules of the target (``core.engine.names.WINDOWS`` simulates a
    Windows target); None finds them out (core/engine/restore_names.py).
    """

    snapshot: str | None = "latest"
    paths: Sequence[str] = ()
    on_conflict: OnConflict = OnConflict.SKIP
    workers: int = IO_WORKERS
    progress: ProgressCallback = no_progress
    cancel: CancelToken = field(default_factory=CancelToken)
    lock_wait: float = 0.0
    on_lock_wait: Callable[[dict], None] | None = None
    clock: Clock = field(default_factory=Clock)
    names: VolumeInfo | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(self.paths))
        try:
            object.__setattr__(self, "on_conflict", OnConflict(self.on_conflict))
        except ValueError:
            raise UsageError(f"Unknown conflict choice '{self.on_conflict}'; use skip, overwrite or "
                             "keep-both.") from None


@dataclass
class RestoreResult:
    """What a restore did; ``damaged`` files were not written.

    ``files_restored`` counts every file written (also the overwritten and the
    kept-both ones, which are counted again on their own).
    """

    snapshot_id: str
    target: str
    files_restored: int = 0
    bytes_restored: int = 0
    overwritten: int = 0
    kept_both: int = 0
    skipped: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[RunWarning] = field(default_factory=list)
    #: ``(manifest path, the file in the way, written as)`` of the first :data:`KEPT_NAMED` files kept
    #: under another name (``kept_both`` counts them all; the list is bounded so memory stays flat).
    kept_as: list[tuple[str, str, str]] = field(default_factory=list)

    def count(self, e: Entry, outcome: RestoreOutcome, detail: str = "", wanted: str = "") -> None:
        """Add one file's outcome (``detail``: why it failed, or the name a kept-both file got at ``wanted``)."""
        if outcome is RestoreOutcome.SKIPPED:
            self.skipped += 1
        elif outcome is RestoreOutcome.DAMAGED:
            self.damaged.append((e.path, detail))
        elif e.type == FILE:
            self.files_restored += 1
            self.bytes_restored += e.size
            self.overwritten += outcome is RestoreOutcome.OVERWRITTEN
            self.kept_both += outcome is RestoreOutcome.KEPT_BOTH
            if outcome is RestoreOutcome.KEPT_BOTH and detail and len(self.kept_as) < KEPT_NAMED:
                self.kept_as.append((e.path, wanted, detail))

    def to_dict(self) -> dict:
        return {"snapshot_id": self.snapshot_id, "target": self.target,
                "files_restored": self.files_restored, "bytes_restored": self.bytes_restored,
                "overwritten": self.overwritten, "kept_both": self.kept_both,
                "skipped": self.skipped, "warnings": [w.to_dict() for w in self.warnings],
                "damaged": [{"path": p, "reason": r} for p, r in self.damaged],
                "kept_as": [{"path": p, "to": t, "as": a} for p, t, a in self.kept_as]}


def check_safe(path: str) -> None:
    """Refuse a manifest path that is not a plain relative path below the target.

    No component may be empty, ``.`` or ``..``: read on the path with a '/' at each end
    (no list of its components per entry: this runs for every restored entry)."""
    framed = f"/{path}/"
    bad = (not path or "//" in framed or "/./" in framed or "/../" in framed or "\x00" in path
           or (WINDOWS_PATHS and ("\\" in path or ntpath.splitdrive(path)[0] or ":" in path.partition("/")[0]))
           or (os.sep != "/" and os.sep in path) or (os.altsep and os.altsep in path))
    if bad:
        raise UnsafePath(path=path)


def _wanted(paths) -> set[str]:
    return {p.strip("/") for p in paths if p.strip("/")}


def _matches(path: str, wanted: set[str]) -> list[str]:
    """The ``wanted`` paths that ``path`` is at or below (every entry when ``wanted`` is empty)."""
    if not wanted:
        return [""]
    out = []
    while path:
        if path in wanted:
            out.append(path)
        path = path.rpartition("/")[0]
    return out


def select(entries: Iterable[Entry], paths) -> Iterator[Entry]:
    """The entries at or below any of ``paths`` (all entries when ``paths`` is empty), as they come."""
    wanted = _wanted(paths)
    return (e for e in entries if _matches(e.path, wanted))


def restore(bset: BackupSet, target, options: RestoreOptions | None = None) -> RestoreResult:
    """Restore ``options.paths`` (all when empty) of a snapshot in ``bset`` into ``target``/<source name>/...

    ``target`` may also map each top-level folder to the folder it is restored as
    (``{"Documents": "/home/me/Documents"}``: how the agent restores to "the original
    place", this computer's configured sources); a top folder missing from it is refused.
    ``target=None`` restores to the original source folders recorded in the snapshot.

    One read of the manifest, memory flat in its size (issue #11): to its checked end
    (nothing is written for a damaged or unsafe manifest), counting what to restore and
    keeping the chosen entries aside locally (core/engine/restore_spool.py); then they
    are restored from there as they come: folders, then each file in parallel, symlinks
    in turn; folder modes and times come last.
    """
    options = options or RestoreOptions()
    # Before the first manifest is read: no prune may delete what this restore will read.
    lock = SetLock(bset.layout.lock, options.clock, purpose="restore", required=False)
    lock.acquire(options.lock_wait, options.cancel, options.on_lock_wait)
    try:
        return _restore(bset, target, options)
    finally:
        lock.release()


def _restore(bset: BackupSet, target, options: RestoreOptions) -> RestoreResult:
    sid = bset.resolve_id(options.snapshot)
    with EntrySpool() as chosen:
        return _restore_chosen(bset, target, options, sid, chosen)


def _restore_chosen(bset: BackupSet, target, options: RestoreOptions, sid: str, chosen: EntrySpool) -> RestoreResult:
    plan = _plan(bset, sid, options.paths, chosen)
    plan.newest = sid == bset.newest_id()   # read intact above: its Latest/ copies are its content
    roots = _roots(plan.header, target, plan.tops)
    result = RestoreResult(sid, "(original folders)" if target is None else
                           ", ".join(roots.values()) if isinstance(target, Mapping) else str(target))
    work = _work_roots(roots)
    for root in set(roots.values()) - set(work):
        os.makedirs(root, exist_ok=True)
    run = _Restorer(bset, {top: work.get(root, root) for top, root in roots.items()}, options, result, plan)
    run.direct_tops = {top for top, root in roots.items() if root in work}
    for top in run.direct_tops:
        run.folders.adopt(run.roots[top])
    try:
        with _DirSpool() as dirs:
            run.restore_all(chosen, dirs)
            run.folder_times(dirs)
    except Exception as err:   # (the writers have ended: every file in a work root is whole and checked,
        if not isinstance(err, Unfinished):   # unless one could not be removed)
            _name_roots(work)
        raise
    _name_roots(work)
    return result


def _work_roots(roots: dict[str, str]) -> dict[str, str]:
    """{root: the folder it is restored in under a temporary name} for each root not there yet
    (POSIX; not for a root inside another): its files are written at their own names, with no
    temporary name and rename each (``write_file``'s ``direct``), and the whole folder gets the
    root's name once they are (:func:`_name_roots`). A crash before then leaves only a
    ``.plugback-restore-*.part`` folder (docs/architecture.md, "Restore: no rename per file in a
    new folder")."""
    if sys.platform == "win32" or winattrs.SETS_ATTRIBUTES:   # (Windows: another program, an indexer or
        return {}                                              # a scanner, may hold a folder: not renamed)
    work = {}
    for root in dict.fromkeys(roots.values()):   # (two tops may share a root)
        inside = any(other != root and other.startswith(root.rstrip(os.sep) + os.sep) for other in roots.values())
        if inside or os.path.lexists(root):
            continue
        parent = os.path.dirname(root)
        os.makedirs(parent, exist_ok=True)
        name = os.path.join(parent, f".plugback-restore-{secrets.token_hex(6)}.part")
        os.mkdir(name)
        work[root] = name
    return work


def _name_roots(work: dict[str, str]) -> None:
    """Give each work root its root's name (:func:`_work_roots`); never over something that
    appeared there meanwhile."""
    for root, name in work.items():
        if os.path.lexists(root):
            raise UsageError(f"{root} appeared while it was being restored; the restored files are in {name}.")
        os.rename(name, root)


@dataclass
class _Plan:
    """What the first pass learnt: the header, the top folders touched, what the files weigh."""

    header: Manifest
    tops: set[str] = field(default_factory=set)
    files: int = 0
    bytes: int = 0
    newest: bool = False


def _plan(bset: BackupSet, sid: str, paths, chosen: EntrySpool) -> _Plan:
    """Read the whole manifest (trailer checked), prove every chosen path safe to write below
    its root, and refuse wanted paths the snapshot does not hold: before anything is written.
    The chosen entries go to ``chosen``, to be restored once this returned.

    Entries below a symlink or a file entry are refused by the manifest reader itself
    (``EntryOrder``): a restore would write through them.
    """
    wanted = _wanted(paths)
    found: set[str] = set()
    with bset.open_manifest(sid) as reader:
        plan = _Plan(reader.manifest)
        for e in reader:
            if wanted:
                hits = _matches(e.path, wanted)
                if not hits:
                    continue
                found.update(hits)
            check_safe(e.path)
            chosen.add(e)
            plan.tops.add(e.path.partition("/")[0])
            if e.type == FILE:
                plan.files += 1
                plan.bytes += e.size
    missing = sorted(wanted - found)
    if missing:
        raise UsageError(f"Not in this snapshot: {', '.join(missing)}. 'plugback ls SET SNAPSHOT' shows "
                         "what it holds (paths start with the source folder's name).")
    return plan


class _Restorer:
    """One restore's places and counts: where each entry goes, and writing it there."""

    def __init__(self, bset: BackupSet, roots: dict[str, str], options: RestoreOptions, result: RestoreResult,
                 plan: _Plan):
        self.bset, self.roots, self.options, self.result, self.plan = bset, roots, options, result, plan
        self.folders = _Folders()
        # Each root with one separator at its end: destinations are built by adding to it.
        self.prefixes = {top: root if root.endswith(os.sep) else root + os.sep for top, root in roots.items()}
        self.names = RestoreNamer(roots, options.names, result.warnings)
        # (plain sets' newest snapshot: most of its files are in Latest/ only)
        self.objects = ObjectIndex(bset.layout.objects) if plan.newest and bset.keys is None else None
        self._done = {"files": 0, "bytes": 0}
        self._counting = threading.Lock()
        self.direct_tops: set[str] = set()   # top folders restored in a new folder (_work_roots)

    def direct(self, e: Entry) -> bool:
        """Whether ``e`` is written at its own name (in a new root under a temporary name)."""
        return bool(self.direct_tops) and e.path.partition("/")[0] in self.direct_tops

    def dest_of(self, path: str) -> tuple[str, str, str]:
        """(the root it goes below, its folder, its destination path) of a checked manifest ``path``
        (check_safe): strings added to the root's, no ``os.path`` call per file."""
        top, _, rest = path.partition("/")
        root = self.roots.get(top)
        if root is None:   # not a top folder the manifest's read found (never, from the spool)
            raise UnsafePath(path=path)
        if not rest:
            return root, os.path.dirname(root), root
        if os.sep != "/":
            rest = rest.replace("/", os.sep)
        prefix = self.prefixes[top]
        parent, sep, _ = rest.rpartition(os.sep)
        return root, prefix + parent if sep else root, prefix + rest

    def restore_all(self, entries: Iterable[Entry], dirs: _DirSpool) -> None:
        """Folders and symlinks as they come, files by a pool with a bounded queue (flat memory);
        where the reads of small files can be started ahead (restore_ahead.usable), by
        restore_ahead.restore_all instead.

        No entry lies below a symlink or file entry (the reader refuses that), so a
        symlink made now is never in the way of a later file.
        """
        if restore_ahead.usable(self.bset):
            restore_ahead.restore_all(self, entries, dirs)
            return
        workers = max(1, self.options.workers)
        pending: deque[Future] = deque()
        batch: list[Entry] = []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            try:
                for e in map(self.names.local, entries):
                    if e.type == DIR:
                        self.folder(e, dirs)
                    elif e.type == FILE:
                        batch.append(e)
                        if len(batch) >= BATCH or e.size >= BIG_FILE:
                            pending.append(pool.submit(self._batch, batch))
                            batch = []
                        if len(pending) >= AHEAD:
                            self._count(pending.popleft().result())
                    else:
                        self.link(e)
                if batch:
                    pending.append(pool.submit(self._batch, batch))
                while pending:
                    self._count(pending.popleft().result())
            finally:
                for f in pending:
                    f.cancel()

    def folder(self, e: Entry, dirs: _DirSpool) -> None:
        """Make the folder entry ``e``'s folder; its mode and time wait in ``dirs`` (folder_times)."""
        root, _, dest = self.dest_of(e.path)
        self.folders.ensure(dest, root)
        dirs.add(e)

    def room(self, e: Entry) -> Room:
        """Where the file or symlink entry ``e`` is written, and how that ends (its folder made)."""
        root, folder, dest = self.dest_of(e.path)
        return make_room(dest, self.options.on_conflict, self.folders.ensure(folder, root))

    def _batch(self, entries: list[Entry]) -> list:
        return [self._one(e) for e in entries]

    def _count(self, outcomes: list) -> None:
        for outcome in outcomes:
            self.result.count(*outcome)

    def _one(self, e: Entry):
        self.options.cancel.check()
        room = self.room(e)
        outcome, detail = restore_file(self.bset, e, room, self.plan.newest, self.objects, self.direct(e))
        return self.done(e, outcome, detail)

    def done(self, e: Entry, outcome: RestoreOutcome, detail: str) -> tuple:
        """Report the file ``e`` done (progress, a warning when locked); what ``result.count`` takes."""
        with self._counting:
            self._done["files"] += 1
            self._done["bytes"] += e.size
            report = Progress("restore", self._done["files"], self.plan.files, self._done["bytes"],
                              self.plan.bytes, e.path)
        self.options.progress(report)
        if detail == LOCKED:
            self.result.warnings.append(RunWarning(WarningCode.LOCKED, e.path, LOCKED))
        return e, outcome, detail, self.dest_of(e.path)[2] if outcome is RestoreOutcome.KEPT_BOTH else ""

    def link(self, e: Entry) -> None:
        dest, outcome = self.room(e)
        if outcome is RestoreOutcome.SKIPPED:
            self.result.count(e, outcome)
            return
        if outcome is RestoreOutcome.DAMAGED:
            self.result.warnings.append(RunWarning(WarningCode.SYMLINK_NOT_RESTORED, e.path,
                                                   "a folder is in the way of this symlink; skipped"))
            return
        try:
            if outcome is RestoreOutcome.OVERWRITTEN:
                winattrs.unlink(dest)
            os.symlink(e.target or "", dest)   # a checked link entry always has a target
            os.utime(dest, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)
        except (OSError, NotImplementedError) as err:
            self.result.warnings.append(RunWarning(WarningCode.SYMLINK_NOT_RESTORED, e.path,
                                                   f"symlink could not be made ({err})"))

    def folder_times(self, dirs: _DirSpool) -> None:
        """Folder modes, times and (Windows) attributes last, deepest first (the manifest's order
        backwards): writing into a folder changes its time, and a folder made unreadable must be
        its contents' last."""
        for path, mode, mtime_ns, attrs in dirs.backwards():
            dest = self.dest_of(path)[2]
            try:
                os.chmod(long_path(dest), mode & _FOLDER_BITS or 0o755)
                os.utime(long_path(dest), ns=(mtime_ns, mtime_ns))
            except OSError:
                pass
            winattrs.set_recorded(long_path(dest), attrs)


def _roots(m, target, tops) -> dict[str, str]:
    """Where each top-level folder in ``tops`` goes: into ``target``, or (None) back to its source."""
    sources = {s["name"]: s["path"] for s in m.sources}
    if isinstance(target, Mapping):
        sources, target = dict(target), None   # the caller's places, never the recorded ones
    base = None if target is None else os.path.abspath(os.path.expanduser(str(target)))
    out = {}
    for top in tops:
        check_safe(top)
        if base is not None:
            out[top] = os.path.join(base, top)
            continue
        path = sources.get(top)
        if path is None or not os.path.isabs(path):
            raise UnsafePath(path=top if path is None else path)   # no recorded original place
        out[top] = path
    return out
