"""A first backup's big files copied ahead of the pass, on the core the pass leaves idle (issue #11).

The pass copies small files one after the other in its own thread (one core) and hands big ones
to the pool when it reaches them, in the manifest's order. In the standard set the biggest files
sort last (``Videos/``, ``VMs/``): their reads, hashes and writes all ran in the pass's last
second and a half, both cores full, while during the seconds before the second core and the
drive were mostly idle (docs/performance.md, "#11: the standard set's full backup, big files
copied ahead").

The scan-ahead child (core/engine/scan_ahead.py) walks the sources seconds ahead of the scan; on a
first backup (no committed snapshot: every file is copied) it writes the path of every regular
file of :data:`BIG_BYTES` or more to a pipe. Here one thread copies those files, in the walk's
order, into the set's ``tmp/`` exactly as the pass would (``store.copy_in``: read once, hashed,
written; nothing is placed). When the pass reaches such a file, :meth:`CopyAhead.take` hands it
the copy — only if the file the pass scanned is the one that was read: same path, inode, size,
modification and change time, and unchanged during the read (the same test ``copy_in`` applies
to its own copies). Else the copy is discarded and the pass copies the file itself, as before.

What stays as it was: the pass places every copy (``store.place``, the journal's record, the
checkpoints' flushes), so the write order and the crash proof are the pass's own; a copy made
here and never taken is only a file in ``tmp/``, removed by :meth:`close` (or by the next run, as
any copy in flight when a run stops).

The read-back of these copies is done here, early (issue #11: it was the tail after the commit,
since the pass places the biggest files last): once the ``fdatasync`` of every part of a copy
returned (its bytes are durable), the copy is read back as the run's read-back reads (opened as a
regular file without following a symlink, its cached pages dropped, so every page comes from the
drive, hashed) and compared with the hash taken while reading the source: ``Copied.checked``.
A copy that reads back wrong is discarded here, never handed over: the pass copies that file
itself and its read-back checks it, as before; one whose flush failed is handed over unchecked
(the run's read-back reads it after a flush of its own). The pass places a checked copy by a
rename (the same bytes) and leaves it out of the run's read-back (core/engine/backup.py).

The source is opened as the pass opens it (no symlink followed, never waiting on a FIFO) and
must be a regular file by ``fstat``. Memory: the paths waiting and one read
buffer; at most :data:`HELD_BYTES` of copies made and not yet taken sit on the drive (more
waits). An error here (a full drive, an unreadable file) is not reported: the pass's own copy
meets it and reports it.
"""

from __future__ import annotations

import os
import select
import stat
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.engine.fs import long_path
from core.engine.lean_child import is_changed
from core.engine.source_open import open_source
from core.errors import PlugbackError

if TYPE_CHECKING:   # (not imported here: scan_ahead imports this module before the engine loads)
    from core.engine.store import Copied

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
BIG_BYTES = 16 << 20    # files this size or more are copied ahead (the pass's pool copies them otherwise)
HELD_BYTES = 512 << 20  # copies made (or being made) and not yet taken, at most


@dataclass
class _Seen:
    """What ``store.copy_in`` needs of a scan entry, from the descriptor's ``fstat``."""

    abspath: str
    size: int
    mtime_ns: int
    mode: int
    ino: int = 0   # (not checked while copying: :meth:`CopyAhead.take` compares the fstat with the scan's)
    dev: int = 0


class _Job:
    __slots__ = ("path", "state", "size", "st", "copied", "handed")

    def __init__(self, path: str):
        self.path = path
        self.state = "queued"   # queued, running, done, taken (by the pass before it started)
        self.size = 0
        self.st: os.stat_result | None = None
        self.copied: Copied | None = None
        self.handed = False   # the pass has it: its check (if running) stops, its verdict is not used


def key(path: str) -> str:
    return os.path.normpath(path)


