"""``Latest.sha256``: a sha256sum-compatible list of the files in ``Latest/``.

Run ``sha256sum -c ../Latest.sha256`` inside ``Latest/`` to check the newest
backup with standard tools. Names with a backslash or a newline are escaped the
way GNU sha256sum does (a leading backslash on the line). Files stored split
(over the destination's size limit) are left out: their parts have no hash of
their own.
"""

from __future__ import annotations

import os
import stat

from core.engine.atomic import write_atomic
from core.engine.manifest import FILE, Manifest


def sums_line(sha256: str, mirror_path: str) -> bytes:
    name = os.fsencode(mirror_path)
    if b"\\" in name or b"\n" in name:
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
        return b"\\" + sha256.encode() + b"  " + name + b"\n"
    return sha256.encode() + b"  " + name + b"\n"


def write_latest_sums(bset, manifest: Manifest) -> None:
    """Rewrite ``Latest.sha256`` for ``manifest`` (the newest snapshot), atomically."""
    data = b"".join(sums_line(e.sha256, e.mirror_path) for e in manifest.entries
                    if e.type == FILE and not e.parts)
    if _holds(bset.layout.latest_sums, data):
        return   # nothing changed in Latest/ (the common case): no write, no fsync
    write_atomic(bset.fs, bset.layout.tmp, bset.layout.latest_sums, data)


def _holds(path, data: bytes) -> bool:
    """Whether the regular file ``path`` holds ``data``; never follows a symlink or opens a FIFO."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
            return False
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_BINARY", 0))
    except OSError:
        return False
    with open(fd, "rb") as f:
        return f.read(len(data) + 1) == data
