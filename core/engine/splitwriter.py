"""A copy's raw writer: into ``tmp/`` (split into parts where the drive limits a file's size), or
straight at its place in a first backup's ``Latest/`` being built (core/engine/fresh_latest.py)."""

from __future__ import annotations

import os

from core.engine.atomic import tmp_name
from core.engine.fs import FileSystem
from core.errors import PlugbackError


class SplitWriter:
    """A raw writer that moves on to a new part file when one reaches ``part_size``."""

    def __init__(self, fs: FileSystem, tmp_dir: str, part_size: int | None, dest: str | None = None):
        """``dest``: write a file of one part there, not in ``tmp/`` (a name no file has: created
        exclusively; where one is in the way, the file goes to ``tmp/`` after all). ``in_place``
        then says which it was; with ``part_size`` set, ``dest`` must be for a file that fits."""
        self.fs = fs
        self.tmp_dir = tmp_dir
        self.part_size = part_size
        self.paths: list[str] = []
        self._fd: int | None = None
        self._in_part = 0
        self._dest = dest
        self.in_place = False

    def _next(self) -> int:
        """Close the part being written (if any) and start the next one; its descriptor."""
        if self._fd is not None:
            self.fs.finish_fd(self._fd)
            self._fd = None
        if self._dest is not None and not self.paths:
            try:
                fd = self._fd = self.fs.create(self._dest)
                self.paths.append(self._dest)
                self.in_place = True
                self._in_part = 0
                return fd
            except PlugbackError as err:
                if not isinstance(err.__cause__, FileExistsError):
                    raise
        p = tmp_name(self.tmp_dir, ".part")
        fd = self._fd = self.fs.create(p)
        self.paths.append(p)
        self._in_part = 0
        return fd

    def write(self, data) -> int:
        fd = self._fd if self._fd is not None else self._next()
        part = self.part_size
        if part is None:   # (the common case: no size limit, nothing to split)
            self.fs.write_fd(fd, data)
            return len(data)
        view = memoryview(data)
        while view:
            room = part - self._in_part
            if room <= 0:
                fd = self._next()
                continue
            piece = view[:room]
            self.fs.write_fd(fd, piece)
            self._in_part += len(piece)
            view = view[len(piece):]
        return len(data)

    def close(self, mtime_ns: int | None = None, mode: int | None = None) -> None:
        """Close the last part; a file in one part gets ``mtime_ns`` and ``mode`` (Latest/ copies)."""
        fd = self._fd if self._fd is not None else self._next()  # an empty file is still one (empty) part
        self._fd = None
        whole = len(self.paths) == 1
        self.fs.finish_fd(fd, mtime_ns if whole else None, mode if whole else None)

    def discard(self) -> None:
        """Close and remove what was written (the file made in place too: never one found there)."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        for p in self.paths:
            try:
                os.unlink(p)
            except OSError:
                pass
