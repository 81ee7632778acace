"""The entries a restore writes, kept from its one read of the manifest (core/engine/restore.py).

A restore reads the snapshot's manifest from the drive once, to its checked end
(trailer: entry count and SHA-256), before it writes anything: nothing is restored
on the word of an unchecked manifest. The entries it chose on the way, each checked
there (``parse_entry``, order, ``check_safe``), wait in a local temporary file this
process made and wrote (unlinked, never on the drive): read back as they were put,
they need neither parsing nor checking again. Parsing the manifest a second time
was a third of a restore's Python time at 20,000 tiny files.

Blocks of :data:`BATCH` entries as ``marshal`` tuples (only numbers, strings and
None: nothing to execute), compressed with zlib at level 1, so memory stays flat
and the file is about the size of the manifest.
"""

from __future__ import annotations

import marshal
import struct
import tempfile
import zlib
from typing import Iterator

from core.engine.manifest import Entry

BATCH = 1024
_LENGTH = struct.Struct("<I")


def _fields(e: Entry) -> tuple:
    return (e.path, e.type, e.size, e.mtime_ns, e.mode, e.sha256, e.target, e.ino, e.ctime_ns, e.mirror,
            e.parts, e.obj, e.attrs, e.stored)


class EntrySpool:
    """Checked entries, in the order added, read back once by iterating."""

    def __init__(self):
        self._f = tempfile.TemporaryFile(prefix="plugback-restore-")
        self._batch: list[tuple] = []

    def add(self, e: Entry) -> None:
        self._batch.append(_fields(e))
        if len(self._batch) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            data = zlib.compress(marshal.dumps(self._batch), 1)
            self._f.write(_LENGTH.pack(len(data)) + data)
            self._batch = []

    def __iter__(self) -> Iterator[Entry]:
        self._flush()
        self._f.seek(0)
        while True:
            head = self._f.read(_LENGTH.size)
            if not head:
                return
            for fields in marshal.loads(zlib.decompress(self._f.read(_LENGTH.unpack(head)[0]))):
                yield Entry(*fields)

    def __enter__(self) -> "EntrySpool":
        return self

    def __exit__(self, *_) -> None:
        self._f.close()
