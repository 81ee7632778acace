"""The sources' folders read ahead of the scan by a child process (Linux), so the OS has their
metadata cached when the scan asks for it.

The scan (core/engine/scan.py) lists one folder and ``lstat``s one entry at a time, between bits
of Python. On a cold cache each of those waits for the disk, and a backup of the standard set
(~29,000 entries) with nothing or one day changed spent most of its time there (issue #11;
``rsync -a`` reads its two trees in two processes at once). Threads reading ahead
(core/engine/prefetch.py) made the disk's waits overlap but cost more than they saved on a quiet
machine: each ``lstat`` they made took the interpreter's lock back from the scan. A child process
has its own interpreter: it walks the same folders in the same order (depth first, names
sorted) on the other core, from the moment ``plugback backup`` has read its arguments (while the
engine's modules load), and the scan finds most answers cached.

Nothing comes back from the child: it only fills the OS's cache, and the scan still reads every
folder and entry itself (what it records is what it read). The child never follows a symlink,
leaves out what the scan leaves out (the excludes, the set's own folder), never writes, and
ends when the scan does (:meth:`ScanAhead.stop`), when its walk is done, or when its parent is
gone. Only where ``fork`` is safe and cheap: Linux, from a process with one thread (the command
line, before anything starts a thread); elsewhere :func:`start` returns None and the scan reads
alone, as before.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from core.engine.copy_ahead import BIG_BYTES
from core.engine.fs import long_path, read_ahead
from core.engine.prefetch import Prefetch
from core.errors import PlugbackError

if TYPE_CHECKING:
    from core.engine.scan import Excluder
    from core.engine.set_ahead import SetAhead

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CONTENT_FLAGS = os.O_RDONLY | _NOFOLLOW | _NONBLOCK | getattr(os, "O_CLOEXEC", 0)
#: A first backup's small files whose reading the child starts ahead of the pass, in bytes at most
#: (the OS's cache holds them, not this process; the cap keeps a huge tree from pushing the first
#: ones out of a small machine's cache before the pass reaches them).
CONTENT_AHEAD_BYTES = 1 << 30


class ScanAhead(Prefetch):
    """The child process reading the sources ahead: a :class:`Prefetch` to the scan (``exclude``,
    ``stop``), without its threads."""

    def __init__(self, pid: int, hints: int = -1):   # (no super().__init__: that starts the threads)
        self.pid = pid
        self.stopped = False
        self.hints = hints   # the pipe's end the child names a first backup's big files on, or -1

    def take_hints(self) -> int:
        """The pipe the child names a first backup's big files on (core/engine/copy_ahead.py: the
        caller's to read and close), or -1; once."""
        fd, self.hints = self.hints, -1
        return fd

    def exclude(self, excluded, skip) -> None:
        """(The child applies the same excludes itself, from the command's arguments.)"""

    def stop(self) -> None:
        """End the child (at once: what it read is cached already) and reap it; again: nothing."""
        if self.hints >= 0:   # (nobody took it)
            os.close(self.take_hints())
        if self.pid <= 0:
            return
        pid, self.pid, self.stopped = self.pid, 0, True
        if sys.platform != "win32":   # (there is no child elsewhere: written so mypy sees it for each platform)
            import signal

            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def start(sources: list[str], excludes: list[str], set_root: str) -> ScanAhead | None:
    """A child reading ``sources`` (folders) ahead of the scan, or None where that is not done."""
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return None   # (a fork copies one thread only: never while another may hold a lock)
    from core.engine.scan import Excluder  # (before the fork: the scan needs it anyway)

    try:
        excluder = Excluder(excludes, skip_dirs=[set_root])
    except PlugbackError:
        return None   # a bad pattern: the backup says so
    parent = os.getpid()
    try:
        hints, hinting = os.pipe()
    except OSError:
        hints = hinting = -1
    try:
        pid = os.fork()
    except OSError:
        for fd in (hints, hinting):
            if fd >= 0:
                os.close(fd)
        return None
    if pid:
        if hinting >= 0:
            os.close(hinting)
        return ScanAhead(pid, hints)
    try:   # the child: walk, then leave without running anything of the parent's (no atexit, no flush)
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)   # (Ctrl+C is the parent's to handle)
        if hints >= 0:
            os.close(hints)
            os.set_blocking(hinting, False)   # (a hint the parent has no room for is dropped, never waited on)
        load_ahead(os.path.dirname(__file__))
        # (imported here, not before the fork: the child starts a few ms sooner on a cold cache)
        from core.engine.set_ahead import SetAhead

        latest = SetAhead.of_set(set_root)
        ordered = sorted(sources, key=lambda p: os.path.basename(p.rstrip(os.sep)))
        walk(ordered, excluder, parent, latest, hinting if latest is None else -1)
        if latest is not None:
            latest.finish()
        elif hinting >= 0:   # a first backup: again, now starting the small files' reads (the metadata
            walk(ordered, excluder, parent, content=True)   # first: the room check and the scan wait on it)
    finally:
        os._exit(0)


