"""The versions of one file across a set's snapshots (``plugback versions SET PATH``).

Each snapshot's manifest is streamed (``BackupSet.open_manifest``) until the
path is found or passed (entries are sorted), so memory does not grow with the
snapshots' size. Consecutive snapshots holding the same content are one
version; the list is oldest first. A manifest that cannot be read is skipped
(``verify`` reports it); what a version points at is checked again when it is
restored.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.engine.manifest import FILE, path_problem, sort_key
from core.engine.repo import BackupSet
from core.errors import ManifestDamaged, NewerFormat, NotFound, SnapshotNotFound, UsageError


@dataclass(frozen=True)
class Version:
    """One distinct content of a file: the first snapshot that holds it, and what it was."""

    snapshot_id: str
    time: str
    size: int
    sha256: str
    mtime_ns: int

    def to_dict(self) -> dict:
        return {"snapshot": self.snapshot_id, "time": self.time, "size": self.size, "sha256": self.sha256,
                "mtime_ns": self.mtime_ns}


def versions(bset: BackupSet, path: str) -> list[Version]:
    """The distinct contents ``path`` (as ``ls`` shows it, e.g. ``Documents/a.txt``) had, oldest first."""
    path = path.strip("/")
    if path_problem(path):
        raise UsageError(f"'{path}' is not a path inside the backup: give it as 'plugback ls' shows it, "
                         "e.g. Documents/letter.txt.")
    found: list[Version] = []
    seen_folder = False
    for sid in bset.snapshot_ids():
        entry = _find(bset, sid, path)
        if entry is None:
            continue
        e, time = entry
        if e.type != FILE:
            seen_folder = True
            continue
        if not found or found[-1].sha256 != e.sha256:
            found.append(Version(sid, time, e.size, e.sha256, e.mtime_ns))
    if not found:
        if seen_folder:
            raise UsageError(f"'{path}' is a folder or a link in this backup; versions are listed for files.")
        raise NotFound(what="file", name=path, hint="Check the name with 'plugback ls SET'.")
    return found


def _find(bset: BackupSet, sid: str, path: str):
    """(entry, snapshot time) for ``path`` in snapshot ``sid``, or None (absent or unreadable)."""
    want = sort_key(path)
    try:
        with bset.open_manifest(sid) as reader:
            for e in reader:
                key = sort_key(e.path)
                if key == want:
                    return e, reader.manifest.time
                if key > want:
                    return None
    except (ManifestDamaged, NewerFormat, SnapshotNotFound):
        return None
    return None
