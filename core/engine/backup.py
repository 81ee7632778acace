"""A backup run: scan the sources, compare with the parent snapshot, copy what changed,
commit a new snapshot, verify what was written.

Write order (the crash-safety proof; tests/core/engine/test_crash.py crashes at every step):

1. ``tmp/`` is cleared and the journal names the planned snapshot.
2. Removed and replaced files leave ``Latest/`` only by a rename into ``objects/``
   (core/engine/store.py), and new content is written to ``tmp/`` and renamed into place.
   Each committed snapshot's content therefore stays in ``objects/`` or where the
   newest snapshot put it in ``Latest/``.
3. Every few seconds the volume is flushed and the journal checkpointed, so an
   interrupted run's durable work is reused, not copied again.
4. The volume is flushed, then the manifest is written to ``tmp/``, fsynced and
   renamed into ``snapshots/``: the commit point. Only now does the snapshot exist.
5. ``Latest.sha256`` is rewritten and the journal removed (a crash between 4 and 5
   is finished by the next run).
6. What was written is read back from the drive and checked against the manifest.
"""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Sequence

from core.engine import journal as journal_mod
from core.engine.atomic import clear_tmp, write_atomic
from core.engine.fs import WORKERS, probe_volume
from core.engine.lock import SetLock
from core.engine.manifest import DIR, FILE, LINK, Entry, Manifest, sort_key
from core.engine.names import MirrorNamer
from core.engine.progress import (
    CancelToken,
    Clock,
    Progress,
    ProgressCallback,
    RunWarning,
    TextEnum,
    WarningCode,
    no_progress,
)
from core.engine.repo import BackupSet, new_snapshot_id
from core.engine.scan import Excluder, ScanEntry, is_inside, plan_sources, scan
from core.engine.store import EncryptedStore, PlainStore
from core.engine.sums import write_latest_sums
from core.errors import Cancelled, ManifestDamaged, PlugbackError, UsageError

CHECKPOINT_SECONDS = 5.0
CHECKPOINT_BYTES = 256 << 20
SOURCE_RETRIES = 3          # a locked or briefly unreadable file is tried this often
SOURCE_RETRY_DELAY = 0.2


class BackupStatus(TextEnum):
    """How a backup ended: ``warnings`` = some files skipped, ``damaged`` = read-back failed."""

    OK = "ok"
    WARNINGS = "warnings"
    DAMAGED = "damaged"


@dataclass(frozen=True)
class BackupOptions:
    """How to run one backup; the defaults are an everyday run.

    ``host`` defaults to the set's recorded host, then this computer's name.
    ``boundary``: a trusted folder above the set (the drive's mount point) from which
    down no symlink may lead; default the set folder itself. The
    hooks (``progress``, ``cancel``, ``clock``) do nothing / never cancel / read
    the real time unless given.
    """

    excludes: Sequence[str] = ()
    rehash: bool = False
    job: str = ""
    host: str | None = None
    verify: bool = True
    boundary: Path | None = None
    workers: int = WORKERS
    progress: ProgressCallback = no_progress
    cancel: CancelToken = field(default_factory=CancelToken)
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        object.__setattr__(self, "excludes", tuple(self.excludes))


@dataclass
class BackupResult:
    """What a run did; ``damaged`` names files that read back wrong."""

    set_path: str
    snapshot_id: str
    status: BackupStatus
    files_scanned: int = 0
    bytes_scanned: int = 0
    files_copied: int = 0
    bytes_copied: int = 0
    warnings: list[RunWarning] = field(default_factory=list)
    damaged: list[tuple[str, str]] = field(default_factory=list)
    started: datetime | None = None
    ended: datetime | None = None

    def to_dict(self) -> dict:
        return {"set": self.set_path, "snapshot_id": self.snapshot_id, "status": self.status.value,
                "files_scanned": self.files_scanned, "bytes_scanned": self.bytes_scanned,
                "files_copied": self.files_copied, "bytes_copied": self.bytes_copied,
                "warnings": [w.to_dict() for w in self.warnings],
                "damaged": [{"path": p, "reason": r} for p, r in self.damaged],
                "started": self.started.isoformat() if self.started else None,
                "ended": self.ended.isoformat() if self.ended else None}


