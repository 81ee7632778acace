"""Sealing an encrypted set's small files in worker processes (issue #11: the encrypted full backup).

In an encrypted set a file under ``store.WHOLE_BYTES`` is read whole, hashed, compressed and
sealed in one call, then written to ``tmp/`` (``EncryptedStore.copy_in``). That is Python work
under one GIL, and on the backup's own thread it left the second core idle (restic uses both).
Here a run that has copied :data:`START_AFTER` small files hands the rest, in batches of
:data:`BATCH` in the pass's order, to worker processes, which read, hash, seal and write each
file to ``tmp/`` and answer, per file, its ``tmp/`` name, hashes and sizes; while every worker
is busy the run's thread seals a share itself (:meth:`Sealing.keep`). Everything else
stays in the run's thread, in order, as before: the rename into ``objects/``
(``EncryptedStore.place``), the journal, the manifest and the checkpoints, so the
crash-safety proof (core/engine/backup.py) is unchanged: a worker's file in ``tmp/`` is nothing
until the run renames it, and ``tmp/`` is cleared when a run starts. After the commit the same
workers read back small objects (:meth:`Worker.check`, core/engine/objcheck.py), beside the run's
thread (core/engine/readback.py).

Must hold, and how:

* Keys: a worker gets the 32-byte master key over its socket (never a file, never its command
  line) and derives the subkeys with HKDF (``SetKeys.from_master``); scrypt is not run again.
* Nothing is lost: a file a worker could not read or write comes back as "not done" (None) and
  the run copies it itself, with its retries and warnings (core/engine/sourceread.py); a worker
  that ends (killed, crashed) has its batches redone the same way, and no batch goes to the
  workers after that. A worker's answer is only names and sizes: what it wrote is read back
  and checked as every copy is (core/engine/readback.py); a read-back batch a worker did not
  answer is checked by the run itself.
* Memory: workers are lean (``python -S``, this module, crypto, zstd: ~25 MB each), spawned
  after the set was opened (scrypt's 128 MiB is freed by then); what is in flight is bounded
  (:data:`DEPTH` batches per worker); a worker remembers at most :data:`HELD` names.
* Small runs never start workers (under :data:`START_AFTER` small files: the start costs
  more than it gives), and neither does a machine with one core.

Windows and the frozen app start workers with multiprocessing's ``spawn`` (as
``readpool.HashPool`` does); a source tree runs ``python -S -c`` (a spawned worker would import
the whole CLI). A system that cannot start them copies in the run's thread, as before.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import Executor
from typing import Any, Callable

from core.engine.lean_child import read_open_whole
from core.engine.source_open import open_source

BATCH = 64            # files per message to a worker (mostly one folder: the pass's order)
DEPTH = 2             # batches handed to each worker ahead of its answers
START_AFTER = 500     # small files a run seals itself before it starts workers
HELD = 8192           # object names a worker remembers having written (a duplicate is not sealed twice)
MAX_PROCESSES = 4
PROCESSES_ENV = "PLUGBACK_SEAL_PROCESSES"   # how many workers (0: none); for benchmarks

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC | _BINARY
_FADVISE = getattr(os, "posix_fadvise", None) if sys.platform not in ("win32", "darwin") else None
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", 3)

# One file to seal: its path, and the size, mtime_ns, inode and device the scan saw (0, 0: not known).
Job = tuple[str, int, int, int, int]
# What a worker made of it: (its tmp/ path, or None when this worker wrote the same content
# earlier in the run; SHA-256; object name; bytes read; changed since the scan; bytes written).
Sealed = tuple[Any, str, str, int, bool, int]
# One object to read back (a copy this run wrote, after the commit's flush): its paths on the
# drive, its name, and the plain SHA-256 and size the manifest records for it.
Check = tuple[list, str, str, int]
CHECK = "check"   # a message's third item: its jobs are Checks


def processes() -> int:
    """How many workers a run may start: one per core beyond the first, at least one where there
    are two cores (the run's thread does less than half the work), :data:`MAX_PROCESSES` at most."""
    wanted = os.environ.get(PROCESSES_ENV, "")
    if wanted.isdigit():
        return min(int(wanted), 16)
    try:
        cores = len(os.sched_getaffinity(0))   # type: ignore[attr-defined, unused-ignore]
    except AttributeError:
        cores = os.cpu_count() or 1
    return 0 if cores < 2 else max(1, min(MAX_PROCESSES, cores - 1))


# --- the worker -------------------------------------------------------------------------------
class Worker:
    """Seals batches of small files into ``tmp/`` (one per worker process; the tests run it in-process)."""

    def __init__(self, master: bytes, version: int, tmp_prefix: str):
        from core.engine import crypto

        self.keys = crypto.SetKeys.from_master(master, version)
        self.seal = crypto.seal_whole
        self.prefix = tmp_prefix   # tmp/<a name no other writer uses>-
        self.count = 0
        self.held: dict[str, None] = {}   # (insertion-ordered: the oldest is forgotten first)
        self.buf: memoryview | None = None   # (the read-back's: one object read whole)

    def check(self, jobs: list[Check]) -> list[str | None]:
        """Read back each object from the drive and check it (objcheck.check_object, its keyed name
        too): "" when it is sound, or what is wrong with it."""
        from core.engine import objcheck

        if self.buf is None:
            self.buf = memoryview(bytearray(objcheck.SMALL_OBJECT + 1))
        opened = [objcheck.open_copy(paths) for paths, _, _, _ in jobs]   # all reads started at once
        # (anything unforeseen ends this worker: the run then checks its batches itself)
        return [fds if isinstance(fds, str) else
                objcheck.check_object(self.keys, fds, self.buf, obj, sha, size, named=True) or ""
                for fds, (_, obj, sha, size) in zip(opened, jobs, strict=True)]

    def batch(self, jobs: list[Job]) -> list[Sealed | None]:
        """Each job's result, or None where the run must copy the file itself (it tells why)."""
        fds = [self._open(_long(job[0])) for job in jobs]   # all opened first: the reads start at once
        out: list[Sealed | None] = []
        for fd, job in zip(fds, jobs, strict=True):
            try:
                out.append(None if fd is None else self._one(fd, *job[1:]))
            except OSError:   # (lean_child.Replaced too: the run reads it again, finds it replaced, warns)
                out.append(None)
        return out

    @staticmethod
    def _open(path: str) -> int | None:
        try:
            fd = open_source(path)   # (never waits, never follows a symlink; Windows too)
        except OSError:
            return None
        if _FADVISE is not None:
            try:
                _FADVISE(fd, 0, 0, _WILLNEED)
            except OSError:
                pass
        return fd

    def _one(self, fd: int, size: int, mtime_ns: int | None, ino: int = 0, dev: int = 0) -> Sealed:
        """As ``store.read_whole`` then ``EncryptedStore.copy_in``: at most ``size`` bytes, sealed
        (never those of another file than the scan's ``ino`` on ``dev``: ``lean_child.Replaced``)."""
        data, changed = read_open_whole(fd, size, mtime_ns, ino, dev)
        hasher = self.keys.object_hasher()
        hasher.update(data)
        sha, obj = hasher.sha256_hexdigest(), hasher.hexdigest()
        if obj in self.held:
            return None, sha, obj, len(data), changed, 0
        blob = self.seal(self.keys, data)
        tmp = f"{self.prefix}{self.count}.part"
        self.count += 1
        out = os.open(_long(tmp), _CREATE, 0o666)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(out, view):]
        except OSError:
            os.close(out)
            os.unlink(_long(tmp))
            raise
        os.close(out)
        self.held[obj] = None
        if len(self.held) > HELD:
            del self.held[next(iter(self.held))]
        return tmp, sha, obj, len(data), changed, len(blob)


