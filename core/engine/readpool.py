"""Reading and hashing the files of ``Latest/`` in worker processes (issue #11: ``verify --read-all``).

A plain set's ``Latest/`` holds every file of the newest snapshot as a plain file; checking
it means reading and hashing each one. With threads in one process, the Python work per
file (open, checks, read, hash) ran under one GIL and the 100,000-file set took 3x the CPU
of ``sha256sum``; here that work is spread over worker processes, each taking batches of
files in the manifest's order (so a batch is mostly one folder), and many reads are in
flight at once, which keeps a cold drive's queue full.

A worker is spawned (not forked: a fork would carry the parent's memory into each worker's
RSS) and imports only this module and ``core.errors``. It opens each folder once, from
``Latest/`` down, by descriptor without following a symlink (``O_NOFOLLOW | O_DIRECTORY``
relative to its parent), and each file in it relative to that descriptor: ``lstat`` first
(a FIFO or a device is never opened), then ``O_NOFOLLOW | O_NONBLOCK``, then ``fstat``
again, as ``core/engine/safeio.py`` does for one path. Where the system has no ``openat``
(Windows), each file is checked and opened by its path as ``safeio`` does there: each folder on
its way checked once (no symlink, no junction), the file opened without following a link
(``winopen``).

On Linux with io_uring, a thread reads the small files of a folder a group at a time
(``core/engine/readring.py``): the same checks and cache drop for each, then their reads submitted
together, so the drive gets fewer, merged requests.

Only problems travel back: (index in the batch, reason), with the reasons worded as
``verify.check_entry`` words them. :class:`HashPool` keeps a bounded number of batches in
flight (memory flat in the file count) and gives results back in the order the batches
went in. Without processes (a system that cannot start them) the same batches are checked
by threads.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
import threading
from collections import deque
from typing import TYPE_CHECKING, Generator, Iterable, Iterator

from core.errors import DamagedSet, refused_symlink

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

# One file to check: its mirror path ('/'-separated, below Latest/), its parts (0: one file), size, SHA-256
# (None: its size only, for a quick verify: nothing is read).
Item = tuple[str, int, int, "str | None"]
# (index in the batch, what is wrong with it)
Problem = tuple[int, str]

MISSING = "its content is missing from the drive"
MISMATCH = "its content does not match its checksum (changed or damaged on the drive)"
THREADS = 4          # reads in flight in each worker process (its threads): verify_latest starts
                     # options.workers // THREADS processes (2 for 8 reads in flight; 4 x 2 cost ~0.2 s more
                     # CPU at 100,000 files: each process's start and its share of the work, readall7)
DEPTH = 2 * THREADS  # batches handed to each worker ahead of its answers
BLOCK = 1 << 20

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_READ = os.O_RDONLY | _CLOEXEC | getattr(os, "O_BINARY", 0)
_OPEN_FILE = _READ | _NOFOLLOW | _NONBLOCK
_ISREG = stat.S_ISREG
_NAME_SURROGATE = 0x20000000   # (Windows: a junction's or a symlink's reparse tag)
BY_FD = bool(_NOFOLLOW and _DIRECTORY) and os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd


class _Bad(Exception):
    """A problem with one file (or with the folder it is in), worded for the report."""


def _damaged(path: str, reason: str) -> _Bad:
    """As ``repo._content_error`` words what ``safeio`` refuses (a symlink, a FIFO...)."""
    return _Bad(str(DamagedSet(what=f"{path}: {reason}")))


def _kind(mode: int) -> str:
    """safeio's words for a non-regular file, copied rather than imported (the lean worker does
    not load safeio and fs); test_verify_pool holds the two equal."""
    for test, words in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"),
                        (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a device"),
                        (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def _unreadable(err: OSError) -> _Bad:
    if isinstance(err, (FileNotFoundError, NotADirectoryError)):
        return _Bad(MISSING)
    return _Bad(f"it cannot be read ({err.strerror or err})")


class _Folder:
    """The folder of the files being checked, opened once by descriptor (POSIX) or known by path."""

    def __init__(self, latest: str):
        self.latest = latest            # Latest/'s path, ending in a separator
        self.name: str | None = None    # the folder's mirror path ('' is Latest/ itself)
        self.fd: int | None = None
        self.error: _Bad | None = None  # why its files cannot be reached
        self._base: str | None = None    # Windows: Latest/'s final path ("": none to be had)

    def enter(self, folder: str) -> None:
        if folder == self.name:
            return
        self.close()
        self.name, self.error = folder, None
        if BY_FD:
            try:
                self.fd = self._open(folder)
            except _Bad as bad:
                self.error = bad
        elif folder:
            self.error = self._link_on_the_way(folder)

    def _link_on_the_way(self, folder: str) -> _Bad | None:
        """Where there is no ``openat`` (Windows): why ``Latest/folder`` cannot be read, if a folder on
        its way is a symlink or a junction (``lstat``, once per folder entered: safeio's check)."""
        parts = folder.split("/")
        for i, name in enumerate(parts):
            try:
                st = os.stat(_long(self.latest + os.sep.join(parts[:i + 1])), follow_symlinks=False)
            except OSError as err:
                return _unreadable(err)
            if stat.S_ISLNK(st.st_mode) or getattr(st, "st_reparse_tag", 0) & _NAME_SURROGATE:
                return _damaged(self.latest + os.sep.join(parts), f"the folder '{name}' on its way is a symbolic link")
        return None

    def _open(self, folder: str) -> int:
        """``Latest/folder`` opened one folder at a time, following no symlink on the way."""
        try:
            fd = os.open(self.latest, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
        except OSError as err:
            raise _unreadable(err) from None
        for name in folder.split("/") if folder else ():
            try:
                nxt = os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            except OSError as err:
                raise self._why(fd, name, folder, err) from None
            finally:
                os.close(fd)   # (closed before nxt is used; nxt unbound only when raising)
            fd = nxt
        return fd

    def _why(self, fd: int, name: str, folder: str, err: OSError) -> _Bad:
        if refused_symlink(err) or err.errno == errno.ENOTDIR:
            try:
                if stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    return _damaged(self.latest + folder.replace("/", os.sep),
                                    f"the folder '{name}' on its way is a symbolic link")
            except OSError:
                pass
        return _unreadable(err)

    def path_of(self, name: str) -> str:
        """The path of ``name`` in this folder (for messages, and where there is no ``openat``)."""
        rel = f"{self.name}/{name}" if self.name else name
        return self.latest + (rel if os.sep == "/" else rel.replace("/", os.sep))

    def open_file(self, name: str) -> tuple[int, int]:
        """A read descriptor of the regular file ``name`` in this folder, and its size."""
        if self.error is not None:
            raise self.error
        where = name if self.fd is not None else _long(self.path_of(name))
        try:
            mode = os.stat(where, follow_symlinks=False, dir_fd=self.fd).st_mode
            if not _ISREG(mode):
                raise _damaged(self.path_of(name), f"it is {_kind(mode)}, not a regular file")
            fd = os.open(where, _OPEN_FILE, dir_fd=self.fd) if self.fd is not None else _open_path(where, self._at(name))
        except OSError as err:
            if refused_symlink(err):
                raise _damaged(self.path_of(name), "it is a symbolic link") from None
            raise _unreadable(err) from None
        st = os.fstat(fd)
        if not _ISREG(st.st_mode):   # swapped between the check and the open
            os.close(fd)
            raise _damaged(self.path_of(name), f"it is {_kind(st.st_mode)}, not a regular file")
        return fd, st.st_size

    def _at(self, name: str) -> str | None:
        """Windows: where the file ``name`` of this folder must really be (``Latest/``'s final path,
        asked once, plus the names): a folder on its way swapped for a junction after its check is
        refused by the open (``winopen``'s ``at``). None where that cannot be had, and on POSIX."""
        if _REAL_PLACE is None:
            return None
        if self._base is None:
            self._base = _REAL_PLACE(_long(self.latest.rstrip(os.sep))) or ""
        if not self._base:
            return None
        return os.path.join(self._base, *(self.name.split("/") if self.name else ()), name)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


if sys.platform == "win32":
    # (no O_NOFOLLOW there: a name swapped for a symlink or junction since its lstat is refused, ELOOP;
    # a folder on its way swapped since its check, by the handle's final path: winopen's ``at``)
    from core.engine.winopen import folder_final_path as _REAL_PLACE
    from core.engine.winopen import open_no_follow

    def _open_path(path: str, at: str | None = None) -> int:
        return open_no_follow(path, None, at)
else:
    _REAL_PLACE = None

    def _open_path(path: str, at: str | None = None) -> int:
        """A file of ``Latest/`` opened by its path (where folders are not opened by descriptor)."""
        return os.open(path, _OPEN_FILE)


def _long(path: str) -> str:
    if sys.platform == "win32":
        from core.engine.fs import long_path

        return long_path(path)
    return path


_READV = getattr(os, "readv", None)
# Linux (as fs.drop_cache: not on Windows or macOS); looked up once (a worker calls it per file)
_FADVISE = getattr(os, "posix_fadvise", None) if sys.platform not in ("win32", "darwin") else None
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", 4)
RING = True   # small files read a group at a time through io_uring where there is one (readring)


def drop_cached(fd: int) -> None:
    """The file's pages dropped from the page cache, so that its next read comes from the drive
    (Linux; elsewhere nothing: see ``_FADVISE``)."""
    if _FADVISE is not None:
        try:
            _FADVISE(fd, 0, 0, _DONTNEED)
        except OSError:
            pass


def verdict(got: int, size: int, digest, sha: str) -> str | None:
    """What is wrong with a file read whole (``got`` bytes, hashed into ``digest``) that should
    have ``size`` bytes and the SHA-256 ``sha``: the words every reader reports; None if nothing."""
    if got != size:
        return f"it has {got} bytes instead of {size}"
    if digest.hexdigest() != sha:
        return MISMATCH
    return None


def _read(fd: int, digest, buf: memoryview, stated: int, drop: bool = True) -> int:
    """Hash the rest of ``fd`` (its cache dropped first: the drive is read, not the memory); bytes read.

    ``stated``: its size by ``fstat``; a short read that reaches it is taken as the end (no
    second read to see 0 bytes: one system call less per small file). ``drop`` False: the
    caller dropped it (``readring``)."""
    if drop:
        drop_cached(fd)
    size = 0
    readv = _READV
    while True:
        if readv is not None:
            n = readv(fd, [buf])
            block = buf[:n]
        else:
            data = os.read(fd, BLOCK)
            n, block = len(data), memoryview(data)
        if not n:
            return size
        digest.update(block)
        size += n
        if size == stated and n < BLOCK:
            return size


class Checker:
    """Checks items of one ``Latest/`` (folder by folder); one per worker or thread."""

    def __init__(self, latest: str):
        self.latest = latest if latest.endswith(os.sep) else latest + os.sep
        self.folder = _Folder(self.latest)
        self.buf = memoryview(bytearray(BLOCK))
        self.group = None   # small files read a group at a time through io_uring (Linux: readring)
        if _FADVISE is not None and RING:
            from core.engine.readring import GroupReader

            self.group = GroupReader.start()

    def check(self, items: list[Item]) -> list[Problem]:
        if self.group is not None:
            return self.group.check(self, items)
        problems: list[Problem] = []
        for i, item in enumerate(items):
            try:
                self._one(*item)
            except _Bad as bad:
                problems.append((i, str(bad)))
        return problems

    def _one(self, mirror: str, parts: int, size: int, sha: str | None) -> None:
        folder, _, name = mirror.rpartition("/")
        if folder != self.folder.name:
            self.folder.enter(folder)
        names = [f"{name}.{i:03d}" for i in range(1, parts + 1)] if parts else None
        if names:
            self._part_sizes(names, folder, size)
        if sha is None:   # a quick verify: there, a regular file of the right size (read nothing)
            if not names:
                self._size(name, size)
            return
        digest = hashlib.sha256()
        got = 0
        for n in names or (name,):
            fd, stated = self.folder.open_file(n)
            try:
                got += _read(fd, digest, self.buf, stated)
            except OSError as err:
                raise _unreadable(err) from None
            finally:
                os.close(fd)
        why = verdict(got, size, digest, sha)
        if why is not None:
            raise _Bad(why)

    def _size(self, name: str, size: int) -> None:
        """The file ``name`` of this folder is a regular file of ``size`` bytes (``verify._structure_problem``)."""
        if self.folder.error is not None:
            raise self.folder.error
        where = name if self.folder.fd is not None else _long(self.folder.path_of(name))
        try:
            st = os.stat(where, follow_symlinks=False, dir_fd=self.folder.fd)
        except OSError as err:
            raise _unreadable(err) from None
        if not _ISREG(st.st_mode):
            raise _damaged(self.folder.path_of(name), f"it is {_kind(st.st_mode)}, not a regular file")
        if st.st_size != size:
            raise _Bad(f"its stored copy has {st.st_size} bytes instead of {size}")

    def _part_sizes(self, names: list[str] | tuple[str], folder: str, size: int) -> None:
        """A split file: every part there, and their sizes adding up (``verify._structure_problem``)."""
        if self.folder.error is not None:
            raise self.folder.error
        total = 0
        for n in names:
            where = n if self.folder.fd is not None else _long(self.latest + os.path.join(folder, n))
            try:
                total += os.stat(where, dir_fd=self.folder.fd).st_size
            except OSError as err:
                raise _unreadable(err) from None
        if total != size:
            raise _Bad(f"its stored copy has {total} bytes instead of {size}")

    def close(self) -> None:
        self.folder.close()
        if self.group is not None:
            self.group.close()


def serve(conn, latest: str, threads: int = THREADS) -> None:
    """A worker process: ``threads`` threads take (tag, batch) messages from ``conn`` and answer
    (tag, its problems); None (one per thread) or the end of the connection stops them."""
    take, give = threading.Lock(), threading.Lock()

    def work() -> None:
        checker = Checker(latest)
        try:
            while True:
                with take:
                    try:
                        msg = conn.recv()
                    except EOFError:
                        msg = None
                if msg is None:
                    return
                tag, batch = msg
                answer = (tag, checker.check(batch))
                with give:
                    try:
                        conn.send(answer)
                    except OSError:
                        return   # the parent has gone (or stopped listening)
        finally:
            checker.close()

    others = [threading.Thread(target=work, daemon=True) for _ in range(threads - 1)]
    for t in others:
        t.start()
    work()
    for t in others:
        t.join()


class _Framed:
    """``multiprocessing.connection.Connection``'s framing (a 4-byte length, then a pickle) on a
    socket, without importing multiprocessing in the worker (a lean worker: less memory)."""

    def __init__(self, fd: int):
        import socket

        self.sock = socket.socket(fileno=fd)

    def recv(self):
        import pickle
        import struct

        size = struct.unpack("!i", self._exactly(4))[0]
        if size == -1:
            size = struct.unpack("!Q", self._exactly(8))[0]
        return pickle.loads(self._exactly(size))

    def _exactly(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError()
            data += chunk
        return bytes(data)

    def send(self, obj) -> None:
        import pickle
        import struct

        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        self.sock.sendall(struct.pack("!i", len(data)) + data)


class HashPool:
    """``processes`` workers checking batches of items of ``latest`` (threads if processes cannot start)."""

    def __init__(self, latest: str, processes: int):
        self.latest = latest
        self._conns: list = []
        self._procs: list = []
        self._threads: "ThreadPoolExecutor | None" = None
        try:
            self._spawn(processes)
        except (OSError, RuntimeError, ImportError, TypeError, ValueError):   # (no usable sys.executable)
            self._fall_back(processes)

    def _spawn(self, processes: int) -> None:
        if sys.platform != "win32" and not getattr(sys, "frozen", False):
            for _ in range(processes):
                self._start_lean()
            return
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")   # (frozen: the launcher calls freeze_support first)
        for _ in range(processes):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=serve, args=(theirs, self.latest, THREADS), daemon=True)
            proc.start()
            theirs.close()
            self._conns.append(mine)
            self._procs.append(proc)

    def _start_lean(self) -> None:
        """A worker that imports nothing but this module: multiprocessing's spawn would import the
        parent's main module in it too (the ``plugback`` script: the whole CLI, ~40 MB each)."""
        from core.engine.lean_child import start_lean

        proc, conn = start_lean("core.engine.readpool", [self.latest, str(THREADS)])
        self._conns.append(conn)
        self._procs.append(proc)

    def map(self, batches: Iterable[list[Item]]) -> Generator[tuple[list[Item], list[Problem]], None, None]:
        """(batch, its problems) for each batch, in order; at most :data:`DEPTH` per worker in flight.

        A worker that ends (killed, or it could not start its program) is not a finding: the
        batches it had and every later one are checked by threads instead."""
        it = iter(batches)
        if self._threads is None:
            yield from self._map_processes(it)
        else:
            yield from self._map_threads(it)

    def _map_processes(self, batches: Iterator[list[Item]]) -> Generator[tuple[list[Item], list[Problem]], None, None]:
        from multiprocessing.connection import wait

        pending: deque = deque()   # the batches in flight, in the order they went
        load = {c: 0 for c in self._conns}   # batches in flight per worker
        answers: dict[int, list[Problem]] = {}
        try:
            for tag, batch in enumerate(batches):
                pending.append((tag, batch))   # first: if a worker ends while this one waits, it is still checked
                conn = min(self._conns, key=load.__getitem__)
                while load[conn] >= DEPTH:
                    self._receive(wait(self._conns), load, answers)
                    conn = min(self._conns, key=load.__getitem__)
                conn.send((tag, batch))
                load[conn] += 1
                while pending and pending[0][0] in answers:
                    done, batch = pending.popleft()
                    yield batch, answers.pop(done)
            while pending:
                tag, batch = pending[0]
                while tag not in answers:
                    self._receive(wait([c for c in self._conns if load[c]]), load, answers)
                pending.popleft()
                yield batch, answers.pop(tag)
        except OSError:   # a worker ended (EOF, a broken pipe): threads take over, in the same order
            self._fall_back()
            load.clear()
            while pending:
                tag, batch = pending.popleft()
                yield batch, answers.pop(tag) if tag in answers else _check_in_thread(self.latest, batch)
            yield from self._map_threads(batches)
        finally:   # stopped early (closed, or an error): take the answers still coming, or stop the workers
            try:
                while any(load.values()):
                    self._receive(wait([c for c in self._conns if load[c]]), load, answers)
            except OSError:
                self._fall_back()

    def _fall_back(self, processes: int | None = None) -> None:
        """Threads instead of the worker processes (which are ended), as many as their threads."""
        from concurrent.futures import ThreadPoolExecutor

        workers = (processes or max(1, len(self._procs))) * THREADS
        self.close()
        if self._threads is None:
            self._threads = ThreadPoolExecutor(max_workers=workers)

    @staticmethod
    def _receive(ready: list, load: dict, answers: dict) -> None:
        for conn in ready:
            try:
                tag, problems = conn.recv()
            except EOFError:
                raise OSError(errno.EPIPE, "a verify worker process ended") from None
            answers[tag] = problems
            load[conn] -= 1

    def _map_threads(self, batches: Iterable[list[Item]]) -> Iterator[tuple[list[Item], list[Problem]]]:
        assert self._threads is not None
        pending: deque = deque()
        for batch in batches:
            pending.append((batch, self._threads.submit(_check_in_thread, self.latest, batch)))
            if len(pending) > 2 * self._threads._max_workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()

    def close(self) -> None:
        for conn in self._conns:
            try:
                for _ in range(THREADS):
                    conn.send(None)
            except OSError:
                pass
            conn.close()
        for proc in self._procs:
            _end(proc)
        self._conns, self._procs = [], []
        if self._threads is not None:
            self._threads.shutdown(wait=True)

    def __enter__(self) -> "HashPool":
        return self

    def __exit__(self, *_) -> None:
        self.close()


def _end(proc) -> None:
    """Wait a little for a worker told to stop (a subprocess or a multiprocessing process), then end it."""
    if hasattr(proc, "join"):
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        return
    import subprocess

    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:   # it is stuck (a hung drive)
        proc.kill()
        proc.wait()


def child() -> None:
    """The entry of a lean worker: ``python -S -c ... FD LATEST THREADS`` (see :meth:`HashPool._start_lean`)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the parent's to handle (it ends the workers)
    serve(_Framed(int(sys.argv[1])), sys.argv[2], int(sys.argv[3]))


def _check_in_thread(latest: str, batch: list[Item]) -> list[Problem]:
    checker = Checker(latest)
    try:
        return checker.check(batch)
    finally:
        checker.close()