#: ``plugback backup``'s options without a value, and those with one (core/cli/backup_cmds.py).
_FLAGS = frozenset(("--rehash", "--no-verify", "--make-room", "--encrypt", "--remember", "--json"))
_VALUED = frozenset(("--to", "--exclude", "--recovery-key-file"))
_early: tuple[tuple[list[str], list[str], str], ScanAhead] | None = None   # (what it reads, the child)


def start_early(argv: list[str]) -> None:
    """The child for ``plugback backup SRC... --to SET`` (the command line's arguments), started
    before the command line's parser and the backup's modules load (~0.1 s on a cold cache, which
    the scan waited behind), when the arguments are plain enough to read without the parser: else
    nothing, and the backup starts its child as before. :func:`take_early` hands it over."""
    global _early
    plan = backup_args(argv)
    if plan is not None and _early is None and (child := start(*plan)) is not None:
        _early = (plan, child)


def take_early(sources: list[str], excludes: list[str], set_root: str) -> ScanAhead | None:
    """The child :func:`start_early` started, if it reads what the parser's arguments say (else it
    is stopped: None)."""
    global _early
    early, _early = _early, None
    if early is None:
        return None
    plan, child = early
    if plan == (sources, excludes, set_root):
        return child
    child.stop()
    return None


def drop_early() -> None:
    """Stop and reap the child :func:`start_early` started if nothing took it (the parser
    refused the arguments, the command failed before its backup began); else nothing."""
    global _early
    early, _early = _early, None
    if early is not None:
        early[1].stop()


def backup_args(argv: list[str]) -> tuple[list[str], list[str], str] | None:
    """(sources, excludes, set) of ``backup SRC... --to SET [--exclude P]...`` as absolute paths,
    or None for anything the parser alone should read (``--to=SET``, an abbreviation, ``--help``,
    ``--``, a repeated ``--to``, a remote set)."""
    if len(argv) < 2 or argv[0] != "backup":
        return None
    sources: list[str] = []
    excludes: list[str] = []
    to = None
    args = iter(argv[1:])
    for a in args:
        if a in _FLAGS:
            continue
        if a in _VALUED:
            value = next(args, None)
            if value is None or value.startswith("-") or (a == "--to" and to is not None):
                return None
            if a == "--to":
                to = value
            elif a == "--exclude":
                excludes.append(value)
            continue
        if a.startswith("-"):
            return None
        sources.append(os.path.abspath(a))
    if not sources or to is None or to.startswith("rclone:"):
        return None
    return sources, excludes, os.path.abspath(to)


def load_ahead(package: str) -> int:
    """Ask the OS to read the compiled modules of ``package`` (a folder) now, without waiting: the
    parent loads the engine's modules next, each a read from the disk on a cold cache. The number
    of files asked for (none in a frozen app, whose modules are in its archive)."""
    tag = f".{sys.implementation.cache_tag}.pyc"
    try:
        with os.scandir(os.path.join(package, "__pycache__")) as it:
            names = [d.path for d in it if d.name.endswith(tag)]
    except OSError:
        return 0
    n = 0
    for path in names:
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
        except OSError:
            continue
        try:
            read_ahead(fd)
            n += 1
        finally:
            os.close(fd)
    return n


