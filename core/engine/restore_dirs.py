"""A restore's folders, kept aside while their files are written (core/engine/restore.py): their modes,
times and attributes are set last, deepest first, from a local temporary file, so memory stays flat."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Iterator

from core.engine.manifest import Entry


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

    def __exit__(self, *_) -> None:
        self._f.close()
