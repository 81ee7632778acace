"""A plain local set's restore where reads can be started ahead (Linux): small files in the restoring
thread, each opened and its read started :data:`AHEAD` files before it is written; big files in
:data:`BIG_WORKERS` worker threads (core/engine/restore.py chooses this, restore_file.py writes).

Why not a pool for every file (what other systems and sets still use): with 8 worker threads the
standard set's restore (27,000 files, 1 GiB) made 1.8 million ``futex`` calls, 67 a file: the
threads handing the GIL to each other around every system call, for files that take microseconds
each. One thread that asks the drive for the next files' bytes (``posix_fadvise`` WILLNEED, as
readback.py's read-back does) keeps the drive as busy as the threads did. Big files (1 MiB and
more) still go to workers: hashing and copying them lets go of the GIL, so they run on the other
core beside the small files.

Order: every file's room (what is in the way) is decided in manifest order in this thread. A file
kept under another name ("x (restored).txt") waits until every file before it is written, and its
free name is then looked for again: not one that an earlier file still to be written takes.
"""

from __future__ import annotations

import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Iterable

from core.engine.fs import READS_AHEAD
from core.engine.manifest import DIR, FILE, Entry
from core.engine.repo import BackupSet
from core.engine.restore_dirs import DirSpool
from core.engine.restore_file import (
    Decided,
    OnConflict,
    Opened,
    RestoreOutcome,
    Room,
    locate,
    open_ahead,
    restore_file,
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

# (the entry, where it goes, its outcome or its content's paths, those opened)
_Small = tuple[Entry, Room, "Decided | list", "Opened | None"]
_Big = tuple[Entry, "Future[Decided]"]


def usable(bset) -> bool:
    """Whether this way restores from ``bset``: a plain local set (an encrypted or remote set's
    content is read through ``read_content``, in the worker pool) on a system with read-ahead."""
    return READS_AHEAD and isinstance(bset, BackupSet) and bset.keys is None


def restore_all(run: _Restorer, entries: Iterable[Entry], dirs: DirSpool) -> None:
    """``_Restorer.restore_all`` this way: folders and symlinks as they come, small files here
    (their reads started ahead), big files in the workers; memory flat (bounded queues)."""
    small: deque[_Small] = deque()
    big: deque[_Big] = deque()
    with ThreadPoolExecutor(max_workers=max(1, min(run.options.workers, BIG_WORKERS))) as pool:
        try:
            for e in map(run.names.local, entries):
                if e.type == DIR:
                    run.folder(e, dirs)
                elif e.type == FILE:
                    _file(run, e, small, big, pool)
                else:
                    if run.options.on_conflict is OnConflict.KEEP_BOTH:   # (see _file)
                        _drain(run, small, big)
                    run.link(e)
            _drain(run, small, big)
        finally:
            for _, _, _, opened in small:
                if opened is not None:
                    opened.close()
            for _, future in big:
                future.cancel()


def _file(run: _Restorer, e: Entry, small: deque[_Small], big: deque[_Big], pool: ThreadPoolExecutor) -> None:
    """Restore the file entry ``e`` now (kept under another name), or queue it, small or big."""
    run.options.cancel.check()
    room = run.room(e)
    if room[1] is RestoreOutcome.KEPT_BOTH:   # a free name is one no file before it takes: asked again, all written
        _drain(run, small, big)
        room = run.room(e)
        _count(run, e, restore_file(run.bset, e, room, run.plan.newest, run.objects))
    elif e.size >= BIG_FILE:
        big.append((e, pool.submit(restore_file, run.bset, e, room, run.plan.newest, run.objects)))
        while len(big) > BIG_PENDING:
            _finish_big(run, big.popleft())
    else:
        small.append(_start(run, e, room))
        while len(small) > AHEAD:
            _finish_small(run, small.popleft())


def _start(run: _Restorer, e: Entry, room: Room) -> _Small:
    """Find a small file's content and open it, its read started (nothing to open: its outcome)."""
    found = locate(run.bset, e, room, run.plan.newest, run.objects)
    return e, room, found, None if isinstance(found, tuple) else open_ahead(found)


def _finish_small(run: _Restorer, item: _Small) -> None:
    e, room, found, opened = item
    _count(run, e, found if isinstance(found, tuple) else write_file(run.bset, e, room, found, opened))


def _finish_big(run: _Restorer, item: _Big) -> None:
    e, future = item
    _count(run, e, future.result())


def _drain(run: _Restorer, small: deque[_Small], big: deque[_Big]) -> None:
    """Write every small file waiting and count every big one handed to the workers."""
    while small:
        _finish_small(run, small.popleft())
    while big:
        _finish_big(run, big.popleft())


def _count(run: _Restorer, e: Entry, decided: Decided) -> None:
    run.result.count(*run.done(e, *decided))
