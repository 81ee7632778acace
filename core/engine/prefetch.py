"""The sources' folders read ahead of the scan, so the OS has their metadata cached when it asks.

The scan (core/engine/scan.py) lists one folder and ``lstat``s one entry at a time, in one
thread, between bits of Python. On a cold cache each of those waits for the disk, one request
at a time, and a no-change backup of the standard set (~29,000 entries) spent most of its
time there (issue #11; ``rsync -a`` reads its two trees in two processes at once). Here a few
threads walk the same folders in the same order (depth first, names sorted) a little ahead of
it: each lists a folder and ``lstat``s its entries, so the disk has several requests in
flight and the scan finds its answers cached. Nothing is kept: the threads only fill the
OS's cache, and the scan still reads every folder and entry itself (what it records is what
it read, never what a thread saw earlier).

``plugback backup`` starts it before it loads the engine (a cold start reads ~250 modules
from the disk too, and the sources' folders can be read meanwhile); the scan then hands it
the excludes (:meth:`Prefetch.exclude`). The walk leaves out what the scan leaves out
(excluded folders, the set itself) and never follows a symlink. Memory: the folders waiting
to be read (at most one listing's subfolders per depth). It stops when the scan ends
(:meth:`Prefetch.stop`), and by itself on a warm tree: when the entries it reads are already
cached it only competes with the scan for the interpreter (it doubled a warm scan's CPU), so
after :data:`WARM_FOLDERS` folders in a row read without the disk it ends. "Without the disk":
on Linux the thread's own count of blocks read (``getrusage(RUSAGE_THREAD).ru_inblock``) did not
grow; elsewhere, the folder took less than :data:`WARM_ENTRY_S` an entry (a weaker sign: time
spent waiting for the interpreter counts too). By default no threads run at all
(:data:`DEFAULT_THREADS`: measured, they cost more than they save on a quiet machine). Only a
full scan is read ahead: a journal scan (the agent's change hint) reads a few folders.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from core.engine.fs import long_path

THREADS = 4           # folders read at once (requests in flight for the disk)
WARM_FOLDERS = 64     # folders in a row read without the disk: the tree is cached, stop
WARM_ENTRY_S = 4e-6   # seconds per entry (listing and lstat) below which a folder was cached (not Linux)

COUNTS_BLOCKS = sys.platform == "linux"   # (a thread's own count of blocks read: RUSAGE_THREAD)
# Where a warm tree is not told reliably (no block count: the time a folder took includes waits for
# the GIL), the read-ahead could double a warm scan's work, and it was measured on Linux only:
# elsewhere no threads by default (Windows lists a folder's lstat fields with it anyway).
# Off by default (lead, 2026-11-26 19:40): on a quiet machine the threads' own lstat calls cost
# more than the waits they save (the standard set's no-change backup 0.80 -> 1.22 s of CPU and
# 1.07 -> 1.24 s wall; a day of changes 1.16 -> 1.37 s CPU, the same wall); they won only on a
# loaded machine. ``Prefetch(threads=THREADS)`` turns them on; see docs/architecture.md.
DEFAULT_THREADS = 0


def _blocks_read() -> int:
    """Blocks this thread has read from a disk (0 where that is not counted: :data:`COUNTS_BLOCKS`)."""
    if sys.platform == "linux":
        import resource

        return resource.getrusage(resource.RUSAGE_THREAD).ru_inblock
    return 0


def _never(rel: str, is_dir: bool) -> bool:
    return False


class Prefetch:
    """Threads reading the folders below ``roots`` (absolute) ahead of a scan; ``excluded(rel,
    True)`` and ``skip`` ((device, inode) pairs) say which folders the scan does not enter."""

    def __init__(self, roots: list[str], excluded=_never, skip: frozenset | set = frozenset(),
                 threads: int | None = None, warm_entry_s: float = WARM_ENTRY_S, count_blocks: bool = True):
        self._excluded, self._skip, self._warm_entry_s = excluded, skip, warm_entry_s
        self._count_blocks = count_blocks and COUNTS_BLOCKS   # (else: the time a folder took)
        self._todo: list[tuple[str, str]] = [(root, "") for root in reversed(roots)]   # (a stack: depth first)
        self._cv = threading.Condition()
        self._busy = 0
        self._warm = 0
        self.stopped = False
        self._threads = [threading.Thread(target=self._work, name="plugback-prefetch", daemon=True)
                         for _ in range(DEFAULT_THREADS if threads is None else threads)]
        for t in self._threads:
            t.start()

    def exclude(self, excluded, skip: frozenset | set) -> None:
        """The scan's excludes, from now on (folders already listed are checked again when read)."""
        self._excluded, self._skip = excluded, skip

    def stop(self) -> None:
        """End the threads (the folders being read finish first)."""
        with self._cv:
            self.stopped = True
            self._cv.notify_all()
        for t in self._threads:
            t.join()

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._todo and self._busy and not self.stopped:
                    self._cv.wait()
                if self.stopped or not self._todo:
                    self.stopped = True   # (all read: the others end too)
                    self._cv.notify_all()
                    return
                root, rel = self._todo.pop()
                self._busy += 1
            below: list[str] = []
            try:
                below = self._read(root, rel)
            finally:
                with self._cv:
                    self._busy -= 1
                    self._todo.extend((root, sub) for sub in reversed(below))
                    self._cv.notify_all()

    def _read(self, root: str, rel: str) -> list[str]:
        """List the folder ``rel`` of ``root`` and lstat its entries; its subfolders the scan enters."""
        if rel and self._excluded(rel, True):
            return []
        started, n = time.perf_counter(), 1
        blocks = _blocks_read() if self._count_blocks else 0
        below = []
        try:
            with os.scandir(long_path(os.path.join(root, rel) if rel else root)) as it:   # (as the scan does)
                for d in it:
                    if self.stopped:
                        break
                    st = d.stat(follow_symlinks=False)
                    n += 1
                    if d.is_dir(follow_symlinks=False):
                        sub = f"{rel}/{d.name}" if rel else d.name
                        if not self._excluded(sub, True) and (st.st_dev, st.st_ino) not in self._skip:
                            below.append(sub)
        except OSError:
            return []   # (the scan reads it again and says what is wrong)
        if self._count_blocks:
            warm = _blocks_read() == blocks
        else:
            warm = time.perf_counter() - started < n * self._warm_entry_s
        with self._cv:
            self._warm = self._warm + 1 if warm else 0
            if self._warm >= WARM_FOLDERS:
                self.stopped = True
        below.sort()
        return below
