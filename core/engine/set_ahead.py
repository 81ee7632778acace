"""The set's side of a day of changes looked up ahead, in the scan-ahead child (core/engine/scan_ahead.py).

A backup after a day of changes moves each changed or deleted file's old copy out of ``Latest/``
(``PlainStore.displace``) and puts the new one in its place. On a cold cache each of those costs
the disk's waits the pass's thread sits through: ``Latest/``'s folders proven one ``lstat`` each,
the old copy's ``lstat``, the rename's own path walk — ~0.2 s of a ~1.5 s standard-set day of changes
(issue #11, docs/performance.md "#11: the day of changes, third pass"). A thread of the backup's own
process to look them up lost to the interpreter's lock; the child has its own interpreter.

The child cannot know which files the backup will find changed (the manifest is the parent's), but
it can guess well: a source entry whose ``mtime`` or ``ctime`` is not older than the set's last
commit (the newer of ``snapshots/``'s and ``Latest.sha256``'s ``mtime``) has changed since, and a
folder that has also had entries added or removed. For those, two threads of the child look up
what the parent will: the entry's path in ``Latest/`` (each folder on the way ``lstat``-ed, as
``Layout.latest_name`` proves them, then the entry), and for a changed folder the entries of its
``Latest/`` counterpart the source no longer has (and what lies below those, as the parent's
removal walks it), so the deleted files' copies are cached when they are moved out.

A guess that is wrong costs a look-up, never a wrong result: nothing comes back to the parent and
nothing is written. The drive is untrusted: every folder is ``lstat``-ed before anything below it
is looked up, and a symlink or a non-folder ends that path (nothing is ever followed). At most
:data:`MAX_LOOKUPS` look-ups a run (a clock that went back, or a file system whose folder times do
not move, would flag everything: then the guess stops).
"""

from __future__ import annotations

import os
import queue
import stat
import threading

from core.engine.fs import long_path, read_ahead
from core.engine.layout import LATEST_DIR, LATEST_SUMS, OBJECTS_DIR, SNAPSHOTS_DIR

MAX_LOOKUPS = 8192   # paths looked up in the set at most, a run
MAX_NAMES = 65536    # source names held for the folder look-ups waiting, at most (memory stays flat)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
THREADS = 2          # (the look-ups wait on the disk: two keep it busy while the walk goes on)


def last_commit(set_root: str) -> int | None:
    """When the set last committed, by its files' times (ns), or None: no set there yet, or one
    with no snapshot (a first backup makes ``snapshots/`` before its commit: the scan-ahead child
    starting after that must still see a first backup, and name its big files to copy ahead)."""
    if not _has_snapshot(os.path.join(set_root, SNAPSHOTS_DIR)):
        return None
    times = []
    for name in (SNAPSHOTS_DIR, LATEST_SUMS):
        try:
            times.append(os.lstat(os.path.join(set_root, name)).st_mtime_ns)
        except OSError:
            pass
    return max(times) if times else None


def _has_snapshot(folder: str) -> bool:
    """Whether ``folder`` holds a manifest (``<id>.json.gz``); stops at the first."""
    try:
        with os.scandir(long_path(folder)) as it:
            return any(d.name.endswith(".json.gz") for d in it)
    except OSError:
        return False


def changed_since(st: os.stat_result, since: int) -> bool:
    """Whether an entry's times say it changed at or after ``since``."""
    return st.st_mtime_ns >= since or st.st_ctime_ns >= since