def _long(path: str) -> str:
    """``fs.long_path`` on Windows (a spawned worker has the engine loaded there); elsewhere ``path``."""
    if sys.platform == "win32":
        from core.engine.fs import long_path

        return long_path(path)
    return path


def serve(conn) -> None:
    """A worker process: the keys and its ``tmp/`` prefix first, then (tag, jobs) messages, each
    answered (tag, results); None or the end of the connection stops it."""
    master, version, prefix = conn.recv()
    worker = Worker(master, version, prefix)
    del master
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        tag, jobs = msg[0], msg[1]
        try:
            conn.send((tag, worker.check(jobs) if msg[2:] == (CHECK,) else worker.batch(jobs)))
        except OSError:
            return   # the run has gone (or stopped listening)


def child() -> None:
    """The entry of a lean worker: ``python -S -c ... FD`` (see :meth:`SealPool._start_lean`)."""
    import signal

    # (readpool's framing, without multiprocessing: a lean worker)
    from core.engine.readpool import _Framed

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the run's to handle (it ends the workers)
    serve(_Framed(int(sys.argv[1])))


# --- the run's side ---------------------------------------------------------------------------
class Ticket:
    """One file handed to the workers: a future for the backup's window (``done``, ``result``).

    ``result`` waits for the file's batch, then calls ``finish`` with what the worker made of it
    (None: copy it yourself) in the caller's thread, once; its value is the result.
    """

    __slots__ = ("pool", "tag", "index", "finish", "_ran", "_value")

    def __init__(self, pool: "SealPool", tag: int, index: int, finish: Callable[[Sealed | None], object]):
        self.pool, self.tag, self.index, self.finish = pool, tag, index, finish
        self._ran = False
        self._value: object = None

    def done(self) -> bool:
        return self._ran or self.tag in self.pool.answers

    def result(self) -> object:
        if not self._ran:
            self._ran = True
            self._value = self.finish(self.pool.outcome(self.tag, self.index))
        return self._value

    def __call__(self) -> object:   # (a ticket is its own job: Window.put takes it as one)
        return self.result()


