"""A backup run: scan the sources, compare with the parent snapshot, copy what changed,
commit a new snapshot, verify what was written.

One sorted pass (memory flat in the number of files, docs/architecture.md "Streaming"):
the scan and the parent manifest are both streams in manifest order and are merged
path by path; copies run in a worker pool inside a bounded window, and each entry
goes to the new manifest (spooled locally) in manifest order once its copy finished.
The parent manifest is read twice: once whole, to check it (its trailer) and to
note the names its copies have in ``Latest/``, before anything is written on its
word; then merged. A parent this computer wrote itself and can prove by its local record
(core/engine/trust.py) is read from the drive once, into a local copy that is merged, and
the runs of records a journal scan reuses are copied into the new manifest as they were
(core/engine/splice.py).

Write order (the crash-safety proof; tests/core/engine/test_crash.py crashes at every step):

1. ``tmp/`` is cleared and the journal names the planned snapshot.
2. Removed and replaced files leave ``Latest/`` only by a rename into ``objects/``
   (core/engine/store.py), and new content is written to ``tmp/`` and renamed into place (a
   first backup builds Latest/ whole in ``tmp/``, renamed at step 4: core/engine/fresh_latest.py).
   A new entry never gets the ``Latest/`` name of another entry of the parent snapshot
   (hashset.StreamNamer), so removals can happen during the pass; a removed folder goes
   when the pass leaves it (deepest first), and an entry that replaces a folder of the
   same name waits for that.
   Each committed snapshot's content therefore stays in ``objects/`` or where the
   newest snapshot put it in ``Latest/``.
3. Every few seconds the volume is flushed and the journal checkpointed, so an
   interrupted run's durable work is reused, not copied again.
4. The volume is flushed (a first backup's Latest/ then named and flushed), then the manifest is written to ``tmp/``, fsynced and
   renamed into ``snapshots/``: the commit point. Only now does the snapshot exist.
5. ``Latest.sha256`` is rewritten and the journal removed (a crash between 4 and 5
   is finished by the next run).
6. What was written is read back from the drive and checked against the manifest, in a thread
   (core/engine/readback_thread.py): in a plain set on Linux what each flush of step 3 made durable,
   beside the pass; the rest from the commit on, beside step 5 (only what a flush made durable is
   ever read). A first backup's big files copied ahead are read back as soon as their own
   ``fdatasync`` returned (core/engine/copy_ahead.py), and not again. What read back wrong is
   copied again after step 5.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime
from typing import Iterable

from core.engine import copy_ahead, fresh_latest, readback, sealpool
from core.engine import journal as journal_mod
from core.engine.atomic import clear_tmp, write_atomic
from core.engine.backup_options import BackupOptions as BackupOptions
from core.engine.backup_options import BackupResult as BackupResult
from core.engine.backup_options import BackupStatus as BackupStatus
from core.engine.backup_options import check_sources as check_sources
from core.engine.backup_options import same_stat as same_stat
from core.engine.checkpoints import Checkpoints
from core.engine.fs import READS_AHEAD, host_name, long_path, probe_volume
from core.engine.hashset import StreamNamer
from core.engine.lock import SetLock
from core.engine.manifest import DIR, FILE, LINK, Entry, Manifest
from core.engine.manifest_io import ManifestWriter
from core.engine.progress import Progress, RunWarning, WarningCode
from core.engine.readback_ahead import Written
from core.engine.readback_thread import ReadBack
from core.engine.repo import BackupSet, new_snapshot_id
from core.engine.reuse import Reuse
from core.engine.scan import Excluder, ScanEntry, plan_sources
from core.engine.source_ahead import OpenAhead
from core.engine.sourceread import SOURCE_RETRIES as SOURCE_RETRIES  # noqa: F401 - where tests look
from core.engine.sourceread import SOURCE_RETRY_DELAY as SOURCE_RETRY_DELAY  # noqa: F401
from core.engine.sourceread import read_with_retries
from core.engine.splice import ProvenParent, Splice
from core.engine.store import EncryptedStore, PlainStore
from core.engine.sums import LatestSums
from core.engine.window import Window
from core.errors import Cancelled, ManifestDamaged, PlugbackError

CHECKPOINT_SECONDS = 5.0
CHECKPOINT_BYTES = 256 << 20
WINDOW_FILES = 1024         # entries waiting for their copy (or one before them) at most
WINDOW_BYTES = 256 << 20    # bytes of copies queued at most (always at least one file)
INLINE_BYTES = 1 << 20     # files smaller than this are copied in the pass's own thread
PROGRESS_EVERY = 1000       # entries between reports (and cancel checks) while nothing is copied


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
        try:
            result = run.execute(started)
            if run.reading is not None:   # (started by execute once the snapshot was committed)
                result.damaged = readback.repair(run, run.reading.result())
                if result.damaged:
                    result.status = BackupStatus.DAMAGED
        finally:
            run.close()
        result.ended = clock.now()
        return result


class _Run:
    """One backup run's state; see the module docstring for the order of its steps."""

    def __init__(self, bset: BackupSet, source_paths: list[str], options: BackupOptions, lock: SetLock):
        self.bset, self.fs, self.layout = bset, bset.fs, bset.layout
        self.plain = not bset.encrypted
        self.source_paths, self.options, self.lock = source_paths, options, lock
        self.progress, self.cancel, self.clock = options.progress, options.cancel, options.clock
        self.warnings: list[RunWarning] = []
        self.stats = {"files": 0, "bytes": 0, "copied_files": 0, "copied_bytes": 0, "done_files": 0,
                      "done_bytes": 0, "checked_files": 0, "checked_bytes": 0}   # (checked: read back early)
        self._checked: set[str] = set()   # placed copies read back already (copy_ahead.py: a few big files)
        self.writer = ManifestWriter()
        self.sums = LatestSums() if self.plain else None
        self.written = Written(self.clock.monotonic) if options.verify else None   # what to read back (readback_ahead.py)
        self._mutex = threading.Lock()
        self._errors: list[BaseException] = []   # the workers' failures
        self._stop = threading.Event()
        self._since_checkpoint = 0
        self._last_checkpoint = self.clock.monotonic()
        self.checkpoints = Checkpoints(self._make_checkpoint)   # step 3, in a thread beside the pass
        self._removing: list[Entry] = []    # removed folders the pass is inside, deepest last
        self._deferred: tuple[ScanEntry, str] | None = None   # replaces the folder being removed
        self.ahead = OpenAhead(self._prefetch)   # small files opened ahead of their copy
        self.copying_ahead: copy_ahead.CopyAhead | None = None   # a first backup's big files copied ahead
        self._dirs: list[tuple[str, str]] = []    # (path, mirror) of the folders the pass is inside
        self._phase = "scan"
        self._parent_totals: dict | None = None   # the best guess of the totals during the scan
        self._scan_done = False
        self._count = 0
        self.sealing: sealpool.Sealing | None = None   # encrypted sets: small files sealed by workers
        self.reuse = Reuse(options.changes, options.excludes, options.rehash, source_paths, str(bset.layout.root))
        self.reading: ReadBack | None = None   # step 6, from a checkpoint or the commit on (readback_thread.py)
        self._read_ahead = self.plain and READS_AHEAD   # (step 6 beside the pass: plain sets, Linux)
        self.proven = ProvenParent(options.cache, bset.set_id)
        self.fresh: fresh_latest.FreshLatest | None = None   # a first backup's Latest/ built in tmp/

    def close(self) -> None:
        self.checkpoints.finish(quietly=True)   # (execute did, unless it failed before its pass)
        if self.reading is not None:   # (the run failed after the commit: nothing of it keeps running)
            self.reading.stop()
        if self.sealing is not None:
            self.sealing.close()
        # Every local temporary file of the run, now: a failed run's _Run lives on in reference
        # cycles and in the error's traceback, so the garbage collector would close them late.
        self.proven.close()
        if self.fresh is not None:   # (Latest/ paths lead to Latest/ again, for what runs after)
            self.fresh.close()
        for spool in (self.writer, self.written, self.sums):
            if spool is not None:
                spool.close()

    # --- the run ---------------------------------------------------------------------
    def execute(self, started: datetime) -> BackupResult:
        bset, layout = self.bset, self.layout
        clear_tmp(self.fs, layout.tmp, keep=fresh_latest.STAGE)
        parent_id = bset.newest_id()
        trusted = journal_mod.resume(self.bset, parent_id)
        volume = self.volume = probe_volume(layout.tmp)
        self.fresh = fresh_latest.start(bset, parent_id, trusted, volume)
        self.store = (PlainStore if self.plain else EncryptedStore)(bset, volume, self.warnings,
                                                                    rehash=self.options.rehash)
        parent = self._check_parent(parent_id)
        if parent_id and parent is None:   # damaged: rescue Latest/, trust nothing of that run
            trusted = {}
            if isinstance(self.store, PlainStore):
                self.store.set_aside_latest()
        known = parent or self._newest_header()
        sources = plan_sources(self.source_paths, known.sources if known else [])
        if isinstance(self.store, EncryptedStore):
            # Whole objects: those a committed manifest names (the check above noted the
            # parent's), and checkpointed journal entries'.
            self.store.trusted.update(t.obj for t in trusted.values() if t.obj)
        snapshot_id = new_snapshot_id(started, parent_id)
        self.journal = journal_mod.Journal(self.fs, layout.journal, snapshot_id, parent_id, trusted, bset.keys)
        try:
            self._parent_totals = parent.totals if parent else None
            self._pass(sources, parent_id if parent else None, trusted)
            self.checkpoints.finish(committing=True)   # (none beside the commit; an error raised here)
            self.cancel.check()
            s = self.stats
            self.progress(Progress("commit", s["files"], s["files"], s["copied_bytes"], s["copied_bytes"]))
            self._commit(Manifest(snapshot_id, started.isoformat(timespec="seconds"), self._host(), self.options.job,
                                  [s.to_dict() for s in sources], parent_id, scan=self.reuse.record(self.warnings)))
            self._after_commit(snapshot_id)
        except BaseException:
            self._checkpoint_quietly()
            self.journal.close()
            raise
        status = BackupStatus.WARNINGS if self.warnings else BackupStatus.OK
        s = self.stats
        return BackupResult(str(layout.root), snapshot_id, status, s["files"], s["bytes"],
                            s["copied_files"], s["copied_bytes"], self.warnings, [], started, scan=self.reuse.kind)

    def _check_parent(self, parent_id: str | None) -> Manifest | None:
        """The parent manifest's header, after reading it whole: it is intact (else None and a
        warning), and the namer and the store know the names and objects it uses."""
        self.namer = StreamNamer(self.volume, self._taken)
        if not parent_id:
            return None
        if (proven := self.proven.read(self.bset, parent_id, self.reuse, self.namer, self.store, self.sums)):
            return proven
        self.namer = StreamNamer(self.volume, self._taken)   # (forgets what a failed proven read noted)
        try:
            with self.bset.open_manifest(parent_id) as reader:
                self.reuse.begin(reader.manifest)
                for e in reader:
                    self.reuse.note(e)
                    self.namer.reserve(e.mirror_path, e.path)
                    if e.obj and isinstance(self.store, EncryptedStore):
                        self.store.trusted.add(e.obj)
                return reader.manifest
        except ManifestDamaged as err:
            # Latest/ matches a manifest nobody can read: keep all of it (by its real
            # hash) in objects/ and copy everything again. Nothing older is lost.
            self.warnings.append(RunWarning(WarningCode.SNAPSHOT_DAMAGED, f"snapshots/{parent_id}",
                                            f"{err} This backup copied everything again; the damaged "
                                            "snapshot stays until you forget it."))
            self.namer = StreamNamer(self.volume, self._taken)
            if isinstance(self.store, EncryptedStore):
                self.store.trusted.clear()
            return None

    def _newest_header(self) -> Manifest | None:
        """The header of the newest intact snapshot (for its source names), read as a stream."""
        for sid in reversed(self.bset.snapshot_ids()):
            try:
                with self.bset.open_manifest(sid) as reader:
                    for _ in reader:
                        pass
                    return reader.manifest
            except ManifestDamaged:
                continue
        return None

    def _taken(self, mirror_path: str) -> bool:
        return self.plain and os.path.lexists(long_path(self.layout.latest_file(mirror_path)))

    def _host(self) -> str:
        return self.options.host or self.bset.meta.get("host") or host_name()

    def _commit(self, header: Manifest) -> None:
        """Step 4 of the module docstring: the manifest is the commit point."""
        bset, layout = self.bset, self.layout
        self.fs.flush_volume(layout.root)          # 4: all data durable before the manifest
        if self.fresh is not None:   # (a first backup's Latest/ gets its name, durable, before the manifest)
            self.fresh.name(self.reading)
        write_atomic(self.fs, layout.tmp, layout.manifest(header.snapshot_id),
                     self.proven.tee(bset, bset.manifest_chunks(self.writer, header)))
        bset.forget_cached(header.snapshot_id)

    def _after_commit(self, snapshot_id: str) -> None:
        """Step 5, while step 6 (the read-back, which only reads what step 4's flush made durable)
        starts in a thread beside it: core/engine/readback_thread.py."""
        if self.written is not None and (self.reading is not None or self.stats["copied_files"]):
            self._reader().committed()
        if self.sums is not None:
            self.sums.commit(self.bset)
        self.proven.record(self.bset, snapshot_id, self.writer, self.sums.state if self.sums else None)
        self.journal.remove()

    # --- the pass --------------------------------------------------------------------
    def _pass(self, sources, parent_id: str | None, trusted) -> None:
        """Merge the scan with the parent's entries; place, copy and remove; entries to the writer."""
        excluder = Excluder(self.options.excludes, skip_dirs=[str(self.layout.root)])
        self.trusted = trusted
        try:
            with ExitStack() as stack:
                stack.callback(self.proven.close)
                stack.callback(self.ahead.close)   # (small files opened ahead and not copied)
                old: Iterable[Entry] = ()
                if parent_id:   # (the proven parent's local copy, if there is one)
                    old = stack.enter_context(self.proven.lines() or self.bset.open_manifest(parent_id))
                # (a first backup's, not a resumed one's: files it placed before are not copied again)
                self.copying_ahead = copy_ahead.start(self.options.prefetch, self.store, not parent_id and not trusted,
                                                      check=self.written is not None)
                if self.copying_ahead is not None:   # (closed after the pool: its copies may wait on it)
                    stack.callback(self.copying_ahead.close)
                pool: Executor = stack.enter_context(ThreadPoolExecutor(max_workers=max(1, self.options.workers)))
                if isinstance(self.store, EncryptedStore):   # (its workers stop before the pool's threads)
                    self.sealing = sealpool.Sealing(self.store, self.options.rehash)
                    stack.push(self.sealing.close_on_error)   # (kept for the read-back; close() ends them)
                    pool = sealpool.Dispatch(pool)
                self.window = Window(pool, self._emit_any, WINDOW_FILES, WINDOW_BYTES)
                try:
                    for item in self._scanning(self.reuse.pairs(parent_id, sources, excluder, self.warnings, old,
                                                                self.options.prefetch)):
                        self._splice(item) if isinstance(item, Splice) else self._step(*item)
                    self._leave(None)
                    self.window.drain()
                    self.proven.settle(self.writer, self.stats)
                except BaseException:
                    self._stop.set()   # queued copies end at once; running ones finish
                    raise
        except BaseException as err:
            # A destination error outranks a cancel: it is what the user must act on.
            first = sorted(self._errors + [err], key=lambda ex: isinstance(ex, Cancelled))[0]
            if first is err:
                raise
            raise first from None
        self._report("")

    def _scanning(self, entries):
        """``entries``, a little ahead: the small files among them that will be copied are opened and
        read ahead by the OS while the pass copies the ones before (core/engine/source_ahead.py)."""
        yield from self.ahead.scanning(entries)
        self._scan_done = True   # the totals are known now

    def _prefetch(self, item) -> str | None:
        """The source path of a small file ``item`` will copy (opened ahead), or None."""
        se, prev = item if type(item) is tuple else (None, None)   # (scan entry, parent entry)
        if (se is not None and se.type == FILE and 0 < se.size < INLINE_BYTES
                and (prev is None or self.options.rehash or not same_stat(prev, se))
                and (self.sealing is None or self.sealing.keep(se))):   # (seal workers start their own reads)
            return se.abspath
        return None

    def _step(self, se: ScanEntry | None, old: Entry | None) -> None:
        """One path: removed (``se`` None), new (``old`` None) or in both."""
        either = se if se is not None else old
        assert either is not None   # merge() yields at least one of the two
        path = either.path
        self._leave(path)
        self._count += 1
        if self._count % PROGRESS_EVERY == 0:
            self.cancel.check()
            self._report(path)
        if se is not None and (old is None or se.type == old.type):
            self._add(se, old)
            return
        assert old is not None   # merge() yields at least one of the two
        # Gone, or another type now: out of Latest/ first (a folder once the pass leaves it).
        if self.plain and old.type == DIR:
            self._removing.append(old)
        elif self.plain:
            self.store.displace(old)
        if se is None:
            return
        if self.plain and old.type == DIR:
            self._deferred = (se, old.mirror_path)
        else:
            self._add(se, None, old.mirror_path)

    def _splice(self, sp: Splice) -> None:
        """Records a journal scan reused as they were (a proven parent's lines): one window item
        (counted once the pass ends: ProvenParent.settle). A full scan's unchanged records
        (core/engine/fullsplice.py) are counted here, and the pass is inside their folders."""
        self._leave(sp.first)
        for path in sp.dirs:   # (as _add does: new entries below take their mirror names from these)
            self._dir_mirror(path.rpartition("/")[0])
            self._dirs.append((path, path))   # (a kept folder line has no mirror name)
        if sp.lines:
            with self._mutex:
                for key, n in (("files", sp.files), ("bytes", sp.size)):
                    self.stats[key] += n
                    self.stats["done_" + key] += n
            reported, self._count = self._count // PROGRESS_EVERY, self._count + sp.lines
            if self._count // PROGRESS_EVERY != reported:
                self._report(sp.last)
        self.cancel.check()
        self.window.put(sp)

    def _emit_any(self, item, placed) -> None:
        item.emit(self.writer, self.sums) if isinstance(item, Splice) else self._emit(item, placed)

    def _leave(self, path: str | None) -> None:
        """Remove the removed folders ``path`` is not inside (all of them for None), deepest first."""
        while self._removing and (path is None or not path.startswith(self._removing[-1].path + "/")):
            old = self._removing.pop()
            if isinstance(self.store, PlainStore):   # (only plain sets have Latest/ folders to remove)
                self.store.remove_dir(old)
            if self._deferred is not None and self._deferred[0].path == old.path:
                (se, mirror), self._deferred = self._deferred, None
                self._add(se, None, mirror)

    def _dir_mirror(self, folder: str) -> str:
        """The mirror path of ``folder``, a folder the pass is inside ("" for the top)."""
        while self._dirs and self._dirs[-1][0] != folder:
            self._dirs.pop()
        return self._dirs[-1][1] if self._dirs else ""

    def _add(self, se: ScanEntry, prev: Entry | None, mirror: str | None = None) -> None:
        """A scanned entry: ``prev`` is the parent's entry of the same type (or None); ``mirror``
        the name in Latest/ of an entry of another type it replaces."""
        parent_dir, _, name = se.path.rpartition("/")
        pm = self._dir_mirror(parent_dir)
        if prev is not None:
            mirror = prev.mirror_path
        elif mirror is None:
            mirror = (pm + "/" if pm else "") + self.namer.name_for(pm, name)
        e = Entry(se.path, se.type, se.size, se.mtime_ns, se.mode, target=se.target, ino=se.ino,
                  ctime_ns=se.ctime_ns, mirror=mirror if mirror != se.path else None, attrs=se.attrs)
        if se.type == DIR:
            self._dirs.append((se.path, mirror))
            if isinstance(self.store, PlainStore) and prev is None:   # known folders are there already
                self.store.place_dir(mirror)
            self.window.put((e, se))
        elif se.type == LINK:
            # An unchanged link (its lstat and target as the parent recorded) is in Latest/ as the
            # parent left it, as an unchanged file is: not looked at again (on a cold cache, a lookup
            # of every folder above it on the drive).
            unchanged = prev is not None and prev.target == se.target and same_stat(prev, se) and not self.options.rehash
            if isinstance(self.store, PlainStore) and self.volume.symlinks and not unchanged:
                self.store.place_link(e, prev)
            self.window.put((e, se))
        else:
            self._add_file(se, e, prev)

    def _add_file(self, se: ScanEntry, e: Entry, prev: Entry | None) -> None:
        with self._mutex:
            self.stats["files"] += 1
            self.stats["bytes"] += se.size
        t = self.trusted.get(se.path)
        if prev is not None and not self.options.rehash and same_stat(prev, se):
            e.sha256, e.parts, e.obj, e.stored = prev.sha256, prev.parts, prev.obj, prev.stored
        elif t is not None and same_stat(t, se) and t.mirror == e.mirror_path:
            e.sha256, e.parts, e.obj, e.stored = t.sha256, t.parts, t.obj, t.stored
            if not self.store.has(e):
                self._copy_later(se, e, prev)
                return
        else:
            self._copy_later(se, e, prev)
            return
        with self._mutex:
            self.stats["done_files"] += 1
            self.stats["done_bytes"] += se.size
        self.window.put((e, se))

    def _copy_later(self, se: ScanEntry, e: Entry, prev: Entry | None) -> None:
        """Copy ``se``: a small file here and now (handing it to a worker thread costs more than
        copying it, and every hand-off trades the GIL) or, in an encrypted set with many, by a
        worker process (core/engine/sealpool.py: placed here, in order, once it is sealed), a
        bigger one in the pool."""
        if se.size < INLINE_BYTES:
            ticket = self.sealing.ticket(se, lambda sealed: self._copy_one(se, e, prev, sealed)) \
                if self.sealing is not None else None
            if ticket is not None:
                self.window.put((e, se), ticket)
                return
            self.window.put((e, se), result=self._copy_one(se, e, prev))
        else:
            self.window.put((e, se), lambda: self._copy_one(se, e, prev), se.size)

    def _emit(self, item: tuple[Entry, ScanEntry], placed) -> None:
        """``item``'s entry is final: to the new manifest (and Latest.sha256, and the read-back)."""
        e, se = item
        if e.type == FILE and not e.sha256:
            return   # could not be read, or gone since the scan
        self.writer.add(e)
        if self.sums is not None:
            self.sums.add(e)
        if placed:
            self.stats["copied_files"] += 1
            self.stats["copied_bytes"] += e.size
            if self.written is not None and e.path in self._checked:   # (read back already: not again)
                self.stats["checked_files"] += 1
                self.stats["checked_bytes"] += e.size
            elif self.written is not None:
                self.written.add(readback.record(e, se))

    def _progress_now(self, current: str) -> Progress:
        """Files and bytes done of the total, which is known once the scan ended; until then
        the parent snapshot's size is the best guess, and a first backup has none (0)."""
        s, parent = self.stats, self._parent_totals
        if self._scan_done:
            files, total = s["files"], s["bytes"]
        elif parent is not None:
            files, total = max(s["files"], parent["files"]), max(s["bytes"], parent["bytes"])
        else:
            files = total = 0
        return Progress(self._phase, s["done_files"], files, s["done_bytes"], total, current)

    def _report(self, current: str) -> None:
        with self._mutex:
            report = self._progress_now(current)
        self.progress(report)

    # --- copying (in the pool) -----------------------------------------------------------
    def _copy_one(self, se: ScanEntry, e: Entry, prev: Entry | None, sealed: sealpool.Sealed | None = None) -> bool:
        """Copy ``se`` into the set as ``e``; whether content was written (else it was there).
        ``sealed``: what a sealpool worker made of it (None: read it here)."""
        if self._stop.is_set():
            return False
        try:
            self.cancel.check()
            placed = self._copy(se, e, prev, sealed)
        except BaseException as err:
            with self._mutex:
                self._errors.append(err)
            self._stop.set()
            raise
        with self._mutex:
            self._phase = "copy"
            self.stats["done_files"] += 1
            self.stats["done_bytes"] += se.size
            self._since_checkpoint += se.size
            report = self._progress_now(se.path)
        self.progress(report)
        self._maybe_checkpoint()
        return placed

    def _copy(self, se: ScanEntry, e: Entry, prev: Entry | None, sealed: sealpool.Sealed | None = None) -> bool:
        copied = self.store.adopt(sealed) if sealed is not None else None   # type: ignore[union-attr]
        if copied is None:   # (a worker that could not read or write it left it to this thread)
            copied = self._read_with_retries(se, e, prev)
        if copied is None:
            return False
        e.sha256, e.size, e.obj = copied.sha256, copied.size, copied.obj
        e.parts = len(copied.tmp_paths) if len(copied.tmp_paths) > 1 else 0
        placed = self.store.place(copied, e, prev)
        if placed and copied.checked:   # (a set's add is atomic; _emit looks once this copy finished)
            self._checked.add(e.path)
        elif not placed:
            self._after_place(e)   # same bytes: only the mode or time changed
        if copied.changed:
            e.ino = e.ctime_ns = 0   # never "unchanged": the next run copies it again
            self.warnings.append(RunWarning(WarningCode.CHANGED_WHILE_READING, se.abspath,
                                            "changed while it was being backed up; the next "
                                            "backup copies it again"))
        else:
            self.journal.record(journal_mod.Placed(e.path, e.mirror_path, e.sha256, e.obj, e.size,
                                                   e.mtime_ns, e.ino, e.ctime_ns, e.parts, e.stored))
        return placed

    def _read_with_retries(self, se: ScanEntry, e: Entry, prev: Entry | None):
        """The copied content, or None when the source could not be read (a warning is added)."""
        copied = self.copying_ahead.take(se) if self.copying_ahead is not None else None
        store = self.fresh.into(self.store, e) if self.fresh is not None else self.store
        return copied or read_with_retries(store, se, e, prev, self.clock, self.warnings, self.ahead.take(se.abspath))

    def _after_place(self, e: Entry) -> None:
        """Bring an unchanged copy's time and mode in ``Latest/`` up to date (new copies get them
        through their descriptor, in ``copy_in``)."""
        if not self.plain or e.parts:
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
        # (cut before the flush: the lines in it are of files placed before it, durable after it)
        blocks = self.written.cut() if self._read_ahead and self.written is not None else 0
        self.checkpoints.request(count, blocks)   # (the flush and the rest: _make_checkpoint)

    def _make_checkpoint(self, count: int, blocks: int) -> None:
        """Step 3 in the checkpoints' thread (checkpoints.py): what was counted and cut before
        the flush is durable after it, and only then said so."""
        self.fs.flush_volume(self.layout.root)
        self.journal.checkpoint(count)
        if blocks:
            self._reader().release(blocks)
        self.lock.refresh()

    def _reader(self) -> ReadBack:
        """Step 6's thread: started by the first checkpoint with copies, else by the commit (as before)."""
        with self._mutex:
            self.reading = self.reading or ReadBack(self, ahead=self._read_ahead)
            return self.reading

    def _checkpoint_quietly(self) -> None:
        """After a failure: keep what is durable for the next run, if the drive still answers."""
        self.checkpoints.finish(quietly=True)   # (none beside this one)
        try:
            count = self.journal.pending()
            self.fs.flush_volume(self.layout.root)
            self.journal.checkpoint(count)
        except (PlugbackError, OSError):
            pass   # the drive is gone or failing: the run's own error is what the user hears
