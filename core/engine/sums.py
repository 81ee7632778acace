"""``Latest.sha256``: a sha256sum-compatible list of the files in ``Latest/``.

Run ``sha256sum -c ../Latest.sha256`` inside ``Latest/`` to check the newest
backup with standard tools. Names with a backslash or a newline are escaped the
way GNU sha256sum does (a leading backslash on the line). Files stored split
(over the destination's size limit) are left out: their parts have no hash of
their own.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from typing import Iterable

from core.engine.atomic import write_atomic
from core.engine.manifest import FILE, Entry, Manifest

BLOCK = 1 << 20


def sums_line(sha256: str, mirror_path: str) -> bytes:
    name = os.fsencode(mirror_path)
    if b"\\" in name or b"\n" in name:
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
        return b"\\" + sha256.encode() + b"  " + name + b"\n"
    return sha256.encode() + b"  " + name + b"\n"


def write_latest_sums(bset, entries: Manifest | Iterable[Entry]) -> None:
    """Rewrite ``Latest.sha256`` for the newest snapshot (a Manifest, or its entries as a stream
    in manifest order), atomically, and only if it changed.

    The lines go to a local temporary file first (memory stays flat at a million files),
    are compared with the file on the drive by size and SHA-256, and only then copied.
    """
    if isinstance(entries, Manifest):
        entries = entries.entries
    digest, size = hashlib.sha256(), 0
    with tempfile.TemporaryFile(prefix="plugback-sums-") as spool:
        for e in entries:
            if e.type == FILE and not e.parts:
                line = sums_line(e.sha256, e.mirror_path)
                spool.write(line)
                digest.update(line)
                size += len(line)
        if _holds(bset.layout.latest_sums, size, digest.hexdigest()):
            return   # nothing changed in Latest/ (the common case): no write, no fsync
        spool.seek(0)
        write_atomic(bset.fs, bset.layout.tmp, bset.layout.latest_sums, iter(lambda: spool.read(BLOCK), b""))


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
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest() == sha256
