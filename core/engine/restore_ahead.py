"""A plain local set's restore where reads can be started ahead (Linux): small files opened in the
restoring thread, each with its read started up to :data:`AHEAD` files before it is written, and
written by one or two writer threads (:func:`writers`); big files in :data:`BIG_WORKERS` worker threads
(core/engine/restore.py chooses this, restore_file.py writes).

Why not a pool for every file (what other systems and sets still use): with 8 worker threads the
standard set's restore (27,000 files, 1 GiB) made 1.8 million ``futex`` calls, 67 a file: the
threads handing the GIL to each other around every system call, for files that take microseconds
each. One thread that asks the drive for the next files' bytes (``posix_fadvise`` WILLNEED, as
readback.py's read-back does) keeps the drive as busy as the threads did. Small files are handed
to the writers :data:`SMALL_BATCH` at a time (a hand-off per file would cost more than the file), so
opening (the folder made, ``lstat``, ``open``, the read started) and writing (read, hash, write, set
the time, rename into place) run side by side on two cores, each mostly in system calls, for two
hand-offs a batch; a second writer writes while the first waits for a read the drive has not
finished (docs/performance.md, "#11: the standard set's restore, written beside its opens"). Big
files (1 MiB and more) go to workers: hashing and copying them lets go of the GIL. Every content
file is opened below the set's folder with no symlink followed on the way (``safeio.SetFolders``;
docs/architecture.md, "Restore: a set's content read below its folder only").

Order: every file's room (what is in the way) is decided in manifest order in this thread. A file
kept under another name ("x (restored).txt") waits until every file before it is written, and its
free name is then looked for again: not one that an earlier file still to be written takes.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Iterable

from core.engine import safeio
from core.engine.chunks import ChunkPaths
from core.engine.fs import READS_AHEAD
from core.engine.manifest import DIR, FILE, Entry
from core.engine.repo import BackupSet, _content_error
from core.engine.restore_dirs import DirSpool
from core.engine.restore_file import (
    Decided,
    OnConflict,
    Opened,
    RestoreOutcome,
    Room,
    locate,
    open_ahead,
    write_file,
)

if TYPE_CHECKING:
    from core.engine.restore import _Restorer

# Small files opened, their reads started, before the one written: 64 kept ~1 MB of the standard set's
# reads in flight; 256 (~4 MB, 256 descriptors) was faster in the same cold runs (docs/performance.md,
# "#11: the standard set's restore against restic and borg").
def _ahead(most: int = 256) -> int:
    """``most``, or a quarter of this process's open-file limit where that is lower (a soft limit
    of 1,024 is common; every file read ahead holds a descriptor until it is written)."""
    if sys.platform == "win32":
        return 64   # (the read-ahead runs only on Linux: fs.READS_AHEAD)
    import resource

    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return 64
    return most if soft == resource.RLIM_INFINITY else max(8, min(most, soft // 4))


AHEAD = _ahead()
BIG_FILE = 1 << 20      # files this big are restored by a worker thread
BIG_WORKERS = 2         # one a core on this 2-core class of machine; each mostly outside the GIL
BIG_PENDING = 4         # big files handed to the workers ahead of the one being counted


WRITERS = 2             # threads writing small files, at most (writers())


def writers(direct: bool, cores: int | None = None) -> int:
    """Threads writing small files. Each renamed into place (a root that exists): :data:`WRITERS`, a
    second writer writing while the first waits for a read (restore3: 0.87x one writer's wall on 2
    cores). Written at their own names (a new root, no rename: ``_Restorer.direct_tops``): one a
    core beside the restoring thread's, at most :data:`WRITERS`; on 2 cores one writer took less CPU
    than two, less time at 100,000 tiny files and within ~5 % on the standard set (docs/performance.md,
    "#11: the restore without a rename per file")."""
    if not direct:
        return WRITERS
    if cores is None:
        affinity = getattr(os, "sched_getaffinity", None)   # (Linux: the cores this process may use)
        cores = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    return max(1, min(WRITERS, cores - 1))
SMALL_BATCH = 32        # small files handed to a writer at a time (a hand-off per file costs more)
SMALL_PENDING = 4       # batches handed to the writers ahead of the one being counted

# (the entry, where it goes, its outcome or its content's paths, those opened)
_Small = tuple[Entry, Room, "Decided | list", "Opened | None"]
_Big = tuple[Entry, "Future[Decided]"]
_Batch = tuple[list[_Small], "Future[list]"]


def usable(bset) -> bool:
    """Whether this way restores from ``bset``: a plain local set (an encrypted or remote set's
    content is read through ``read_content``, in the worker pool) on a system with read-ahead."""
    return READS_AHEAD and isinstance(bset, BackupSet) and bset.keys is None


def restore_all(run: _Restorer, entries: Iterable[Entry], dirs: DirSpool) -> None:
    """``_Restorer.restore_all`` this way: folders and symlinks as they come, small files opened
    here (their reads started ahead) and written by the writer threads, big files in the workers;
    memory flat (bounded queues)."""
    with ThreadPoolExecutor(max_workers=max(1, min(run.options.workers, BIG_WORKERS))) as pool, \
            ThreadPoolExecutor(max_workers=writers(bool(run.direct_tops))) as writers_pool:
        q = _Queues(run, pool, writers_pool)
        try:
            for e in map(run.names.local, entries):
                if e.type == DIR:
                    run.folder(e, dirs)
                elif e.type == FILE:
                    _file(q, e)
                else:
                    if run.options.on_conflict is OnConflict.KEEP_BOTH:   # (see _file)
                        q.drain()
                    run.link(e)
            q.drain()
        finally:
            q.close()


class _Queues:
    """What one restore has under way: small files opened ahead (``small``), batches of them handed
    to the writer threads (``batches``), big files handed to the workers (``big``). No more than
    :data:`AHEAD` small files are open at once, here and handed out together."""

    def __init__(self, run: _Restorer, pool: ThreadPoolExecutor, writers: ThreadPoolExecutor):
        self.run, self.pool, self.writers = run, pool, writers
        # (the small files' content, opened in this thread below the set's folder: no symlink followed)
        self.folders = safeio.SetFolders(run.bset.layout.root, _content_error, kept=max(4, AHEAD // 4)) \
            if safeio.SetFolders.USABLE else None
        self.small: deque[_Small] = deque()
        self.batches: deque[_Batch] = deque()
        self.big: deque[_Big] = deque()
        self.batch = max(1, min(SMALL_BATCH, AHEAD // (2 * SMALL_PENDING)))   # half of AHEAD out at most
        self.opened = AHEAD - self.batch * SMALL_PENDING   # small files opened here, not handed out yet

    def hand_small(self) -> None:
        """Hand the oldest small files (a batch) to the writers, once they have fewer than SMALL_PENDING."""
        while len(self.batches) >= SMALL_PENDING:
            self.count_batch()
        batch = [self.small.popleft() for _ in range(min(self.batch, len(self.small)))]
        self.batches.append((batch, self.writers.submit(_write_batch, self.run, batch)))

    def count_batch(self) -> None:
        batch, future = self.batches.popleft()
        for item, decided in zip(batch, future.result(), strict=True):
            _count(self.run, item[0], decided)

    def drain(self) -> None:
        """Write every small file waiting and count every file handed out."""
        while self.small:
            self.hand_small()
        while self.batches:
            self.count_batch()
        while self.big:
            _finish_big(self.run, self.big.popleft())

    def close(self) -> None:
        """Stop what has not started; close what was opened for it (a batch being written closes its own)."""
        for batch, future in self.batches:
            if future.cancel():
                _close_all(batch)
        _close_all(self.small)
        for _, big in self.big:
            big.cancel()
        if self.folders is not None:
            self.folders.close()


def _close_all(items: Iterable[_Small]) -> None:
    for _, _, _, opened in items:
        if opened is not None:
            opened.close()


def _write_batch(run: _Restorer, batch: list[_Small]) -> list:
    """A writer thread's work: each small file of ``batch`` written and checked, in order; when one
    fails or the restore is cancelled, the rest are closed unwritten."""
    done: list = []
    try:
        for item in batch:
            run.options.cancel.check()
            done.append(_write_small(run, item))
    finally:
        _close_all(batch[len(done):])
    return done


def _write_small(run: _Restorer, item: _Small) -> Decided:
    e, room, found, opened = item
    return found if isinstance(found, tuple) else write_file(run.bset, e, room, found, opened, run.direct(e))


def _file(q: _Queues, e: Entry) -> None:
    """Restore the file entry ``e`` now (kept under another name), or queue it, small or big."""
    run = q.run
    run.options.cancel.check()
    room = run.room(e)
    if room[1] is RestoreOutcome.KEPT_BOTH:   # a free name is one no file before it takes: asked again, all written
        q.drain()
        room = run.room(e)
        _count(run, e, restore_one(run, e, room))
    elif e.size >= BIG_FILE:
        q.big.append((e, q.pool.submit(restore_one, run, e, room)))
        while len(q.big) > BIG_PENDING:
            _finish_big(run, q.big.popleft())
    else:
        q.small.append(_start(run, e, room, q.folders))
        if len(q.small) >= q.opened:
            q.hand_small()


def _start(run: _Restorer, e: Entry, room: Room, folders: safeio.SetFolders | None) -> _Small:
    """Find a small file's content and open it, its read started (nothing to open: its outcome)."""
    found = locate(run.bset, e, room, run.plan.newest, run.objects)
    return e, room, found, None if isinstance(found, tuple) else open_ahead(found, folders)


def restore_one(run: _Restorer, e: Entry, room: Room) -> Decided:
    """Restore the file ``e`` now, in this thread (a big file in a worker): its content opened below the
    set's folder with no symlink followed (``safeio.open_regular``'s root), read to its size at most."""
    found = locate(run.bset, e, room, run.plan.newest, run.objects)
    if isinstance(found, tuple):
        return found
    opened = None if isinstance(found, ChunkPaths) else \
        Opened(found, ahead=False, root=run.bset.layout.root)
    return write_file(run.bset, e, room, found, opened, run.direct(e))


def _finish_big(run: _Restorer, item: _Big) -> None:
    e, future = item
    _count(run, e, future.result())


def _count(run: _Restorer, e: Entry, decided: Decided) -> None:
    run.result.count(*run.done(e, *decided))
