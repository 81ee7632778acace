"""``plugback upgrade SET``: a format-1 set to format 2, only when the user asks (issue #11).

Format 2 (docs/format.md) stores older versions of big files as chunks. A Plugback that knows
only format 1 refuses a format-2 set (it refuses any newer ``version``), and another computer
sharing the drive may run one, so a set is never upgraded behind the user's back: new plain
sets are made in format 2, existing ones keep their format until this is run.

The upgrade itself is one atomic rewrite of ``plugback.json`` under the set's lock: nothing
else in a format-1 set changes meaning in format 2 (its objects, ``Latest/`` and manifests are
read as before), and big files' older versions are chunked from the next backup on.
"""

from __future__ import annotations

from pathlib import Path

from core.engine import safeio
from core.engine.layout import SET_VERSION
from core.engine.lock import SetLock
from core.engine.progress import Clock
from core.engine.repo import MAX_META_BYTES, BackupSet, decode_meta
from core.errors import UsageError


def check_upgradable(bset: BackupSet) -> None:
    """UsageError saying why ``bset`` is not upgraded (already current; encrypted), else nothing."""
    if bset.version >= SET_VERSION:
        raise UsageError(f"The backup set at {bset.root} already uses format {bset.version}, the newest this "
                         "Plugback knows. Nothing was changed.")
    if bset.encrypted:
        raise UsageError(f"The backup set at {bset.root} is encrypted; encrypted sets keep format 1 in this "
                         "version of Plugback (chunked old versions are for plain sets so far). Nothing was changed.")


def upgrade(bset: BackupSet, *, clock: Clock | None = None, boundary: Path | None = None) -> int:
    """Rewrite ``bset``'s ``plugback.json`` at format :data:`SET_VERSION`; the version it had.

    Under the set's lock (SetLocked while a backup runs), checked again there: another
    process may have upgraded it meanwhile. Fields this version does not know are kept.
    """
    check_upgradable(bset)
    bset.layout.check_contained(boundary)
    with SetLock(bset.layout.lock, clock or Clock(), purpose="upgrade"):
        raw = safeio.read_bytes(bset.layout.meta, MAX_META_BYTES, root=bset.root)
        bset.meta = decode_meta(raw, bset.layout.meta)
        check_upgradable(bset)
        before = bset.version
        bset.meta["version"] = SET_VERSION
        bset.write_meta()
    return before
