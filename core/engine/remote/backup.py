"""Backing up into a remote set: scan, hash, upload what the remote lacks, read it back, manifest last.

Write order (the crash-safety proof; docs/format.md "Remote sets"):

1. Take the set's :class:`RemoteLock`; clear what interrupted puts left in ``tmp/``. (A set
   :meth:`RemoteSet.create_started` is making: the scan, hashing and packing start before;
   every write waits until ``plugback.json`` is stored and the lock taken, :func:`_backup_new`.
   A set that exists: the scan and the small files' reads start before, while the set unlocks
   and this lock is taken, core/engine/remote/ahead.py; they only read the sources.)
2. List ``objects/`` and the pack indexes once into a scratch table (names only; memory
   stays flat), and delete the packs no index names (a cut run's, maybe torn: packs are
   written in place); the parent manifest is read to its checked end, into a local copy.
3. Walk the sources in manifest order beside the parent snapshot's entries. A file
   whose size, time, inode and ctime match the parent's entry keeps its object
   (if the listing has it). Any other file is read once to hash it: its keyed name
   says whether the remote has the content already (a resumed run skips what a cut
   run uploaded). Content under 1 MiB is kept from that read, encrypted from those
   very bytes and checked (decrypted, it must hash to its name; else the run stops) before it joins a
   pack, which is put, read back, and indexed (core/engine/remote/packs.py). Larger
   missing content is read again, encrypted on the fly and put (atomic: whole under
   its name, or not there), then read back and checked the same way. A file that
   changed between the two reads fails that check; its blob is deleted and the file
   keeps its previous version (a warning), as a file that cannot be read does.
4. Only when every object of the snapshot is stored and read back (the last pack
   too), the manifest is put and read back. Until then no snapshot names anything new, so a run cut at any
   step (a dropped connection, a killed rclone, a full remote) leaves the last
   committed snapshot as it was; it raises, never reports success.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import IO, Generator, Iterable, Iterator

from core.engine import crypto, scratch
from core.engine.backup_options import BackupOptions, BackupResult, BackupStatus, same_stat
from core.engine.fs import READS_AHEAD, long_path, read_ahead
from core.engine.layout import OBJECTS_DIR, SNAPSHOTS_DIR
from core.engine.manifest import FILE, Entry, Manifest
from core.engine.manifest_io import ManifestWriter
from core.engine.progress import Progress, RunWarning, WarningCode
from core.engine.remote.ahead import Ahead, Coded, Early, EarlyRead, Hashed, Opened, reopen
from core.engine.remote.commit import StagedManifest
from core.engine.remote.packs import INDEX_DIR, PACK_BELOW, PACKS_DIR, Packer, drop_unindexed
from core.engine.remote.parent import ParentAhead, ParentEntries, intact_header
from core.engine.remote.rset import RemoteSet, encrypted_chunks, object_blob
from core.engine.repo import new_snapshot_id
from core.engine.scan import Excluder, ScanEntry, plan_sources, scan
from core.engine.source_open import open_source
from core.engine.sourceread import read_with_retries
from core.engine.storage import Backend, BlobInfo, Source
from core.engine.storage.base import TMP, Staged, Stages, can_stage, is_unstaged
from core.engine.storage.lock import FOLDER as LOCKS_DIR
from core.engine.storage.lock import RemoteLock
from core.errors import DamagedSet, ObjectNameMismatch, PlugbackError, UsageError

WORKERS = 4             # big uploads in flight: a remote's latency, not the CPU, limits a put
WINDOW = 4096           # entries scanned and not yet in the manifest, at most (how far the scan runs ahead)
SMALL_AHEAD = 32        # small files opened, their reads started, before the one being read (Linux)
READ_BLOCK = 1 << 20
PROGRESS_EVERY = 1000   # unchanged files between progress reports
LOCK_CHECK = 30.0       # seconds between lock refresh checks while waiting for an upload
BIG_BEFORE_GATE = 2     # big files read and uploaded at once while a new set is made (scrypt's 128 MiB held)
EARLY_POLL = 0.02       # seconds between looks at a new set's gate, for a big file waiting to start before it
log = logging.getLogger(__name__)


def backup(rset: RemoteSet, sources, options: BackupOptions | None = None) -> BackupResult:
    """Back up ``sources`` (folders) into the opened remote set ``rset`` (see the module docstring)."""
    options = options or BackupOptions()
    if not sources:
        raise UsageError("Give at least one folder to back up.")
    paths = [os.path.abspath(os.path.expanduser(str(s))) for s in sources]
    plan_sources(paths)   # each exists and is a folder, before the lock is taken
    started = options.clock.now()
    if rset.created is not None:
        result = _backup_new(rset, paths, options, started)
    else:
        result = _backup_existing(rset, paths, options, started)
    result.ended = options.clock.now()
    return result


def _backup_existing(rset: RemoteSet, paths: list[str], options: BackupOptions, started) -> BackupResult:
    """A backup into a set that exists: the scan and the small files' reads start in a thread
    (:class:`core.engine.remote.ahead.Ahead`: no key, nothing written) while this thread unlocks
    the set (:meth:`RemoteSet.unlock`, when :meth:`RemoteSet.open_started` left it), takes the
    lock and lists the set; the run takes that work over when it starts."""
    warnings: list[RunWarning] = []
    ahead = Ahead(plan_sources(paths), Excluder(options.excludes), warnings, WINDOW,
                  rset.meta["encryption"].get("version", 1))   # (coding small files needs no key)
    parent = ParentAhead(rset.backend)      # the parent manifest's bytes (decrypted after the unlock)
    try:
        rset.unlock()       # a wrong passphrase stops here: nothing was written, the lock was not taken
        with RemoteLock(rset.backend, options.clock, purpose="backup") as lock, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="plugback-clean") as cleaner:
            # Under the lock, beside each other: tmp/ cleared (before anything is uploaded there),
            # snapshots/ listed again, objects/, index/ and packs/ listed.
            cleaning = cleaner.submit(rset.backend.clean_partial)
            parent.relist()
            with _Present(rset) as present, _Run(rset, options, present, lock, warnings) as run:
                cleaning.result()
                drop_unindexed(rset)     # (the listing read the indexes: what a cut run left in packs/)
                return run.execute(paths, started, ahead, parent)
    finally:
        ahead.close()
        parent.close()


def _backup_new(rset: RemoteSet, paths: list[str], options: BackupOptions, started) -> BackupResult:
    """The first backup into a set :meth:`RemoteSet.create_started` is making: the scan, hashing
    and packing start at once, while a thread finishes the set (scrypt, ``plugback.json``) and
    takes its lock; every write of the run waits for both (:class:`_Gated`). Nothing to list:
    the set is empty, and nothing is put before the lock is held."""
    created = rset.created
    assert created is not None
    lock = RemoteLock(rset.backend, options.clock, purpose="backup")
    ready: Future = Future()

    def prepare() -> None:
        try:
            created.result()
            lock.acquire()
        except BaseException as err:  # noqa: BLE001 - raised by the first write that waits for it
            ready.set_exception(err)
        else:
            ready.set_result(None)

    threading.Thread(target=prepare, name="plugback-prepare", daemon=True).start()
    raw, rset.backend = rset.backend, _Gated(rset.backend, ready)
    try:
        with _Present(rset, listed=False) as present, _Run(rset, options, present, lock, gate=ready) as run:
            result = run.execute(paths, started)
    except BaseException as err:
        rset.backend = raw
        wait([ready])
        lock.__exit__(type(err), err, err.__traceback__)   # released if held; its own failure is logged
        raise
    rset.backend = raw
    lock.release()
    return result


class _Gated:
    """A backend whose writes wait until ``ready`` (the set exists and is locked), and fail with
    its error; reads go through at once. A put that comes before then, to a backend that stages
    (:class:`~core.engine.storage.base.Stages`), uploads its bytes to ``tmp/`` at once and moves
    them onto the name once ``ready``: the uploads overlap the passphrase's scrypt and the set
    file's and the lock's puts, and no name appears before both (what a cut run left in ``tmp/``
    is cleared by the next run under the lock; nothing names it). Content put in place
    (``Unstaged``) waits, as every other write does."""

    def __init__(self, inner: Backend, ready: Future):
        self._inner, self._ready = inner, ready
        self.where = inner.where
        self._folders = threading.Event()
        if can_stage(inner):
            threading.Thread(target=self._make_folders, name="plugback-folders", daemon=True).start()
        else:
            self._folders.set()

    def _make_folders(self) -> None:
        """The new set's folders, made at once (a put into a missing folder costs more requests,
        and the first puts come together); only a shortcut: a put makes its folder anyway."""
        try:
            self._inner.make_folders(("", TMP, LOCKS_DIR, OBJECTS_DIR, PACKS_DIR, INDEX_DIR,   # type: ignore[attr-defined]
                                      SNAPSHOTS_DIR))
        except Exception as err:  # noqa: BLE001 - the puts will say what is wrong, if anything is
            log.info("Could not make the folders of %s ahead: %s", self.where, err)
        finally:
            self._folders.set()

    def put(self, name: str, data: Source) -> None:
        if self._ready.done() or is_unstaged(data) or not self.can_stage:
            self._ready.result()
            self._inner.put(name, data)
            return
        staged = self.stage(name, data)
        try:
            self._ready.result()
        except BaseException:
            self.discard(staged, quietly=True)
            raise
        self.commit(staged)

    # base.Stages: staging only uploads to tmp/ (at once); naming waits for the gate
    @property
    def can_stage(self) -> bool:
        return can_stage(self._inner)

    def stage(self, name: str, data: Source) -> Staged:
        self._folders.wait()
        return self._stager.stage(name, data)

    def commit(self, staged: Staged) -> None:
        self._ready.result()
        self._stager.commit(staged)

    def discard(self, staged: Staged, quietly: bool = False) -> None:
        try:
            self._stager.discard(staged)
        except Exception as err:
            if not quietly:
                raise
            log.info("Could not remove the upload of %s from tmp/: %s", staged.name, err)

    def make_folders(self, folders: Iterable[str]) -> None:
        self._stager.make_folders(folders)

    def read_staged(self, staged: Staged, offset: int = 0) -> Generator[bytes, None, None]:
        return self._stager.read_staged(staged, offset)

    @property
    def _stager(self) -> Stages:
        return self._inner      # type: ignore[return-value]

    def get(self, name: str, offset: int = 0) -> Generator[bytes, None, None]:
        return self._inner.get(name, offset)

    def stat(self, name: str) -> BlobInfo:
        return self._inner.stat(name)

    def list(self, folder: str = "") -> Iterator[BlobInfo]:
        return self._inner.list(folder)

    def delete(self, name: str) -> None:
        self._ready.result()
        self._inner.delete(name)

    def clean_partial(self) -> None:
        self._ready.result()
        self._inner.clean_partial()

    def close(self) -> None:
        self._inner.close()


class _Present:
    """The object names the remote holds (listed once), and those this run stored: a scratch table."""

    def __init__(self, rset: RemoteSet, listed: bool = True):
        self.db = scratch.connect()
        self.db.execute("CREATE TABLE present (name BLOB PRIMARY KEY, size INTEGER) WITHOUT ROWID")
        self._mutex = threading.Lock()
        self.db.execute("BEGIN")
        names = rset.object_names() if listed else iter(())
        for batch in scratch.batches((bytes.fromhex(n), size) for n, size in names):
            self.db.executemany("INSERT OR IGNORE INTO present VALUES (?, ?)", batch)
        self.db.execute("COMMIT")
        self.claims: dict[str, threading.Event] = {}   # names being uploaded now -> set when done

    def __contains__(self, name: str) -> bool:
        with self._mutex:
            return self._has(name)

    def _has(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM present WHERE name = ?", (bytes.fromhex(name),)).fetchone() is not None

    def size(self, name: str) -> int:
        """The stored size of an object the remote holds (what its entry's ``stored`` follows)."""
        with self._mutex:
            row = self.db.execute("SELECT size FROM present WHERE name = ?", (bytes.fromhex(name),)).fetchone()
        return row[0] if row else 0

    def claim(self, name: str) -> bool:
        """Whether this thread must upload ``name``: False once it is there (waits while another
        thread uploads it; if that upload is given up, the next caller claims it)."""
        while True:
            with self._mutex:
                if self._has(name):
                    return False
                event = self.claims.get(name)
                if event is None:
                    self.claims[name] = threading.Event()
                    return True
            event.wait()

    def release(self, name: str, stored: int | None) -> None:
        """``name``'s upload is over: ``stored`` bytes on the remote, or None (not stored)."""
        with self._mutex:
            if stored is not None:
                self.db.execute("INSERT OR IGNORE INTO present VALUES (?, ?)", (bytes.fromhex(name), stored))
            event = self.claims.pop(name, None)
        if event is not None:
            event.set()

    def __enter__(self) -> "_Present":
        return self

    def __exit__(self, *_) -> None:
        self.db.close()


@dataclass
class _Item:
    """One entry on its way into the manifest; ``read``: its file is read (hashed, stored unless
    the remote has it), by ``job`` in an upload thread, or, while ``small`` (content under
    PACK_BELOW), still to be read and packed by the run's own thread."""

    entry: Entry
    se: ScanEntry
    prev: Entry | None
    read: bool = False
    job: Future | None = None
    small: bool = False
    fd: int | None = None        # a small file opened ahead (its read started)
    early: Early | None = None   # a small file read before the keys were there (Ahead)

    def waiting(self) -> bool:
        return self.small or (self.job is not None and not self.job.done())


class _Run:
    """One backup run's state: the manifest being written and the uploads in flight."""

    def __init__(self, rset: RemoteSet, options: BackupOptions, present: _Present, lock: RemoteLock,
                 warnings: list[RunWarning] | None = None, gate: Future | None = None):
        self.rset, self.options, self.present, self.lock = rset, options, present, lock
        self.gate = gate                        # a new set's: done once it exists and is locked
        self._before_gate = threading.BoundedSemaphore(BIG_BEFORE_GATE)   # big files stored before then
        self.warnings: list[RunWarning] = [] if warnings is None else warnings
        self.stats = {"files": 0, "bytes": 0, "copied_files": 0, "copied_bytes": 0, "done_files": 0, "done_bytes": 0}
        self.totals = (0, 0)    # the parent snapshot's files and bytes: what progress counts towards
        self._stats_mutex = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="plugback-upload")
        self.writer = ManifestWriter()
        self.window: deque[_Item] = deque()
        self.small: deque[_Item] = deque()     # the window's small files not read yet, in order
        self.opened = 0                         # ... of which the first this many were opened ahead
        self.hashed = Hashed(rset.keys)
        self.packer = Packer(rset)
        # The parent manifest's stored bytes, read once from the remote (unlinked at once).
        self.parent_copy: IO[bytes] = tempfile.TemporaryFile(prefix="plugback-parent-")

    def __enter__(self) -> "_Run":
        return self

    def __exit__(self, *_) -> None:
        for item in self.window:
            if item.job is not None:
                item.job.cancel()
        for item in self.small:
            if item.fd is not None:
                os.close(item.fd)
        self.pool.shutdown(wait=True)
        self.packer.close()
        self.writer.close()
        self.parent_copy.close()

    def execute(self, paths: list[str], started, ahead: Ahead | None = None,
                parent_ahead: ParentAhead | None = None) -> BackupResult:
        rset = self.rset
        parent_id, fetched = parent_ahead.take(rset) if parent_ahead is not None else (rset.newest_id(), None)
        if fetched is not None:
            self.parent_copy.close()
            self.parent_copy = fetched
        parent = intact_header(rset, parent_id, self.parent_copy, fetched=fetched is not None)
        if parent is not None:
            self.totals = (parent.totals.get("files", 0), parent.totals.get("bytes", 0))
        sources = plan_sources(paths, parent.sources if parent else [])
        snapshot_id = new_snapshot_id(started, parent_id)
        entries = self._entries(sources, ahead)
        with ParentEntries(rset, parent.snapshot_id if parent else None, self.parent_copy) as prevs:
            for se, early in entries:
                self.options.cancel.check()
                self.lock.refresh_if_due()
                self._add(se, prevs.match(se), early)
                self._drain(WINDOW)
        while self.small:
            self._read_small()
        # The last pack goes out beside the big uploads still in flight, not after them; the
        # flush after the drain sends anything added since (a big file that shrank meanwhile).
        self.packer.flush()
        self._drain(0)
        self.packer.flush()
        s = self.stats
        self.options.progress(Progress("commit", s["files"], s["files"], s["copied_bytes"], s["copied_bytes"]))
        host = self.options.host or socket.gethostname()
        # The manifest is encrypted, checked and uploaded to tmp/ while the last pack is stored;
        # it is named last, once every object it names is stored and was read back (step 4).
        with StagedManifest(rset, self.writer, Manifest(snapshot_id, started.isoformat(timespec="seconds"), host,
                                                        self.options.job, [x.to_dict() for x in sources],
                                                        parent.snapshot_id if parent else None)) as manifest:
            self.packer.wait()
            manifest.commit()
        status = BackupStatus.WARNINGS if self.warnings else BackupStatus.OK
        return BackupResult(rset.root, snapshot_id, status, s["files"], s["bytes"], s["copied_files"],
                            s["copied_bytes"], self.warnings, [], started)

    def _entries(self, sources: list, ahead: Ahead | None) -> Iterator[tuple[ScanEntry, Early | None]]:
        """The scan, with the small files ``ahead`` read already; scanned again when the parent
        snapshot named these folders otherwise than ``ahead`` did (its names are kept)."""
        if ahead is not None and ahead.sources == sources:
            return ahead.handover()
        if ahead is not None:
            ahead.close()
            self.warnings.clear()   # (its scan's warnings: the new scan says them again)
        return ((se, None) for se in scan(sources, Excluder(self.options.excludes), self.warnings))

    def _add(self, se: ScanEntry, prev: Entry | None, early: Early | None = None) -> None:
        e = Entry(se.path, se.type, se.size, se.mtime_ns, se.mode, target=se.target, ino=se.ino,
                  ctime_ns=se.ctime_ns, attrs=se.attrs)
        item = _Item(e, se, prev)
        if se.type == FILE:
            self.stats["files"] += 1
            self.stats["bytes"] += se.size
            if (prev is not None and prev.obj and not self.options.rehash and same_stat(prev, se)
                    and prev.obj in self.present):
                e.sha256, e.obj, e.stored = prev.sha256, prev.obj, prev.stored
            elif se.size < PACK_BELOW:
                item.read = item.small = True
                item.early = early
                self.small.append(item)
            else:
                item.read = True
                item.job = self.pool.submit(self._store_big, se, e, prev)
        self.window.append(item)

    def _drain(self, keep: int) -> None:
        """Hand finished entries to the manifest, in order, until at most ``keep`` wait. Small
        files are read here, in this thread, when the window is full or the first entry waits for
        an upload: the scan runs ahead of them (big files found later start uploading at once),
        and no other thread competes with them for the interpreter."""
        while self.window and (len(self.window) > keep or not self.window[0].waiting()):
            item = self.window[0]
            while item.waiting():
                if self.small:
                    self._read_small()       # the oldest first: the first entry's own, when it is small
                elif item.job is not None:
                    wait([item.job], timeout=LOCK_CHECK)
                    self.lock.refresh_if_due()   # a long upload must not let the lock go stale
            self.window.popleft()
            if item.job is not None:
                item.job.result()   # an upload that failed fails the run, here
            if item.entry.type == FILE:
                self._progress(item.se, item.read)
            if item.entry.type != FILE or item.entry.sha256:
                self.writer.add(item.entry)

    def _progress(self, se: ScanEntry, read: bool) -> None:
        """Files handled so far (unchanged ones too), against the parent's totals while the scan
        has not passed them; reported for every file read, else every PROGRESS_EVERY files."""
        s = self.stats
        s["done_files"] += 1
        s["done_bytes"] += se.size
        if read or not s["done_files"] % PROGRESS_EVERY:
            files, size = max(self.totals[0], s["done_files"]), max(self.totals[1], s["done_bytes"])
            self.options.progress(Progress("copy", s["done_files"], files, s["done_bytes"], size, se.path))

    def _read_small(self) -> None:
        """Read, pack and check the oldest small file not read yet (its pack is stored later).
        The next SMALL_AHEAD are opened first and their reads started (Linux), so the drive
        works on them meanwhile, as reader threads would make it, without their GIL hand-offs."""
        self.options.cancel.check()
        self.lock.refresh_if_due()
        if READS_AHEAD:
            self._open_ahead()
        item = self.small.popleft()
        self.opened -= 1 if self.opened else 0
        fd, item.fd = item.fd, None
        early, item.early = item.early, None
        self._store(item.se, item.entry, item.prev, fd, early)     # (it closes fd)
        item.small = False

    def _open_ahead(self) -> None:
        while self.opened < min(SMALL_AHEAD, len(self.small)):
            item = self.small[self.opened]
            self.opened += 1
            if item.early is not None:
                continue        # read already
            try:
                item.fd = open_source(long_path(item.se.abspath))
            except OSError:
                continue        # tried again, and its trouble handled, when its turn comes
            read_ahead(item.fd)

    def _store_big(self, se: ScanEntry, e: Entry, prev: Entry | None) -> None:
        """A big file, in an upload thread. While a new set is being made (scrypt holds 128 MiB),
        BIG_BEFORE_GATE at a time: each read, hash and upload in flight holds a few MiB more."""
        while self.gate is not None and not self.gate.done():
            if self._before_gate.acquire(timeout=EARLY_POLL):
                try:
                    return self._store(se, e, prev)
                finally:
                    self._before_gate.release()
        return self._store(se, e, prev)

    # --- here for small files, in an upload thread for big ones -------------------------------
    def _store(self, se: ScanEntry, e: Entry, prev: Entry | None, fd: int | None = None,
               early: Early | None = None) -> None:
        """Hash ``se`` (``fd``: opened already; ``early``: read already); upload and read back its content
        unless the remote has it. ``e`` gets the content's fields, the previous version's (a warning),
        or no hash (left out)."""
        store: Hashed | Opened | EarlyRead = self.hashed
        if early is not None:
            store = EarlyRead(self.hashed, early)
        elif fd is not None:
            store = Opened(self.hashed, fd)
        read = read_with_retries(store, se, e, prev, self.options.clock, self.warnings)
        if read is None:
            return      # unreadable (previous version kept, or left out) or deleted since the scan
        hasher, size, content = read
        e.size, e.sha256, e.obj = size, hasher.sha256_hexdigest(), hasher.hexdigest()
        name = e.obj
        if not self.present.claim(name):
            e.stored = crypto.stored_field(e.size, self.present.size(name))   # the copy already there
            return
        stored = None
        try:
            stored = self._upload(se, e, name, content)
        finally:
            self.present.release(name, stored)
        if stored is None:
            self._changed(se, e, prev)
        else:
            e.stored = crypto.stored_field(e.size, stored)

    def _upload(self, se: ScanEntry, e: Entry, name: str, content: bytes | Coded | None) -> int | None:
        """Put the object and read it back (``content``, small content as it was hashed: into a pack,
        checked before it goes in): its stored size, or None when big content changed between reads."""
        blob = object_blob(name)
        backend, keys = self.rset.backend, self.rset.keys
        if content is not None:
            # Small content was read once: it is sealed from the very bytes hashed (maybe coded ahead).
            stream = (crypto.seal_coded(keys, content.coding, content.payload) if isinstance(content, Coded)
                      else crypto.seal_whole(keys, content))
            _check_sealed(keys, stream, name, e.size, se.abspath)
            self.packer.add(name, stream)
            stored = len(stream)
        else:
            try:
                fd = _reopen(long_path(se.abspath), se.ino, se.dev)
            except OSError:     # gone, swapped for a symlink (not followed) or replaced, since it was hashed
                return None
            sent = [0]

            def chunks() -> Iterator[bytes]:
                sent[0] = 0        # (a retried put sends it all again)
                for chunk in encrypted_chunks(keys, _file_blocks(fd, e.size)):
                    sent[0] += len(chunk)
                    yield chunk

            try:
                backend.put(blob, chunks)
            finally:
                os.close(fd)
            e.stored = crypto.stored_field(e.size, sent[0])   # the read-back checks the size it was sent
            try:
                for _ in self.rset.read_content(e):
                    pass
            except ObjectNameMismatch:
                backend.delete(blob)   # its content is not what its name says: nobody may use it
                return None
            stored = sent[0]
        with self._stats_mutex:
            self.stats["copied_files"] += 1
            self.stats["copied_bytes"] += e.size
        return stored

    def _changed(self, se: ScanEntry, e: Entry, prev: Entry | None) -> None:
        if prev is not None and prev.sha256 and prev.obj:
            e.sha256, e.size, e.mtime_ns, e.obj = prev.sha256, prev.size, prev.mtime_ns, prev.obj
            e.stored = prev.stored
            e.ino = e.ctime_ns = 0     # read again next time
            why = "changed while it was being backed up; the snapshot keeps its previous version"
        else:
            e.sha256 = None
            why = "changed while it was being backed up, skipped (it is backed up next time)"
        self.warnings.append(RunWarning(WarningCode.CHANGED_WHILE_READING, se.abspath, why))


def _check_sealed(keys: crypto.SetKeys, stream: bytes, name: str, size: int, path: str) -> None:
    """Before a small object joins a pack: its stream must open, as a restore opens it, to content named
    ``name``, the name of the very bytes sealed: a failure is a fault (the run stops), not a changed file."""
    try:
        crypto.check_whole(keys, stream, name, name=object_blob(name), max_size=size)
    except DamagedSet as err:
        raise PlugbackError(
            f"The encrypted copy of {path} did not decrypt back to the content read ({err}). Nothing holding "
            "it was uploaded or named, the backup stopped and the last snapshot is intact. This points to a "
            "fault in this computer's memory: run the backup again; if it happens again, test the memory.") from err


_reopen = reopen      # big content's second read: never through a symlink, nor another file than the scan's


def _file_blocks(fd: int, size: int) -> Iterator[bytes]:
    """The first ``size`` bytes, from the start (what was hashed; the read-back finds a change)."""
    left = size
    os.lseek(fd, 0, os.SEEK_SET)
    while left > 0 and (block := os.read(fd, min(READ_BLOCK, left))):
        left -= len(block)
        yield block
