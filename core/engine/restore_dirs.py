"""A restore's folders (core/engine/restore.py): made and checked once each (:class:`Folders`), and kept
aside while their files are written (:class:`DirSpool`): their modes, times and attributes are set last,
deepest first, from a local temporary file, so memory stays flat."""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
import threading
from typing import Iterator

from core.engine.fs import long_path, real_path
from core.engine.manifest import Entry
from core.errors import UnsafePath, UsageError

# Windows: a junction lstat()s as a folder, so a folder's place is proven by its real path there.
_BY_REAL_PATH = sys.platform == "win32"


class Folders:
    """Makes restore folders, checking each once (not once per file) that it is a real folder
    inside its root.

    Folders are made one level at a time below the root, each existing one checked
    with ``lstat`` first: a symlink in the target is never walked through, not even
    to make a folder (``makedirs`` would). A folder reached that way from its root, by
    names none of which is empty, ``.`` or ``..``, is inside the root by construction:
    no ``realpath`` per folder (it cost 4.5 % of a restore), except on Windows, where a
    junction is not told from a folder by ``lstat``. The folders checked last are
    remembered (a bounded number: entries come folder by folder, and one checked again
    costs a few ``lstat`` calls, not memory per folder), with whether this restore made
    them (:meth:`ensure`).
    """

    REMEMBERED = 4096

    def __init__(self):
        self._checked: dict[str, bool] = {}   # oldest first: the first forgotten
        self._lock = threading.Lock()

    def ensure(self, folder: str, root: str) -> bool:
        """Make ``folder`` (below or at ``root``); whether this restore made it, so that nothing in it
        was there before (False when unsure: the root, a folder made by another worker at the same
        moment, one forgotten and checked again)."""
        made = self._checked.get(folder)   # no lock to ask: a dict lookup is atomic
        if made is not None:
            return made
        made = self._make(folder, root)
        with self._lock:
            self._checked[folder] = made
            if len(self._checked) > self.REMEMBERED:
                del self._checked[next(iter(self._checked))]
        return made

    def adopt(self, folder: str) -> None:
        """``folder`` was made by this restore (a root made under a temporary name): nothing in it
        is looked up before a file is written there."""
        with self._lock:
            self._checked[folder] = True

    def _make(self, folder: str, root: str) -> bool:
        rel = os.path.relpath(folder, root)
        names = [] if rel == "." else rel.split(os.sep)
        if any(name in ("", ".", "..") for name in names):
            raise UnsafePath(path=folder)
        path, made = root, False
        for name in names:
            path = os.path.join(path, name)
            known = self._checked.get(path)
            made = _make_real_folder(path) if known is None else known
        if _BY_REAL_PATH and not _within(folder, root):
            raise UnsafePath(path=folder)
        return made


def _within(path: str, root: str) -> bool:
    rp, rr = real_path(path), real_path(root)
    return rp == rr or rp.startswith(rr.rstrip(os.sep) + os.sep)


def _make_real_folder(path: str) -> bool:
    """Make ``path`` (True), or prove what is there a real folder (False)."""
    try:
        os.mkdir(long_path(path))
        return True
    except FileExistsError:
        pass   # there already (or made by another worker a moment ago): check what it is
    if not stat.S_ISDIR(os.lstat(long_path(path)).st_mode):
        raise UsageError(f"{path} is in the way (a file or a symlink where a folder belongs). Move it "
                         "away, or restore to another folder.")
    return False


class DirSpool:
    """The restored folders' (path, mode, mtime, attrs) in a local temporary file: their modes,
    times and attributes are set after every file is written, without a list of every folder in memory."""

    def __init__(self):
        self._f = tempfile.TemporaryFile(prefix="plugback-restore-")

    def add(self, e: Entry) -> None:
        self._f.write(json.dumps([e.path, e.mode, e.mtime_ns, e.attrs]).encode("ascii") + b"\n")

    def backwards(self, block: int = 1 << 16) -> Iterator[tuple[str, int, int, int]]:
        """The records, last first."""
        end = self._f.seek(0, os.SEEK_END)
        tail = b""
        while end > 0:
            start = max(0, end - block)
            self._f.seek(start)
            lines = (self._f.read(end - start) + tail).split(b"\n")
            end, tail = start, lines[0]   # the first piece may be the end of an earlier line
            for line in reversed(lines[1:]):
                if line:
                    yield tuple(json.loads(line))
        if tail:
            yield tuple(json.loads(tail))

    def __enter__(self) -> "DirSpool":
        return self

    def __exit__(self, kind, *_) -> None:
        try:
            self._f.close()   # (flushes what add() buffered: on a full disk, ENOSPC)
        except OSError:
            if kind is None:
                raise   # (otherwise the error that ended the restore is the one to tell, not this one)