def check_sources(sources, set_path) -> list[str]:
    """``sources`` as absolute paths, checked: each exists and none lies inside the set.

    :func:`backup` checks again; callers that create a set call this first, so a
    typo in a source never leaves an empty new set behind.
    """
    if not sources:
        raise UsageError("Give at least one folder to back up.")
    paths = [os.path.abspath(os.path.expanduser(str(s))) for s in sources]
    plan_sources(paths)
    root = os.path.abspath(set_path)
    for s in paths:
        if is_inside(s, root):
            raise UsageError(f"The folder {s} lies inside the backup set {root}. Back up a folder "
                             "outside the set.")
    return paths


def backup(bset: BackupSet, sources, options: BackupOptions | None = None) -> BackupResult:
    """Back up ``sources`` (folders) into the opened set ``bset``.

    The set is opened or created by the caller (``BackupSet.open`` / ``BackupSet.create``;
    encryption is chosen at creation). Raises core.errors types; per-file problems end
    up in ``result.warnings``.
    """
    options = options or BackupOptions()
    source_paths = check_sources(sources, bset.root)
    clock = options.clock
    started = clock.now()
    # Nothing is written (not even the lock) before the set is proven to be where it seems.
    bset.layout.check_contained(options.boundary)
    with SetLock(bset.layout.lock, clock) as lock:
        run = _Run(bset, source_paths, options, lock)
        result = run.execute(started)
        if options.verify:
            result.damaged = run.repair(run.read_back())
            if result.damaged:
                result.status = BackupStatus.DAMAGED
        result.ended = clock.now()
        return result


def _same_stat(old, se: ScanEntry) -> bool:
    get = old.get if isinstance(old, dict) else lambda k: getattr(old, k)
    return (get("size") == se.size and get("mtime_ns") == se.mtime_ns and get("ino") == se.ino
            and get("ctime_ns") == se.ctime_ns)