def walk(sources: list[str], excluder: Excluder, parent: int | None = None, latest: SetAhead | None = None,
         hints: int = -1, content: bool = False) -> int:
    """List every folder below ``sources`` and ``lstat`` its entries, as the scan does and in its
    order; the number of entries read. Stops early when ``parent`` is no longer the parent
    process (it ended); a folder that cannot be read is passed over (the scan reports it).
    ``latest``: what changed since the set's last commit is also looked up there (core/engine/set_ahead.py).
    ``hints``: a pipe the path of every regular file of ``copy_ahead.BIG_BYTES`` or more is written
    to (a first backup's, copied ahead: core/engine/copy_ahead.py), NUL after each; -1: none.
    ``content``: the reading of every smaller regular file is started (:func:`_content`: a first
    backup's pass copies each of them, and finds it cached), :data:`CONTENT_AHEAD_BYTES` at most.
    With ``latest``, the reading of each smaller regular file that changed since the set's last
    commit is started (the pass copies it: its reads wait on the drive beside the walk's, not in
    the pass's turn), :data:`CONTENT_AHEAD_BYTES` at most."""
    n = 0
    budget = CONTENT_AHEAD_BYTES if content or latest is not None else 0
    since = latest.since if latest is not None else None   # (per entry: a comparison, no call)
    for root in sources:
        top = os.path.basename(root.rstrip(os.sep)) or "root"   # (its name in Latest/, as a rule: plan_sources)
        stack = [("", latest is not None and _changed_root(root, latest))]
        while stack:
            if parent is not None and os.getppid() != parent:
                return n
            rel, changed = stack.pop()
            below = []
            names: set[str] = set()
            try:
                with _listed(os.path.join(root, rel) if rel else root, not rel) as it:
                    for d in it:   # (a folder's entries all read before the next: their order is no matter)
                        try:
                            st = d.stat(follow_symlinks=False)
                        except OSError:
                            continue   # (gone since the listing)
                        n += 1
                        if changed:
                            names.add(d.name)
                        new = since is not None and (st.st_mtime_ns >= since or st.st_ctime_ns >= since)
                        if new and latest is not None:
                            latest.file(f"{top}/{rel}/{d.name}" if rel else f"{top}/{d.name}")
                            if budget > 0 and stat.S_ISREG(st.st_mode) and 0 < st.st_size < BIG_BYTES:
                                budget -= st.st_size
                                _content(os.path.join(root, rel, d.name) if rel else os.path.join(root, d.name))
                        elif (hints >= 0 or content and budget > 0) and stat.S_ISREG(st.st_mode) and st.st_size:
                            path = os.path.join(root, rel, d.name) if rel else os.path.join(root, d.name)
                            if st.st_size >= BIG_BYTES:
                                if hints >= 0:
                                    _hint(hints, path)
                            elif budget > 0:
                                budget -= st.st_size
                                _content(path)
                        if stat.S_ISDIR(st.st_mode):
                            sub = f"{rel}/{d.name}" if rel else d.name
                            if not excluder.excluded(sub, True) and (st.st_dev, st.st_ino) not in excluder.skip_dirs:
                                below.append((sub, new))
            except OSError:
                continue
            if changed and latest is not None:
                latest.folder(f"{top}/{rel}" if rel else top, names)
            below.sort(reverse=True)   # (the scan enters them by name: the first one last on the stack)
            stack.extend(below)
    return n


def _content(path: str) -> None:
    """Ask the OS to start reading the small file ``path`` now, without waiting (a first backup's
    pass copies it seconds later: the strict bound's "source read ahead", docs/performance.md).
    Opened without following a symlink or waiting (a FIFO swapped in since the ``lstat``), nothing
    read into this process, closed at once; any error is the pass's to meet and report."""
    try:
        fd = os.open(path, _CONTENT_FLAGS)
    except OSError:
        return
    try:
        read_ahead(fd)
    finally:
        os.close(fd)


def _hint(fd: int, path: str) -> None:
    """``path`` to the parent's copy-ahead; dropped if the pipe is full or closed (only a hint)."""
    try:
        os.write(fd, os.fsencode(path) + b"\0")
    except OSError:
        pass


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
_BY_DESCRIPTOR = os.scandir in os.supports_fd and bool(_NOFOLLOW)


@contextmanager
def _listed(folder: str, top: bool) -> Iterator[Iterator[os.DirEntry]]:
    """``os.scandir`` of ``folder``, through its descriptor where that can be done: each entry's
    ``lstat`` then looks up one name, not the whole path (the kernel's work for every entry; the
    walk's CPU is what it waits for on a busy machine). Opened without following a symlink, except
    a source's own folder (``top``: the scan follows it)."""
    if not _BY_DESCRIPTOR:
        with os.scandir(long_path(folder)) as it:
            yield it
        return
    fd = os.open(folder, _DIR_FLAGS if top else _DIR_FLAGS | _NOFOLLOW)
    try:
        with os.scandir(fd) as it:
            yield it
    finally:
        os.close(fd)


def _changed_root(root: str, latest: SetAhead) -> bool:
    try:
        return latest.changed(os.lstat(long_path(root)))
    except OSError:
        return False
