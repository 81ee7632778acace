"""Restoring names the target cannot hold: a set made on Linux, restored on Windows or onto exFAT.

A snapshot keeps every name as the source had it. A Linux source may hold
``CON``, ``a:b.txt``, ``notes.`` or both ``README`` and ``Readme``; Windows (and
FAT/exFAT/NTFS anywhere) cannot create those, and a case-insensitive folder
(Windows, macOS by default) holds only one of a case-only pair. Such an entry is
restored under the escaped name backups use for ``Latest/`` (core/engine/names.py:
``a%3Ab.txt``, ``_CON``, ``notes%2E``, ``Readme~1``) and a ``renamed`` warning
names both, so a restore never fails or silently overwrites because of a name.

Entries come sorted component by component, so a folder's names are needed only
while the restore is inside it: the names given in the folders on the current
path are kept (memory: one path's folders, not the number of files).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from core.engine.fs import _WINDOWS_FS, VolumeInfo, fstype_of
from core.engine.hashset import CompactSet
from core.engine.manifest import DIR, Entry
from core.engine.names import WINDOWS, escape_component
from core.engine.progress import RunWarning, WarningCode

_FUSEFAT = {"fuse.fusefat", "fusefat"}


def target_rules(root: str) -> VolumeInfo | None:
    """What the restore folder ``root`` can hold, found without writing there; None: any name.

    Windows: the Windows rules. Elsewhere: a FAT, exFAT or NTFS volume gets them too
    (fusefat only takes ASCII names); a case-insensitive folder (macOS's default APFS)
    numbers case-only pairs. Case is tested by looking up the folder's own path in
    another case, so nothing in the user's folder is created or deleted.
    """
    if sys.platform == "win32":
        return WINDOWS
    fstype = fstype_of(Path(root))
    if fstype in _WINDOWS_FS:
        return VolumeInfo(fstype, True, True, False, None, ascii_only=fstype in _FUSEFAT)
    if _case_insensitive(root):
        return VolumeInfo(fstype, True, False, True, None)
    return None


def _case_insensitive(folder: str) -> bool:
    real = os.path.realpath(folder)
    other = real.swapcase()
    if other == real:   # no letters in the path: cannot tell, assume the usual case-sensitive
        return False
    try:
        return os.path.samefile(real, other)
    except OSError:
        return False


class RestoreNamer:
    """Gives each restored entry a path its target can hold, in the order entries come.

    ``rules``: a fixed rule set (tests simulate Windows with ``names.WINDOWS``), or None
    to find out per restore root with :func:`target_rules`. The first component (the
    source's top folder, which the caller maps to a root) is never renamed. The names
    given in a folder are kept as 64-bit keys while the restore is inside it.
    """

    def __init__(self, roots: dict[str, str], rules: VolumeInfo | None, warnings: list[RunWarning]):
        self.warnings = warnings
        self._rules = {top: rules if rules is not None else target_rules(root) for top, root in roots.items()}
        self._used: dict[str, CompactSet] = {}      # local folder path -> the names given in it
        self._inside: list[tuple[str, str]] = []   # (real, local) paths of the folders the restore is in

    def local(self, e: Entry) -> Entry:
        """``e`` with the path it is restored as (``e`` itself when its name can stay)."""
        top, _, rest = e.path.partition("/")
        rules = self._rules.get(top)
        if rules is None or not rest:
            return e
        parent, _, name = e.path.rpartition("/")
        local_parent = self._enter(parent, rules)
        local_name = self._name_for(rules, local_parent, name)
        path = f"{local_parent}/{local_name}"
        if e.type == DIR:
            self._inside.append((e.path, path))
        if local_name != name:
            self.warnings.append(RunWarning(
                WarningCode.RENAMED, e.path,
                f"restored as '{local_name}': the restore folder cannot hold the name '{name}'"))
        if path == e.path:
            return e
        # The mirror stays: it is where Latest/ holds the content.
        return dataclasses.replace(e, path=path, mirror=e.mirror_path)

    def _name_for(self, rules: VolumeInfo, local_parent: str, name: str) -> str:
        """A name for ``name`` in ``local_parent`` that the target holds and nothing given there has
        (also not in another case, where case does not count): as ``names.MirrorNamer`` does."""
        used = self._used.setdefault(local_parent, CompactSet())
        base = escape_component(name, rules)
        candidate, n = base, 1
        while (candidate.casefold() if rules.case_insensitive else candidate) in used:
            stem, dot, ext = base.rpartition(".")
            candidate = f"{stem}~{n}.{ext}" if dot and stem else f"{base}~{n}"
            n += 1
        used.add(candidate.casefold() if rules.case_insensitive else candidate)
        return candidate

    def _enter(self, parent: str, rules: VolumeInfo) -> str:
        """The local path of the folder ``parent``, leaving the folders it is not inside."""
        while self._inside and not (parent + "/").startswith(self._inside[-1][0] + "/"):
            self._used.pop(self._inside.pop()[1], None)
        if self._inside and self._inside[-1][0] == parent:
            return self._inside[-1][1]
        # Folders above a restored subset are not entries: their names come from the path.
        real, local = self._inside[-1] if self._inside else (parent.partition("/")[0],) * 2
        for name in parent[len(real) + 1:].split("/") if parent != real else ():
            real, local = f"{real}/{name}", f"{local}/{self._name_for(rules, local, name)}"
            self._inside.append((real, local))
        return local
