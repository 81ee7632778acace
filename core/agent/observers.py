"""Watching a job's sources with watchdog (issue #12): events become folders in its journal.

One observer per job (so an overflowing event queue or a watch limit concerns that
job alone), one recursive watch per source. On Linux the observer is built from
watchdog's own inotify parts around :class:`_WatchedFD`, which sees what
watchdog otherwise only logs: the kernel's queue overflow (``IN_Q_OVERFLOW``:
watchdog rebuilds its watches and drops the events) and the watch limit
(``ENOSPC`` from ``inotify_add_watch``, which watchdog swallows for every folder
below a source). It also refuses watches on excluded folders and Plugback's
own folders, so those cost no watch at all. Elsewhere (FSEvents on macOS,
ReadDirectoryChangesW on Windows) the OS watches whole trees and such events
are dropped in the handler.

The handler only maps an event to folders and adds them to the journal; events
inside Plugback's own folders (its state folder, a set inside a source, a drive
mounted inside a source) are ignored, so a backup never triggers itself.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
import warnings
from typing import Callable

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver

from core.agent.journal import Journal, folders_for_event

log = logging.getLogger("plugback.observers")

#: What is watched: changes only. Opening and reading (every backup reads every changed file) is not.
EVENTS: list[type[FileSystemEvent]] = [FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent,
                                       FileClosedEvent, DirCreatedEvent, DirDeletedEvent, DirModifiedEvent,
                                       DirMovedEvent]
#: File systems whose events miss changes made elsewhere (network shares, FUSE daemons).
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "afpfs", "webdav", "davfs", "9p", "afs",
              "ceph", "glusterfs", "lustre", "gpfs", "sshfs", "osxfuse", "macfuse", "fuse"}
#: FUSE types that are a local disk seen through FUSE (exFAT, NTFS): every change passes this kernel.
LOCAL_FUSE = {"fuseblk"}


def fs_reliable(fstype: str, opts: str = "") -> bool:
    """Whether change events on a file system of this type (psutil's ``fstype`` / ``opts``) can be trusted."""
    kind = fstype.lower()
    if kind in LOCAL_FUSE:
        return True
    if kind in NETWORK_FS or kind.startswith("fuse.") or kind.startswith("fuse"):
        return False
    return "remote" not in opts.split(",")     # Windows: psutil marks network drives "remote"


def source_fs(path: str, partitions=None) -> tuple[str, str]:
    """(fstype, opts) of the mount holding ``path`` (the longest mount point above it)."""
    import psutil

    real = os.path.realpath(path)
    best = ("", "", "")
    for p in partitions if partitions is not None else psutil.disk_partitions(all=True):
        mount = p.mountpoint
        if (real == mount or real.startswith(mount.rstrip(os.sep) + os.sep)) and len(mount) > len(best[0]):
            best = (mount, p.fstype, p.opts)
    return best[1], best[2]


def _inside(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + os.sep) for p in prefixes)


class Filter:
    """Which paths of a job's sources are not its business: excluded or Plugback's own."""

    def __init__(self, sources: list[str], excludes: list[str], ignored: Callable[[], tuple[str, ...]]):
        from core.engine.scan import Excluder

        self.sources = [os.path.abspath(s) for s in sources]
        self.excluder = Excluder(excludes)
        self.ignored = ignored

    def within(self, path: str) -> bool:
        """Whether ``path`` is a source or inside one (the parent of a source is not the job's)."""
        return _inside(path, tuple(self.sources))

    def skip(self, path: str, is_dir: bool) -> bool:
        """True for a path inside Plugback's own folders or an excluded folder (or an excluded file)."""
        if _inside(path, self.ignored()):
            return True
        for root in self.sources:
            if path == root:
                return False
            if path.startswith(root + os.sep):
                parts = os.path.relpath(path, root).split(os.sep)
                for i in range(1, len(parts) + 1):
                    last = i == len(parts)
                    if self.excluder.excluded("/".join(parts[:i]), is_dir or not last):
                        return True
                return False
        return False


class Handler(FileSystemEventHandler):
    """Adds the folders of each event to the job's ``journals`` (one per set) and calls ``on_change(job)``."""

    def __init__(self, journals: list[Journal], keep: Filter, on_change: Callable[[str], None]):
        self.journals = journals
        self.job = journals[0].job
        self.keep = keep
        self.on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        src, dest = os.fsdecode(event.src_path), os.fsdecode(event.dest_path)
        if self.keep.skip(src, event.is_directory) and (not dest or self.keep.skip(dest, event.is_directory)):
            return
        dirs, trees = folders_for_event(event.event_type, event.is_directory, src, dest)
        dirs, trees = {d for d in dirs if self.keep.within(d)}, {t for t in trees if self.keep.within(t)}
        if dirs or trees:
            for journal in self.journals:
                journal.add(dirs, trees)
            self.on_change(self.job)


#: How long events may take to reach the handler: watchdog holds an inotify move's first half 0.5 s
#: to pair it; FSEvents and ReadDirectoryChangesW deliver in batches (no raw view there: a fixed wait).
MOVE_PAIRING_SECONDS = 0.55
OTHER_OS_LATENCY = 1.5


class RawTimes:
    """When the last raw event and the last first half of a move came in (Linux; monotonic seconds)."""

    def __init__(self) -> None:
        self.last = 0.0
        self.move_from = 0.0

    def seen(self, is_move_from: bool) -> None:
        self.last = time.monotonic()
        if is_move_from:
            self.move_from = self.last


def make_observer(report: Callable[[str], None], refuse: Callable[[str], bool],
                  raw: RawTimes | None = None) -> BaseObserver:
    """This OS's observer; on Linux one whose inotify reports overflow and the watch limit."""
    if sys.platform.startswith("linux"):
        _quiet_double_add()
        return _inotify_observer(report, refuse, raw or RawTimes())
    from watchdog.observers import Observer

    return Observer()


