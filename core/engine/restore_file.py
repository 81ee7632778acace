"""Restoring one file (core/engine/restore.py): where it goes, and writing it there checked.

Every byte is checked against the manifest while it is written to a temporary file next to
its destination; only a file whose size and SHA-256 match is renamed into place, so damaged
content is never restored silently. (In a root this restore made, under a temporary name until
it ends, a file is written at its own name instead and removed unless whole: ``write_file``'s
``direct``.) The three steps, each its own function so that a restore
can run them at different moments (core/engine/restore_ahead.py opens a small file's content
many files before it writes it): :func:`make_room` (what is in the way), :func:`locate` (where
its bytes are on the drive) and :func:`write_file`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
from pathlib import Path
from typing import Iterator

from core.engine import safeio, winattrs
from core.engine.chunks import ChunkPaths
from core.engine.fs import DEFAULT_FILE_MODE, long_path, read_ahead, read_buffer, read_into
from core.engine.manifest import Entry
from core.engine.objindex import ObjectIndex
from core.engine.progress import TextEnum
from core.engine.repo import BackupSet, _content_error
from core.errors import DamagedSet, UsageError

_RUN = secrets.token_hex(4)
_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_COUNTER = itertools.count()
# Restored files never get setuid/setgid (a manifest is untrusted input, and a restored program
# must not run as whoever owned it).
_FILE_BITS = 0o777
LOCKED = "open in another program that does not let it be replaced; not restored (close it and restore again)"


class OnConflict(TextEnum):
    """What to do when a file to restore is already there."""

    SKIP = "skip"
    OVERWRITE = "overwrite"
    KEEP_BOTH = "keep-both"   # restore next to it, as "name (restored).ext"


class RestoreOutcome(TextEnum):
    """What happened to one file (or symlink) of a restore."""

    RESTORED = "restored"          # nothing was in the way
    OVERWRITTEN = "overwritten"    # replaced what was there
    KEPT_BOTH = "kept_both"        # written next to what was there, under a "(restored)" name
    SKIPPED = "skipped"            # something was there and stays
    DAMAGED = "damaged"            # not written: its content on the drive is missing or wrong


Room = tuple[str, RestoreOutcome]   # where a file is written, and how that ends (make_room)
Decided = tuple[RestoreOutcome, str]   # a file's outcome, and why it failed or the name it was kept under


def kept_name(dest: str) -> str:
    """The first free "name (restored).ext", "name (restored 2).ext"... beside ``dest``."""
    folder, name = os.path.split(dest)
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    n = 1
    while True:
        suffix = " (restored)" if n == 1 else f" (restored {n})"
        candidate = os.path.join(folder, f"{stem}{suffix}{'.' + ext if ext else ''}")
        if not os.path.lexists(long_path(candidate)):
            return candidate
        n += 1


def make_room(dest: str, on_conflict: OnConflict, fresh: bool = False) -> Room:
    """Where to write, and how that ends, given what is at ``dest`` now.

    DAMAGED here means a real folder is in the way (nothing is written). ``fresh``: ``dest``'s
    folder was made by this restore (``Folders.ensure``), so nothing is there but what this
    restore wrote, and a manifest names each path once (``EntryOrder``): not looked up.
    """
    if fresh or not os.path.lexists(long_path(dest)):   # (a long path unprefixed would look missing on Windows)
        return dest, RestoreOutcome.RESTORED
    if on_conflict is OnConflict.SKIP:
        return dest, RestoreOutcome.SKIPPED
    if on_conflict is OnConflict.KEEP_BOTH:
        return kept_name(dest), RestoreOutcome.KEPT_BOTH
    if os.path.isdir(long_path(dest)) and not os.path.islink(long_path(dest)):
        return dest, RestoreOutcome.DAMAGED
    return dest, RestoreOutcome.OVERWRITTEN


def restore_file(bset: BackupSet, e: Entry, room: Room, of_newest: bool = False,
                 index: ObjectIndex | None = None, direct: bool = False) -> Decided:
    """Write one file through a temporary name, renamed into place only when its hash matches
    (``direct``: at its own name, see :func:`write_file`).

    ``room``: where it goes and how (:func:`make_room`, its folder made)."""
    found = locate(bset, e, room, of_newest, index)
    return found if isinstance(found, tuple) else write_file(bset, e, room, found, direct=direct)


def locate(bset: BackupSet, e: Entry, room: Room, of_newest: bool = False,
           index: ObjectIndex | None = None) -> Decided | list:
    """Where ``e``'s bytes are on the drive (``BackupSet.content_paths``); or its outcome when
    nothing is to be written (skipped, a folder in the way, its content missing or damaged)."""
    outcome = room[1]
    if outcome is RestoreOutcome.SKIPPED:
        return outcome, ""
    if outcome is RestoreOutcome.DAMAGED:
        return outcome, "a folder is in the way; not restored"
    try:
        paths = _content_paths(bset, e, of_newest, index)
    except DamagedSet as err:   # a damaged chunk list (format 2)
        return RestoreOutcome.DAMAGED, f"{err}; not restored"
    if not paths:
        return RestoreOutcome.DAMAGED, "its content is missing from the drive; not restored"
    return paths


class Opened:
    """A file's content files opened (each a regular file, never reached through a symlink:
    ``safeio.SetFolders``, or ``safeio.open_regular`` with the set as its root), a small file's
    before its turn with its read started (``posix_fadvise`` WILLNEED, ``ahead``): the drive works on
    the next files while this one is written. An error opening them is kept and raised when the
    content is read, where :func:`write_file` handles the errors of a read."""

    __slots__ = ("fds", "error")

    def __init__(self, paths: list, folders: safeio.SetFolders | None = None, ahead: bool = True,
                 root: Path | None = None):
        self.fds: list[int] = []
        self.error: BaseException | None = None
        try:
            for p in paths:
                fd = folders.open(p) if folders is not None else \
                    safeio.open_regular(p, error=_content_error, root=root)
                self.fds.append(fd)
                if ahead:
                    read_ahead(fd)
        except (OSError, DamagedSet) as err:
            self.error = err

    def blocks(self, size: int) -> Iterator[memoryview]:
        """The content, as views of this thread's read buffer (use each before the next); never more
        than ``size`` + 1 bytes (a longer content fails its check: not read to its end, which a file
        in ``/proc`` never reaches).

        ``size``: what the manifest says it holds. One content file that a read into the (bigger)
        buffer returned exactly ``size`` bytes of has ended there (a regular file's read comes back
        short only at its end): no second read to find the end. The bytes are checked by the caller
        as ever; a longer file would have filled the buffer past ``size`` and fail that check."""
        if self.error is not None:
            raise self.error
        buf = read_buffer()
        left = size + 1
        single = len(self.fds) == 1
        for fd in self.fds:
            while left > 0:
                view = buf if left >= len(buf) else buf[:left]
                n = read_into(fd, view)
                if not n:
                    break
                left -= n
                yield buf[:n]
                if single and n < len(view):
                    return   # (a regular file's read comes back short only at its end)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def open_ahead(paths: list, folders: safeio.SetFolders | None = None) -> Opened | None:
    """:class:`Opened` for plain content files (through ``folders``); None for a chunked content
    (read as it comes)."""
    return None if isinstance(paths, ChunkPaths) else Opened(paths, folders)


def write_file(bset: BackupSet, e: Entry, room: Room, paths: list, opened: Opened | None = None,
               direct: bool = False) -> Decided:
    """Write ``e``'s content from ``paths`` (:func:`locate`; ``opened``: already opened) to a temporary
    name beside ``room``'s destination, renamed there only when size and SHA-256 match.

    ``direct``: written at the destination itself, which must be new (``O_EXCL``), in a folder
    tree that is itself under a temporary name until the restore ends (core/engine/restore.py,
    ``_work_roots``): a file that fails its check, or any error or interruption while it is
    written, removes it (docs/architecture.md, "Restore: no rename per file in a new folder")."""
    dest, outcome = room
    tmp = dest if direct else f"{dest[:dest.rfind(os.sep) + 1]}.plugback-restore-{_RUN}-{next(_COUNTER)}.part"
    made = False   # only a file this call created is ever removed
    try:
        fd = os.open(long_path(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FLAGS, 0o666)
        made = True
        if not _write_checked(bset, e, paths, fd, opened):
            _drop(tmp, made, direct)
            made = False
            return RestoreOutcome.DAMAGED, "its content on the drive does not match its checksum; not restored"
        if not direct:
            winattrs.replace_over(long_path(tmp), long_path(dest))   # read-only in the way: made writable
        made = False
        winattrs.keep_readonly(long_path(dest), e.mode)
        winattrs.set_recorded(long_path(dest), e.attrs)   # last: content, time and mode are in place
    except DamagedSet as err:
        _drop(tmp, made, direct)
        return RestoreOutcome.DAMAGED, f"{err}; not restored"
    except OSError as err:
        _drop(tmp, made, direct)
        if winattrs.is_locked(err):   # waited for already (winattrs): the file in the way stays
            return RestoreOutcome.SKIPPED, LOCKED
        if isinstance(err, FileNotFoundError) and not os.path.lexists(long_path(paths[0])):
            return RestoreOutcome.DAMAGED, "its content is missing from the drive; not restored"
        if os.path.exists(long_path(paths[0])):
            raise UsageError(f"Cannot write {dest}: {err.strerror or err}. Check the restore folder.") from None
        return RestoreOutcome.DAMAGED, f"it cannot be read from the drive ({err.strerror or err}); not restored"
    except BaseException:   # PlugbackError (a cancel, the drive gone), an interruption: nothing half-written kept
        _drop(tmp, made, direct)
        raise
    finally:
        if opened is not None:
            opened.close()
    return outcome, (dest if outcome is RestoreOutcome.KEPT_BOTH else "")   # the name it was kept under


def _content_paths(bset: BackupSet, e: Entry, of_newest: bool, index: ObjectIndex | None) -> list | None:
    """Where ``e``'s bytes are (``BackupSet.content_paths``), without asking ``objects/`` by name
    when its listing says the content is not there: then the newest snapshot's file is its own
    copy in ``Latest/``, not looked at first (opening it finds it missing)."""
    if of_newest and index is not None and not e.parts and not index.may_hold(bset.object_name(e)):
        return [bset.layout.latest_name(e.mirror_path)]
    return bset.content_paths(e, of_newest=of_newest)


def _write_checked(bset: BackupSet, e: Entry, paths, fd: int, opened: Opened | None) -> bool:
    """Write ``e``'s content to ``fd`` (a new file, closed here); whether size and SHA-256 match the manifest."""
    digest = hashlib.sha256()
    size = 0
    try:
        for block in opened.blocks(e.size) if opened is not None else bset.read_content(e, paths):
            digest.update(block)
            size += len(block)
            while block:
                block = block[os.write(fd, block):]
        ok = size == e.size and digest.hexdigest() == e.sha256
        if ok:
            os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
            mode = e.mode & _FILE_BITS
            if mode != DEFAULT_FILE_MODE and hasattr(os, "fchmod"):
                os.fchmod(fd, mode or 0o644)
    finally:
        os.close(fd)
    return ok


class Unfinished(UsageError):
    """A file written at its own name (``write_file``'s ``direct``) that failed could not be removed:
    the restore stops and its folder keeps its temporary name (core/engine/restore.py)."""


def _drop(path: str, made: bool = True, direct: bool = False) -> None:
    """Remove the file ``path`` this restore ``made``; one written at its own name (``direct``) that
    stays raises :class:`Unfinished`."""
    if not made:
        return
    try:
        os.unlink(long_path(path))
    except FileNotFoundError:
        pass
    except OSError as err:
        if direct:
            raise Unfinished(f"Cannot remove the unfinished {path} ({err.strerror or err}); the restore "
                             "stopped, and its folder keeps its temporary name.") from None
