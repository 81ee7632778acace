"""``Latest.sha256``: a sha256sum-compatible list of the files in ``Latest/``.

Run ``sha256sum -c ../Latest.sha256`` inside ``Latest/`` to check the newest
backup with standard tools. Names with a backslash or a newline are escaped the
way GNU sha256sum does (a leading backslash on the line). Files stored split
(over the destination's size limit) are left out: their parts have no hash of
their own.
"""

from __future__ import annotations

import os

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
    try:
        if bset.layout.latest_sums.read_bytes() == data:
            return   # nothing changed in Latest/ (the common case): no write, no fsync
    except OSError:
        pass
    write_atomic(bset.fs, bset.layout.tmp, bset.layout.latest_sums, data)
