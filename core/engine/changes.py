"""A hint from a change journal: which folders may differ from the parent snapshot.

The agent (``core/agent`` change journal, issue #12) watches the sources with
file-system events and hands the engine a :class:`ChangeHint`. The engine
rescans only those folders and reuses the parent snapshot's records
elsewhere; the snapshot must be exactly what a full scan would give. A hint is
only good against the snapshot it was collected since: the engine falls back
to a full scan when the parent it picks is another one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChangeHint:
    """Folders (absolute paths on this computer) that may have changed since ``since_snapshot``.

    ``dirs``: rescan each folder's direct entries (a file in it created, edited,
    removed, renamed, its metadata changed; a subfolder created, removed or renamed).
    ``trees``: rescan each folder and everything beneath (a folder moved in, or
    events the journal could not place more precisely).
    """

    since_snapshot: str
    dirs: frozenset[str] = frozenset()
    trees: frozenset[str] = frozenset()