class SetAhead:
    """Look-ups in ``Latest/`` (strings: '/'-separated paths below it), done by threads, in order."""

    def __init__(self, latest: str, since: int, threads: int = THREADS):
        self.latest, self.since = latest, since
        self.root = os.path.dirname(latest)
        self._first = True
        self._held = 0            # names held by waiting folder look-ups
        self._lock = threading.Lock()
        self.left = MAX_LOOKUPS
        self.done = 0            # look-ups made (for tests)
        self._proven: set[str] = set()   # folders of Latest/ proven real, with their parents
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    @classmethod
    def of_set(cls, set_root: str) -> "SetAhead | None":
        """For the set at ``set_root`` (None when it has no committed snapshot to compare with)."""
        since = last_commit(set_root)
        if since is None:
            return None
        return cls(os.path.join(set_root, LATEST_DIR), since)

    def changed(self, st: os.stat_result) -> bool:
        return changed_since(st, self.since)

    def file(self, rel: str) -> None:
        """An entry that changed: its path in ``Latest/`` (and the folders on the way)."""
        self._put(("f", rel, None))

    def folder(self, rel: str, names: set[str]) -> None:
        """A folder that changed (``names``: its entries in the source): its ``Latest/`` counterpart's
        entries that are not in ``names``, and what lies below those."""
        with self._lock:
            if self._held + len(names) > MAX_NAMES:
                return   # (a look-up passed over, never a result)
            self._held += len(names)
        if not self._put(("d", rel, names)):
            with self._lock:
                self._held -= len(names)

    def finish(self) -> None:
        """Wait for the look-ups asked for (the child's walk is done)."""
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join()

    def _put(self, job) -> bool:
        """Queue a look-up (False: the run's look-ups are used up)."""
        if self._first:   # something changed: the commit reads Latest.sha256, displace looks in objects/
            self._first = False
            self._jobs.put(("s", "", None))
        if self.left <= 0:
            return False
        self.left -= 1
        self._jobs.put(job)
        return True

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            kind, rel, names = job
            try:
                if kind == "f":
                    self._lstat(rel)
                elif kind == "s":
                    self._set_files()
                else:
                    self._gone(rel, names)
            except OSError:
                pass   # (gone, or not readable: the parent finds out itself)
            finally:
                if names is not None:
                    with self._lock:
                        self._held -= len(names)

    def _set_files(self) -> None:
        """``Latest.sha256`` asked of the disk (the commit patches or rewrites it), and every
        ``objects/xx/`` folder looked in once (a changed file's old copy is moved there, or found
        there already: a look-up in that folder each)."""
        sums = os.path.join(self.root, LATEST_SUMS)
        try:   # (a regular file only: opening a device or a FIFO planted there could do something)
            fd = os.open(sums, os.O_RDONLY | _NOFOLLOW | _NONBLOCK) if stat.S_ISREG(os.lstat(sums).st_mode) else -1
        except OSError:
            fd = -1
        if fd >= 0:
            read_ahead(fd)
            os.close(fd)
        objects = os.path.join(self.root, OBJECTS_DIR)
        try:
            if not stat.S_ISDIR(os.lstat(objects).st_mode):
                return
        except OSError:
            return
        for i in range(256):
            folder = os.path.join(objects, f"{i:02x}")
            try:
                if not stat.S_ISDIR(os.lstat(folder).st_mode):
                    continue
                os.lstat(os.path.join(folder, "-"))   # (no such name: the folder's entries are read)
            except OSError:
                pass

    def _path(self, rel: str) -> str:
        return long_path(os.path.join(self.latest, rel) if rel else self.latest)

    def _real_folder(self, folder: str) -> bool:
        """Whether ``folder`` of ``Latest/`` and every folder above it are real folders (``lstat``, never
        followed), as ``Layout.latest_name`` proves them."""
        if not folder or folder in self._proven:
            return True
        done = ""
        for name in folder.split("/"):
            done = f"{done}/{name}" if done else name
            if done in self._proven:
                continue
            self.done += 1
            st = os.lstat(self._path(done))
            if not stat.S_ISDIR(st.st_mode):
                return False   # (a symlink is not a folder: never looked through)
            self._proven.add(done)
        return True

    def _lstat(self, rel: str) -> os.stat_result | None:
        if not self._real_folder(rel.rpartition("/")[0]):
            return None
        self.done += 1
        return os.lstat(self._path(rel))

    def _gone(self, rel: str, names: set[str]) -> None:
        """The entries of ``Latest/<rel>`` that are not in ``names``, and the trees below those."""
        if not self._real_folder(rel):
            return
        todo = [f"{rel}/{name}" if rel else name for name in _names(self._path(rel)) if name not in names]
        while todo and self.left > 0:
            path = todo.pop()
            self.left -= 1
            self.done += 1
            st = os.lstat(self._path(path))
            if stat.S_ISDIR(st.st_mode):
                self._proven.add(path)
                todo.extend(f"{path}/{name}" for name in _names(self._path(path)))


def _names(folder: str) -> list[str]:
    """The entries of ``folder``, opened without following a symlink in its place."""
    fd = os.open(folder, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    try:
        with os.scandir(fd) as it:
            return [d.name for d in it]
    finally:
        os.close(fd)