class _Run:
    """One backup run's state; see the module docstring for the order of its steps."""

    def __init__(self, bset: BackupSet, source_paths: list[str], options: BackupOptions, lock: SetLock):
        self.bset, self.fs, self.layout = bset, bset.fs, bset.layout
        self.source_paths, self.options, self.lock = source_paths, options, lock
        self.progress, self.cancel, self.clock = options.progress, options.cancel, options.clock
        self.warnings: list[RunWarning] = []
        self.written: list[Entry] = []
        self.copied_from: dict[str, ScanEntry] = {}   # set path -> its source, for repairs
        self._mutex = threading.Lock()
        self._since_checkpoint = 0
        self._last_checkpoint = self.clock.monotonic()

    # --- the run ---------------------------------------------------------------------
    def execute(self, started: datetime) -> BackupResult:
        bset, layout = self.bset, self.layout
        clear_tmp(self.fs, layout.tmp)
        parent_id = bset.newest_id()
        trusted = self._resume(parent_id)
        parent, rescue = self._parent(parent_id)
        if rescue:
            trusted = {}
        known = parent or bset.newest_intact()
        sources = plan_sources(self.source_paths, known.sources if known else [])
        volume = probe_volume(layout.tmp)
        self.store = (EncryptedStore if bset.encrypted else PlainStore)(bset, volume, self.warnings,
                                                                        rehash=self.options.rehash)
        if bset.encrypted:
            # Whole objects: those a committed manifest names, and checkpointed journal entries'.
            self.store.trusted.update(e.obj for e in (parent.entries if parent else ()) if e.type == FILE)
            self.store.trusted.update(t.obj for t in trusted.values() if t.obj)
        if rescue and not bset.encrypted:
            self.store.set_aside_latest()
        snapshot_id = new_snapshot_id(started, parent_id)
        self.journal = journal_mod.Journal(self.fs, layout.journal, snapshot_id, parent_id, trusted, bset.keys)
        try:
            entries, stats = self._build(sources, parent, trusted, volume)
            self.cancel.check()
            self.progress(Progress("commit", stats["files"], stats["files"], stats["copied_bytes"],
                                   stats["copied_bytes"]))
            self._commit(Manifest(snapshot_id, started.isoformat(timespec="seconds"), self._host(), self.options.job,
                                  [s.to_dict() for s in sources], parent_id, entries))
        except BaseException:
            self._checkpoint_quietly()
            self.journal.close()
            raise
        status = BackupStatus.WARNINGS if self.warnings else BackupStatus.OK
        return BackupResult(str(layout.root), snapshot_id, status, stats["files"], stats["bytes"],
                            stats["copied_files"], stats["copied_bytes"], self.warnings, [], started)

    def _resume(self, parent_id: str | None) -> dict[str, journal_mod.Placed]:
        """The journal's trusted entries of an interrupted run on the same parent ({} if none)."""
        header, trusted = journal_mod.load(self.layout.journal, self.bset.keys)
        if header is not None and header.get("snapshot") == parent_id:
            # The last run committed but stopped before its last steps: finish them.
            if not self.bset.encrypted:
                write_latest_sums(self.bset, self.bset.manifest(parent_id))
            self.fs.unlink(self.layout.journal)
            return {}
        if header is None or header.get("parent") != parent_id:
            return {}
        return trusted

    def _parent(self, parent_id: str | None):
        """(the parent manifest or None, whether it is damaged and Latest/ must be rescued)."""
        if not parent_id:
            return None, False
        try:
            return self.bset.manifest(parent_id), False
        except ManifestDamaged as err:
            # Latest/ matches a manifest nobody can read: keep all of it (by its real
            # hash) in objects/ and copy everything again. Nothing older is lost.
            self.warnings.append(RunWarning(WarningCode.SNAPSHOT_DAMAGED, f"snapshots/{parent_id}",
                                            f"{err} This backup copied everything again; the damaged "
                                            "snapshot stays until you forget it."))
            return None, True

    def _host(self) -> str:
        return self.options.host or self.bset.meta.get("host") or socket.gethostname()

    def _commit(self, manifest: Manifest) -> None:
        """Steps 4 and 5 of the module docstring: the manifest is the commit point."""
        bset, layout = self.bset, self.layout
        self.fs.flush_volume(layout.root)          # 4: all data durable before the manifest
        write_atomic(self.fs, layout.tmp, layout.manifest(manifest.snapshot_id), bset.encode_manifest(manifest))
        bset.forget_cached(manifest.snapshot_id)
        if not bset.encrypted:                      # 5
            write_latest_sums(bset, manifest)
        self.journal.remove()

    def _build(self, sources, parent, trusted, volume) -> tuple[list[Entry], dict]:
        """Scan, place folders and links, copy changed files; the new snapshot's entries."""
        excluder = Excluder(self.options.excludes, skip_dirs=[str(self.layout.root)])
        scanned: list[ScanEntry] = []
        for se in scan(sources, excluder, self.warnings):
            scanned.append(se)
            if len(scanned) % 2000 == 0:
                self.cancel.check()
                self.progress(Progress("scan", len(scanned), 0, current=se.path))
        parent_map = parent.by_path() if parent else {}
        kinds = {se.path: se.type for se in scanned}
        removed = [e for e in parent_map.values() if kinds.get(e.path) != e.type]
        if not self.bset.encrypted:
            self._remove(removed)
        namer = MirrorNamer(volume)
        mirror_of: dict[str, str] = {"": ""}
        for e in parent_map.values():
            if kinds.get(e.path) == e.type:
                parent_dir = e.path.rpartition("/")[0]
                pm = parent_map[parent_dir].mirror_path if parent_dir in parent_map else ""
                namer.reserve(pm, e.mirror_path.rpartition("/")[2])
        entries: list[Entry] = []
        jobs = []
        stats = {"files": 0, "bytes": 0, "copied_files": 0, "copied_bytes": 0}
        for se in scanned:
            prev = parent_map.get(se.path)
            if prev is not None and prev.type != se.type:
                prev = None
            parent_dir, _, name = se.path.rpartition("/")
            if prev is not None:
                mirror = prev.mirror_path
            else:
                pm = mirror_of.get(parent_dir, parent_dir)
                mirror = (pm + "/" if pm else "") + namer.name_for(pm, name)
            mirror_of[se.path] = mirror
            e = Entry(se.path, se.type, se.size, se.mtime_ns, se.mode, target=se.target, ino=se.ino,
                      ctime_ns=se.ctime_ns, mirror=mirror if mirror != se.path else None)
            entries.append(e)
            if se.type == DIR:
                if not self.bset.encrypted and prev is None:   # known folders are there already
                    self._place_dir(mirror)
            elif se.type == LINK:
                if not self.bset.encrypted and volume.symlinks:
                    self._place_link(e, prev)
            else:
                stats["files"] += 1
                stats["bytes"] += se.size
                t = trusted.get(se.path)
                if prev is not None and not self.options.rehash and _same_stat(prev, se):
                    e.sha256, e.parts, e.obj = prev.sha256, prev.parts, prev.obj
                elif t is not None and _same_stat(t, se) and t.mirror == mirror:
                    e.sha256, e.parts, e.obj = t.sha256, t.parts, t.obj
                    if not self.store.has(e):
                        jobs.append((se, e, prev))
                else:
                    jobs.append((se, e, prev))
        self._copy_all(jobs, stats)
        entries = [e for e in entries if e.type != FILE or e.sha256]
        return entries, stats

    # --- Latest/ housekeeping (plain sets) ---------------------------------------------
    def _remove(self, removed: list[Entry]) -> None:
        """Take what left the sources out of Latest/ (deepest first), keeping old content."""
        for old in sorted(removed, key=lambda e: sort_key(e.path), reverse=True):
            if old.type == DIR:
                p = self.layout.latest_file(old.mirror_path, writing=True)
                self.layout.forget_folders()   # a symlink could take its place: prove it again
                if not self.fs.remove_dir(p):
                    self.warnings.append(RunWarning(WarningCode.LATEST_FOREIGN, f"Latest/{old.mirror_path}",
                                                    "holds files Plugback did not put there; left in place"))
            else:
                self.store.displace(old)

    def _place_dir(self, mirror: str) -> None:
        p = self.layout.latest_file(mirror, writing=True)
        if self.fs.make_dir(p):
            return
        if os.path.islink(p) or not os.path.isdir(p):
            # Not in the newest snapshot as a file (that was displaced above): an
            # interrupted run's work, whose content is in objects/ or nowhere needed.
            self.fs.unlink(p)
            self.fs.mkdir(p)

    def _place_link(self, e: Entry, prev: Entry | None) -> None:
        p = self.layout.latest_file(e.mirror_path, writing=True)
        if prev is not None and os.path.islink(p):
            try:
                if os.readlink(p) == e.target:
                    return
            except OSError:
                pass
        if os.path.lexists(p):
            self.fs.unlink(p)
        self.fs.symlink(e.target, p)

    # --- copying ---------------------------------------------------------------------
    def _copy_all(self, jobs, stats) -> None:
        total_bytes = sum(se.size for se, _, _ in jobs)
        done = {"files": 0, "bytes": 0}
        stop = threading.Event()

        def one(se: ScanEntry, e: Entry, prev: Entry | None) -> None:
            if stop.is_set():
                return
            self.cancel.check()
            copied = self._read_with_retries(se, e, prev)
            if copied is not None:
                e.sha256, e.size, e.obj = copied.sha256, copied.size, copied.obj
                e.parts = len(copied.tmp_paths) if len(copied.tmp_paths) > 1 else 0
                placed = self.store.place(copied, e, prev)
                if not placed:
                    self._after_place(e)   # same bytes: only the mode or time changed
                if placed:
                    with self._mutex:
                        stats["copied_files"] += 1
                        stats["copied_bytes"] += e.size
                        self.written.append(e)
                        self.copied_from[e.path] = se
                if copied.changed:
                    e.ino = e.ctime_ns = 0   # never "unchanged": the next run copies it again
                    self.warnings.append(RunWarning(WarningCode.CHANGED_WHILE_READING, se.abspath,
                                                    "changed while it was being backed up; the next "
                                                    "backup copies it again"))
                else:
                    self.journal.record(journal_mod.Placed(e.path, e.mirror_path, e.sha256, e.obj, e.size,
                                                           e.mtime_ns, e.ino, e.ctime_ns, e.parts))
            with self._mutex:
                done["files"] += 1
                done["bytes"] += se.size
                self._since_checkpoint += se.size
                report = Progress("copy", done["files"], len(jobs), done["bytes"], total_bytes, se.path)
            self.progress(report)
            self._maybe_checkpoint()

        if not jobs:
            return
        with ThreadPoolExecutor(max_workers=max(1, self.options.workers)) as pool:
            futures = [pool.submit(one, *job) for job in jobs]
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in finished:
                if f.exception() is not None:
                    stop.set()
                    for other in futures:
                        other.cancel()
                    break
        errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception()]
        if errors:
            # A destination error outranks a cancel: it is what the user must act on.
            errors.sort(key=lambda ex: isinstance(ex, Cancelled))
            raise errors[0]

    def _read_with_retries(self, se: ScanEntry, e: Entry, prev: Entry | None):
        """The copied content, or None when the source could not be read (a warning is added)."""
        for attempt in range(SOURCE_RETRIES):
            try:
                return self.store.copy_in(se)
            except PlugbackError:
                raise
            except FileNotFoundError:
                # Deleted since the scan: it leaves the snapshot, and Latest/ as well.
                if prev is not None:
                    self.store.displace(prev)
                e.sha256 = None
                return None
            except OSError as err:
                if attempt + 1 < SOURCE_RETRIES:
                    self.clock.sleep(SOURCE_RETRY_DELAY)
                    continue
                if prev is not None:
                    # Keep the version the last snapshot had; it is still in Latest/.
                    e.sha256, e.size, e.mtime_ns, e.parts, e.obj = (prev.sha256, prev.size, prev.mtime_ns,
                                                                    prev.parts, prev.obj)
                    e.ino = e.ctime_ns = 0
                    self.warnings.append(RunWarning(WarningCode.KEPT_PREVIOUS, se.abspath,
                                                    f"could not be read ({err.strerror or err}); the "
                                                    "snapshot keeps its previous version"))
                else:
                    e.sha256 = None
                    self.warnings.append(RunWarning(WarningCode.UNREADABLE, se.abspath,
                                                    f"could not be read ({err.strerror or err}), skipped"))
                return None
        return None

    def _after_place(self, e: Entry) -> None:
        """Bring an unchanged copy's time and mode in ``Latest/`` up to date (new copies get them
        through their descriptor, in ``copy_in``)."""
        if self.bset.encrypted or e.parts:
            return
        p = self.layout.latest_file(e.mirror_path, writing=True)
        if os.path.islink(p) or not os.path.isfile(p):
            return   # not the copy Plugback made: never change what a symlink points to
        self.fs.set_times(p, e.mtime_ns)
        self.fs.chmod(p, e.mode)

    def _checkpoint_due(self) -> bool:
        return (self.clock.monotonic() - self._last_checkpoint >= CHECKPOINT_SECONDS
                or self._since_checkpoint >= CHECKPOINT_BYTES)

    def _maybe_checkpoint(self) -> None:
        if not self._checkpoint_due():
            return
        with self._mutex:
            if not self._checkpoint_due():
                return
            self._last_checkpoint = self.clock.monotonic()
            self._since_checkpoint = 0
        count = self.journal.pending()
        self.fs.flush_volume(self.layout.root)
        self.journal.checkpoint(count)
        self.lock.refresh()

    def _checkpoint_quietly(self) -> None:
        """After a failure: keep what is durable for the next run, if the drive still answers."""
        try:
            count = self.journal.pending()
            self.fs.flush_volume(self.layout.root)
            self.journal.checkpoint(count)
        except (PlugbackError, OSError):
            pass   # the drive is gone or failing: the run's own error is what the user hears

    # --- verification ----------------------------------------------------------------
    def read_back(self) -> list[tuple[str, str]]:
        """Read what this run wrote back from the drive (cache dropped) and compare hashes."""
        from core.engine.verify import check_entry

        damaged = []
        total = sum(e.size for e in self.written)
        done = 0
        written = sorted(self.written, key=lambda e: sort_key(e.path))
        # Reads from a cold cache wait on the drive: several at once keep it busy.
        with ThreadPoolExecutor(max_workers=max(2, self.options.workers * 2)) as pool:
            checks = pool.map(lambda e: check_entry(self.bset, e, self.store.written_paths(e)), written)
            for i, (e, problem) in enumerate(zip(written, checks, strict=True)):
                if problem:
                    damaged.append((e.path, problem))
                done += e.size
                self.progress(Progress("verify", i + 1, len(written), done, total, e.path))
        return damaged

    def repair(self, damaged: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Copy each file that read back wrong once more from its unchanged source, over the bad
        copy, and read it back again; what is still wrong."""
        from core.engine.verify import check_entry

        by_path = {e.path: e for e in self.written}
        still = []
        for path, reason in damaged:
            e, se = by_path[path], self.copied_from.get(path)
            try:
                copied = self.store.copy_in(se) if se is not None else None
            except OSError:
                copied = None
            if copied is not None and (copied.changed or copied.sha256 != e.sha256
                                       or len(copied.tmp_paths) != len(self.store.written_paths(e))):
                self.store.discard(copied)
                copied = None
            if copied is None:
                still.append((path, reason))
                continue
            self.store.overwrite(copied, e)
            problem = check_entry(self.bset, e, self.store.written_paths(e))
            if problem:
                still.append((path, problem))
        return still