class CopyAhead:
    """Copies the big files named on the pipe ``hints`` (NUL-separated paths) into ``store``'s
    ``tmp/``; :meth:`take` hands one to the pass, :meth:`close` ends and cleans up."""

    def __init__(self, store, hints: int, check: bool = False):
        self.store = store
        self._check = check and _SYNC is not None   # read each copy back once its own fdatasync returned
        self._hints = hints
        self._cond = threading.Condition()
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[_Job] = deque()
        self._unchecked: deque[_Job] = deque()   # copies made and durable, to read back
        self.checking: _Job | None = None           # the one being read back
        self._passed: set[str] = set()   # big files the pass reached first (not copied here)
        self._held = 0
        self._ended = False   # the pipe is read to its end
        self._stop = False
        self._state_end = False   # the copying thread ended
        self.taken = 0        # copies the pass took (for the benches and tests)
        self._reader = threading.Thread(target=self._read, name="copy-ahead-hints", daemon=True)
        self._worker = threading.Thread(target=self._work, name="copy-ahead", daemon=True)
        self._checker = threading.Thread(target=self._checks, name="copy-ahead-check", daemon=True)
        self._reader.start()
        self._worker.start()
        self._checker.start()

    def _read(self) -> None:
        rest = b""
        try:
            while not self._stop:
                if not select.select([self._hints], [], [], 0.2)[0]:
                    continue   # (the stop flag looked at every 0.2 s: the descriptor is closed after this ends)
                data = os.read(self._hints, 1 << 16)
                if not data:
                    break
                *names, rest = (rest + data).split(b"\0")
                with self._cond:
                    for name in names:
                        k = key(os.fsdecode(name))
                        if k not in self._jobs and k not in self._passed:
                            job = self._jobs[k] = _Job(k)
                            self._queue.append(job)
                    self._cond.notify_all()
        except OSError:
            pass
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _next(self) -> _Job | None:
        """The next file to copy (waiting for one, and for room under HELD_BYTES), or None: done."""
        with self._cond:
            while True:
                if self._stop:
                    return None
                while self._queue and self._queue[0].state != "queued":
                    self._queue.popleft()   # (the pass took it first)
                if self._queue and self._held < HELD_BYTES:
                    job = self._queue.popleft()
                    job.state = "running"
                    return job
                if self._ended and not self._queue:
                    return None
                self._cond.wait()

    def _work(self) -> None:
        try:
            while (job := self._next()) is not None:
                durable = self._copy(job)
                with self._cond:
                    job.state = "done"
                    if durable and self._check and job.copied is not None and not job.copied.changed:
                        self._unchecked.append(job)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._state_end = True
                self._cond.notify_all()

    def _checks(self) -> None:
        """Read back each copy made durable, in the order made, unless the pass took it first."""
        from core.engine.readback import check_written  # (here: scan_ahead imports this module first)

        while (job := self._next_check()) is not None:
            copied = job.copied
            assert copied is not None   # (only copies made are queued to be read back)

            def stopped(job: _Job = job) -> bool:
                return job.handed or self._stop

            problem = check_written(copied.tmp_paths, copied.size, copied.sha256, stopped)
            with self._cond:
                self.checking = None
                self._cond.notify_all()
                if job.handed or self._stop:
                    continue   # (the pass took it unchecked: the run's read-back reads it; close() discards the rest)
                if problem is None:
                    copied.checked = True
                else:   # read back wrong: never handed over, the pass copies the file itself, as before
                    job.copied = None
            if problem is not None:
                self.store.discard(copied)

    def _next_check(self) -> _Job | None:
        with self._cond:
            while True:
                if self._stop:
                    return None
                while self._unchecked and self._unchecked[0].handed:
                    self._unchecked.popleft()
                if self._unchecked:
                    self.checking = self._unchecked.popleft()
                    return self.checking
                if self._state_end:
                    return None
                self._cond.wait()

    def _copy(self, job: _Job) -> bool:
        """Copy ``job``'s file (``job.copied``); whether every part of the copy is durable now."""
        try:
            fd = open_source(long_path(job.path))   # (as the pass opens it: no symlink followed, no FIFO waited on)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size < BIG_BYTES:
            os.close(fd)
            return False
        with self._cond:
            job.size, job.st = st.st_size, st
            self._held += st.st_size
        try:   # (copy_in closes fd)
            copied = self.store.copy_in(_Seen(job.path, st.st_size, st.st_mtime_ns, st.st_mode), fd=fd)
        except (OSError, PlugbackError):   # (a full drive, a read error: the pass's own copy meets it and reports it)
            return False
        job.copied = copied
        # Written out here, so the pass's next flush finds little to do (and the copy can be read back).
        return all([_write_out(p) for p in copied.tmp_paths])

    def take(self, se):
        """The copy of the scanned big file ``se`` made here (the caller places it), or None: the
        caller copies it itself. Waits for a copy in progress."""
        if se.size < BIG_BYTES:
            return None
        k = key(se.abspath)
        with self._cond:
            job = self._jobs.pop(k, None)
            if job is None:
                self._passed.add(k)   # (a hint arriving later is not copied)
                return None
            if job.state == "queued":
                job.state = "taken"
                return None
            while job.state == "running":
                self._cond.wait()
            job.handed = True   # (a check not finished yet stops: not waited for, the run's read-back reads it)
            self._held -= job.size
            self._cond.notify_all()
        copied = job.copied
        if copied is None:
            return None
        if not _same(job.st, se) or copied.changed or copied.size != se.size:
            self.store.discard(copied)
            return None
        self.taken += 1
        return copied

    def close(self) -> None:
        """Stop (a copy in progress finishes), close the pipe, remove the copies never taken."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._worker.join()
        self._checker.join()
        self._reader.join()
        try:
            os.close(self._hints)
        except OSError:
            pass
        with self._cond:
            left, self._jobs = list(self._jobs.values()), {}
        for job in left:
            if job.copied is not None:
                self.store.discard(job.copied)


def start(prefetch, store, first: bool, check: bool = False) -> CopyAhead | None:
    """A copy-ahead for a backup whose sources ``prefetch`` reads ahead, where its scan-ahead child
    names the big files (core/engine/scan_ahead.py); only for a ``first`` backup into a plain set
    (every file is copied, none sealed). Else None (a pipe not used is closed). ``check``: the run
    reads back what it wrote; each copy made here is read back here (:attr:`Copied.checked`)."""
    from core.engine.store import PlainStore  # (here: scan_ahead imports this module before the engine loads)

    take = getattr(prefetch, "take_hints", None)
    hints = take() if take is not None else -1
    if hints < 0:
        return None
    if not first or not isinstance(store, PlainStore):
        os.close(hints)
        return None
    return CopyAhead(store, hints, check)


_SYNC = getattr(os, "fdatasync", None)   # (Linux: the only place a scan-ahead child names files)


def _write_out(path: str) -> bool:
    """Have the drive write ``path``'s bytes now (``fdatasync``, in this thread): the checkpoint's
    flush of the whole volume in the pass's thread then waits for less. Whether its bytes are
    durable now (the early read-back reads only those); a failure here changes nothing else: the
    pass's own flushes still give durability."""
    if _SYNC is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return False
    try:
        _SYNC(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _same(st: os.stat_result | None, se) -> bool:
    """Whether the file read (``st``: its fstat when opened) is the one the pass scanned, unchanged."""
    return (st is not None and st.st_ino == se.ino and (not se.dev or st.st_dev == se.dev)
            and st.st_size == se.size and st.st_mtime_ns == se.mtime_ns and st.st_ctime_ns == se.ctime_ns
            and not is_changed(st, se.size, se.mtime_ns))