class SealPool:
    """``processes`` workers sealing into ``tmp_dir`` with ``keys``; batches answered by tag.

    Not thread-safe: one thread (the backup's pass) submits and takes results."""

    def __init__(self, keys, tmp_dir: str, processes: int, *, lean: bool | None = None):
        from core.engine.atomic import tmp_name

        self.answers: dict[int, list] = {}   # tag -> [results, tickets still to take theirs]
        self.lost = 0                        # workers that ended during the run
        self._filling: list = []             # the batch being filled (tag self._tag): Jobs or Checks
        self._checking = False               # ... of Checks (the read-back's, after the pass)
        self._tag = 0
        self._where: dict[int, tuple[Any, int]] = {}   # tag -> (connection, files) in flight
        self._load: dict[Any, int] = {}
        self._procs: dict[Any, Any] = {}
        if lean is None:
            lean = sys.platform != "win32" and not getattr(sys, "frozen", False)
        base = tmp_name(tmp_dir)
        try:
            for i in range(processes):
                conn = self._start_lean() if lean else self._start_spawned()
                conn.send((keys.master, keys.version, f"{base}w{i}-"))
        except BaseException:
            self.close()
            raise

    def _start_lean(self):
        """A worker that imports only this module and crypto (the CLI is not loaded in it)."""
        from core.engine.lean_child import start_lean

        proc, conn = start_lean("core.engine.sealpool", [], packages=("cryptography", "zstandard"))
        self._procs[conn], self._load[conn] = proc, 0
        return conn

    def _start_spawned(self):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")   # (frozen: the launcher calls freeze_support first)
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=serve, args=(theirs,), daemon=True)
        proc.start()
        theirs.close()
        self._procs[mine], self._load[mine] = proc, 0
        return mine

    @property
    def broken(self) -> bool:
        """Every worker has ended: the run copies the rest itself."""
        return not self._load

    def submit(self, job: Job, finish: Callable[[Sealed | None], object]) -> Ticket:
        if self._filling and self._checking:
            self._send()
        ticket = Ticket(self, self._tag, len(self._filling), finish)
        self._filling.append(job)
        if len(self._filling) >= BATCH:
            self._send()
        return ticket

    def check(self, job: Check) -> tuple[int, int]:
        """Hand ``job`` to the workers' read-back; (tag, index) for :meth:`outcome`: "" if the object
        is sound, what is wrong, or None (not checked: the caller checks it)."""
        if self._filling and not self._checking:
            self._send()
        self._checking = True
        where = self._tag, len(self._filling)
        self._filling.append(job)
        if len(self._filling) >= BATCH:
            self._send()
        return where

    def filling(self) -> bool:
        """A batch of checks is being filled (what follows joins it)."""
        return self._checking and bool(self._filling)

    def room(self) -> bool:
        """Some worker could take a batch now (answers that are ready are taken first; no wait)."""
        from multiprocessing.connection import wait

        busy = [c for c, n in self._load.items() if n]
        if busy and wait(busy, 0):
            self._receive()
        return any(n < DEPTH for n in self._load.values())

    @property
    def size(self) -> int:
        """Workers still running."""
        return len(self._load)

    def outcome(self, tag: int, index: int) -> Sealed | None:
        """What the workers made of file ``index`` of batch ``tag`` (waits for it)."""
        return self._answer(tag, index)

    def checked(self, tag: int, index: int) -> str | None:
        """The worker's verdict on check ``index`` of batch ``tag`` (see :meth:`check`; waits for it)."""
        return self._answer(tag, index)

    def _answer(self, tag: int, index: int) -> Any:
        if tag == self._tag:
            self._send()   # (the batch being filled: it goes now)
        while tag not in self.answers:
            self._receive()
        entry = self.answers[tag]
        entry[1] -= 1
        if not entry[1]:
            del self.answers[tag]
        return entry[0][index]

    def _send(self) -> None:
        tag, jobs = self._tag, self._filling
        self._tag, self._filling = tag + 1, []
        msg = (tag, jobs, CHECK) if self._checking else (tag, jobs)
        self._checking = False
        while self._load:
            conn = min(self._load, key=self._load.__getitem__)
            if self._load[conn] >= DEPTH:
                self._receive()
                continue
            try:
                conn.send(msg)
            except OSError:
                self._lose(conn)
                continue
            self._where[tag] = (conn, len(jobs))
            self._load[conn] += 1
            return
        self.answers[tag] = [[None] * len(jobs), len(jobs)]   # no worker left: copied by the run

    def _receive(self) -> None:
        """Take the answers that are ready (waits for one)."""
        from multiprocessing.connection import wait

        busy = [c for c, n in self._load.items() if n]
        assert busy, "waiting for an answer no worker owes"
        ready: list[Any] = wait(busy)
        for conn in ready:
            try:
                tag, results = conn.recv()
            except (EOFError, OSError):
                self._lose(conn)
                continue
            self.answers[tag] = [results, len(results)]
            del self._where[tag]
            self._load[conn] -= 1

    def _lose(self, conn) -> None:
        """A worker ended: the files of its batches are copied by the run (None each)."""
        for tag, (c, n) in list(self._where.items()):
            if c is conn:
                self.answers[tag] = [[None] * n, n]
                del self._where[tag]
        del self._load[conn]
        self.lost += 1
        self._stop(conn, self._procs.pop(conn), wait=False)

    @staticmethod
    def _stop(conn, proc, wait: bool = True) -> None:
        try:
            if wait:
                conn.send(None)
        except OSError:
            pass
        conn.close()
        from core.engine.readpool import _end

        if not wait and (proc.poll() if hasattr(proc, "poll") else None) is None:
            proc.kill()
        _end(proc)

    def close(self) -> None:
        """Stop the workers (they finish the batch they are on; its files in ``tmp/`` are left to
        the next run's clearing if the run did not take them)."""
        for conn, proc in list(self._procs.items()):
            self._stop(conn, proc)
        self._procs.clear()
        self._load.clear()

    def __enter__(self) -> "SealPool":
        return self

    def __exit__(self, *_) -> None:
        self.close()


