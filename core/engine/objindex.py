"""Which contents ``objects/`` may hold, learnt from one listing per two-hex folder (issue #11).

A restore of the newest snapshot and ``verify`` ask, for every file, whether ``objects/`` has
its content before they read it from ``Latest/``. Asked by name (``BackupSet.object_paths``:
a path built and a ``stat``) that is one failed look-up per file, most of them in a set
whose old versions are few. Here each folder ``objects/<2 hex>/`` is listed once, when first
asked about, and the names in it remembered: a name not among them has no object, no parts
and no chunk list (all of them live in that folder), so the caller skips the look-up.

Only a "no" is an answer: ``may_hold`` is True for a name that is listed and for every name
of a folder that holds more than :data:`REMEMBERED` entries (not remembered, so memory stays
bounded whatever the set's size: at most 256 folders of that many names); the caller then
asks ``object_paths`` as before, which does all the checking. What lies in the folder is
only compared, never opened or followed.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from core.engine.fs import long_path

REMEMBERED = 256   # names remembered per folder (~30 KB); a fuller folder is asked name by name


class ObjectIndex:
    """``may_hold(name)``: whether ``objects/`` may hold content ``name`` (False: certainly not)."""

    def __init__(self, objects: Path):
        self._objects = str(objects)
        self._folders: dict[str, frozenset[str] | None] = {}
        self._lock = threading.Lock()

    def may_hold(self, name: str) -> bool:
        prefix = name[:2]
        try:
            names = self._folders[prefix]
        except KeyError:
            names = self._list(prefix)
        return names is None or name in names

    def _list(self, prefix: str) -> frozenset[str] | None:
        found = _names(os.path.join(self._objects, prefix))
        with self._lock:
            self._folders[prefix] = found
        return found


def _names(folder: str) -> frozenset[str] | None:
    """The content names in ``folder`` (a missing folder: none), or None when there are more
    than :data:`REMEMBERED` or it cannot be listed (then every name is asked for by name)."""
    names: set[str] = set()
    try:
        with os.scandir(long_path(folder)) as it:
            for entry in it:
                names.add(entry.name.partition(".")[0])   # <name>, <name>.001, <name>.chunks
                if len(names) > REMEMBERED:
                    return None
    except FileNotFoundError:
        pass   # no such folder: no content with this prefix
    except OSError:
        return None   # unreadable: asking by name reports it
    return frozenset(names)
