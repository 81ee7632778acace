"""``Latest.sha256``: a sha256sum-compatible list of the files in ``Latest/``.

Run ``sha256sum -c ../Latest.sha256`` inside ``Latest/`` to check the newest
backup with standard tools. Names with a backslash or a newline are escaped the
way GNU sha256sum does (a leading backslash on the line). Files stored split
(over the destination's size limit) are left out: their parts have no hash of
their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from typing import Iterable

from core.engine.atomic import write_atomic
from core.engine.manifest import FILE, Entry, Manifest
from core.engine.manifest_io import READ_BLOCK, Spool

# A file's line as this version's ManifestWriter writes it (core/engine/splice.py: spliced blocks).
_FILE_LINE = re.compile(rb'"path":"([^"\n]*)","type":"f","mtime_ns":-?\d+,"mode":\d+,"size":\d+,'
                        rb'"sha256":"([0-9a-f]{64})"([^\n]*)')
_FILE_KEY = b'","type":"f"'


def sums_line(sha256: str, mirror_path: str) -> bytes:
    name = os.fsencode(mirror_path)
    if b"\\" in name or b"\n" in name:
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
        return b"\\" + sha256.encode() + b"  " + name + b"\n"
    return sha256.encode() + b"  " + name + b"\n"


class LatestSums:
    """``Latest.sha256`` built entry by entry (the newest snapshot's, in manifest order) and
    spooled, so memory stays flat; :meth:`commit` writes it only when it changed."""

    def __init__(self):
        self._spool = Spool("plugback-sums-")
        self._digest = hashlib.sha256()
        self._size = 0

    def add(self, e: Entry) -> None:
        if e.type == FILE and not e.parts and e.sha256:   # a checked file entry always has one
            line = sums_line(e.sha256, e.mirror_path)
            self._digest.update(line)
            self._size += len(line)
            self._spool.add(line[:-1])

    def add_block(self, block: bytes) -> None:
        """The lines of the files in ``block``: whole manifest lines this computer wrote (a splice)."""
        out = []
        matches = list(_FILE_LINE.finditer(block))
        if len(matches) == block.count(_FILE_KEY):
            for m in matches:
                path, sha, rest = m.groups()
                if b"\\" in path or b'"mirror":' in rest or b'"parts":' in rest:
                    out.append(_sums_of(block[m.start() - 1:block.find(b"\n", m.end())]))
                else:
                    out.append(sha + b"  " + path + b"\n")
        else:   # a quote in a name: line by line
            out = [_sums_of(line) for line in block[:-1].split(b"\n") if _FILE_KEY in line]
        text = b"".join(out)
        self._digest.update(text)
        self._size += len(text)
        self._spool.add_block(text)

    def commit(self, bset) -> None:
        try:
            if not _holds(bset.layout.latest_sums, self._size, self._digest.hexdigest()):
                write_atomic(bset.fs, bset.layout.tmp, bset.layout.latest_sums, self._spool.blocks())
        finally:
            self._spool.close()


def _sums_of(line: bytes) -> bytes:
    """The Latest.sha256 line of one file's manifest line (b"" for a file stored split)."""
    d = json.loads(line)
    return b"" if d.get("parts") else sums_line(d["sha256"], d.get("mirror") or d["path"])


def write_latest_sums(bset, entries: Manifest | Iterable[Entry]) -> None:
    """Rewrite ``Latest.sha256`` for the newest snapshot (a Manifest, or its entries as a stream
    in manifest order), atomically, and only if it changed (see :class:`LatestSums`)."""
    sums = LatestSums()
    for e in (entries.entries if isinstance(entries, Manifest) else entries):
        sums.add(e)
    sums.commit(bset)   # nothing changed in Latest/ (the common case): no write, no fsync


def _holds(path, size: int, sha256: str) -> bool:
    """Whether the regular file ``path`` has ``size`` bytes with that SHA-256; never follows a
    symlink or opens a FIFO."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return False
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_BINARY", 0))
    except OSError:
        return False
    digest = hashlib.sha256()
    with open(fd, "rb") as f:
        for block in iter(lambda: f.read(READ_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest() == sha256