class Sealing:
    """A backup's choice, file by file, of who seals a small file: the run's thread (the first
    :data:`START_AFTER`, and all of them where workers cannot start or have ended) or the
    workers, started once that many were sealed in the run's thread."""

    def __init__(self, store, rehash: bool):
        self.store = store
        self.pool: SealPool | None = None
        self._seen = 0
        self._mine: dict[str, None] = {}   # files the run's thread took while the workers were busy
        self._offered = self._taken = 0    # files keep() was asked about, and those it kept
        # A repair (--rehash) writes every copy fresh: the run's own path decides that.
        self._off = rehash or not store.seals_whole(0) or processes() == 0

    @property
    def active(self) -> bool:
        """Workers are reading the small files (the run need not read them ahead)."""
        return self.pool is not None and not self.pool.broken

    def ticket(self, se, finish: Callable[[Sealed | None], object]) -> Ticket | None:
        """A ticket for ``se``'s copy by a worker, or None: the caller copies it now."""
        if self._off or not self.store.seals_whole(se.size):
            return None
        if self.pool is None:
            self._seen += 1
            if self._seen <= START_AFTER or not self._start():
                return None
        assert self.pool is not None
        if self.pool.broken or self._mine.pop(se.abspath, 0) is None:
            return None   # (taken by the run's thread: see keep)
        return self.pool.submit((se.abspath, se.size, se.mtime_ns, se.ino, se.dev), finish)

    def keep(self, se) -> bool:
        """Whether the run's thread will copy the small file ``se`` itself (called a few files
        ahead of its copy: the caller then starts its read). While workers run, the run's thread
        takes a file whenever every worker has :data:`DEPTH` batches unanswered: the workers seal
        most of them, but then the run's thread would only wait, and sealing some itself keeps both
        cores busy (a worker's file costs it more than placing one costs the run)."""
        if not self.active or not self.store.seals_whole(se.size):
            return True
        assert self.pool is not None
        self._offered += 1
        if (self._taken + 1) * (2 * self.pool.size + 3) > self._offered or self.pool.room():
            return False   # (a share of 1/5 at most with one worker, less with more)
        self._taken += 1
        self._mine[se.abspath] = None
        if len(self._mine) > HELD:   # (never taken: forgotten, oldest first)
            del self._mine[next(iter(self._mine))]
        return True

    def _start(self) -> bool:
        try:
            self.pool = SealPool(self.store.keys, self.store.tmp_dir, processes())
        except (OSError, RuntimeError, ImportError, TypeError, ValueError):   # (no usable interpreter: seal here)
            self._off = True
            return False
        return True

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def close_on_error(self, kind, *_) -> bool:
        """An exit callback for the pass: the workers stop if it failed; after a pass that ended
        well they stay for the read-back (readback.py), and the run closes them after it."""
        if kind is not None:
            self.close()
        return False


class Dispatch(Executor):
    """The backup window's pool: a :class:`Ticket` is its own future; any other job goes to ``pool``."""

    def __init__(self, pool: Executor):
        self.pool = pool

    def submit(self, fn, /, *args, **kwargs):
        return fn if isinstance(fn, Ticket) else self.pool.submit(fn, *args, **kwargs)