def _quiet_double_add() -> None:
    # watchdog adds a folder created while watched twice (its event, its parent's walk): same watch and
    # callback, harmless, but it warns "Callback with id … will be Overwritten". Only that is silenced.
    warnings.filterwarnings("ignore", message=r"Callback with id '.*' already exists", category=RuntimeWarning)


def _inotify_observer(report: Callable[[str], None], refuse: Callable[[str], bool], raw: RawTimes) -> BaseObserver:
    from watchdog.observers.inotify import InotifyEmitter
    from watchdog.observers.inotify_c import InotifyFD

    class _WatchedFD(InotifyFD):
        """watchdog's inotify instance, telling us what it otherwise only logs or swallows."""

        def add_callback(self, path, mask, callback, id_):
            if refuse(os.fsdecode(path)):
                # watchdog skips a folder below the root it cannot watch: no watch spent here.
                raise OSError(errno.EPERM, "excluded from watching")
            try:
                return super().add_callback(path, mask, callback, id_)
            except OSError as err:
                if err.errno == errno.ENOSPC:
                    report("watch_limit")
                elif err.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                    report("failed")
                raise

        def read_events(self, *args, **kwargs):
            events = super().read_events(*args, **kwargs)
            for event in events:
                raw.seen(event.is_moved_from)
            return events

        def unread(self) -> int:
            """Bytes of events the kernel holds that were not read yet (FIONREAD on the inotify fd)."""
            if sys.platform == "win32":
                return 0   # never: inotify is Linux's (this keeps the type checker's Windows pass honest)
            import fcntl
            import struct
            import termios

            fd: int = getattr(self, "_inotify_fd", -1)   # watchdog 7's name for it
            try:
                return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
            except (OSError, TypeError):
                return 0

        def handle_event(self, event) -> None:
            if event.is_queue_overflow:
                report("overflow")      # events were lost; watchdog rebuilds its watches
            super().handle_event(event)

    class _Observer(BaseObserver):
        """watchdog's InotifyObserver, on a :class:`_WatchedFD`."""

        def __init__(self) -> None:
            self._fd = _WatchedFD()
            self._fd.start()
            self.unread = self._fd.unread
            super().__init__(InotifyEmitter, inotify_fd=self._fd)

        def on_thread_stop(self) -> None:
            super().on_thread_stop()
            self._fd.stop()
            self._fd.join()

    return _Observer()


class SourceWatch:
    """The observer of one job: a recursive watch per source feeding the job's journals (one per set)."""

    def __init__(self, journals: list[Journal], sources: list[str], excludes: list[str],
                 ignored: Callable[[], tuple[str, ...]], on_change: Callable[[str], None], partitions=None):
        self.journals = journals
        self.job = journals[0].job
        self.keep = Filter(sources, excludes, ignored)
        self.on_change = on_change
        self.raw = RawTimes()
        self.observer = make_observer(self._report, self._refuse, self.raw)
        self.handler = Handler(journals, self.keep, on_change)
        self.reason: str | None = None
        self._partitions = partitions

    def _refuse(self, path: str) -> bool:
        return path not in self.keep.sources and self.keep.skip(path, True)

    def _report(self, reason: str) -> None:
        """Overflow, watch limit, failure: this journal may miss changes. A watch limit lasts."""
        if self.reason is None or reason == "watch_limit":
            log.warning("watching %s: %s", self.job, reason)
        for journal in self.journals:
            journal.distrust(reason, permanent=reason == "watch_limit")
        self.on_change(self.job)
        self.reason = self.reason or reason

    def start(self) -> "SourceWatch":
        """Watch every source (a missing one marks the journal untrusted; the others are watched)."""
        for source in self.keep.sources:
            fstype, opts = source_fs(source, self._partitions)
            if not fs_reliable(fstype, opts):
                for journal in self.journals:
                    journal.distrust("unreliable_fs", permanent=True)
            try:
                self.observer.schedule(self.handler, source, recursive=True, event_filter=EVENTS)
            except OSError as err:
                self._report("watch_limit" if err.errno == errno.ENOSPC else "failed")
        try:
            self.observer.start()
        except OSError as err:   # the watches are added when the observer starts its emitters
            self._report("watch_limit" if err.errno == errno.ENOSPC else "failed")
        return self

    def settle(self, limit: float = 3.0) -> None:
        """Wait until the events of changes made before now have reached the journal (at most ``limit`` s).

        On Linux: until any move's first half had its pairing time and the observer has
        dispatched everything read (milliseconds, unless a move just happened); elsewhere
        the OS's own batching time.
        """
        deadline = time.monotonic() + limit
        if not sys.platform.startswith("linux"):
            time.sleep(OTHER_OS_LATENCY)
            return
        queue = self.observer.event_queue
        unread = getattr(self.observer, "unread", lambda: 0)
        quiet_checks = 0
        while time.monotonic() < deadline:
            now = time.monotonic()
            settled = unread() == 0 and now >= self.raw.move_from + MOVE_PAIRING_SECONDS \
                and queue.unfinished_tasks == 0
            quiet_checks = quiet_checks + 1 if settled else 0
            if quiet_checks >= 2:   # twice, 20 ms apart: a batch read in between has been handled
                return
            time.sleep(0.02)

    def healthy(self) -> bool:
        """False once the observer or one of its watches stopped (a source deleted, a thread died)."""
        return self.observer.is_alive() and all(e.is_alive() for e in list(self.observer.emitters))

    def stop(self) -> None:
        try:
            self.observer.stop()
            if self.observer.is_alive():
                self.observer.join(5)
        except RuntimeError:
            pass
