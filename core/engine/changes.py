"""A hint from a change journal: which folders may differ from the parent snapshot (issue #12).

The agent (``core/agent`` change journal) watches the sources with file-system
events and hands the engine a :class:`ChangeHint` in ``BackupOptions.changes``.
The engine then lists only the folders the hint names and takes the parent
snapshot's records everywhere else, without touching those folders on disk
(``core/engine/reuse.py``). The snapshot must be exactly what a full scan would
give, so the hint must be complete; it may name more than changed (that only
costs time).

What the agent puts in a hint
=============================

Paths are absolute paths on this computer: the source folder as configured,
then the names as the file system lists them (same case, same Unicode
normalization: the engine matches them with the names it lists). A path it
cannot place in a source makes the whole hint unused (a full scan).

For every event on a path ``P`` -- created, modified (content or append),
deleted, metadata changed (mode, owner, times, extended attributes, Windows' hidden and
system attributes: watchdog reports these on Windows as a modification), either end
of a rename or move, a symlink created or retargeted:

1. add ``dirname(P)`` to ``dirs`` (that folder's listing changed, or the record
   of ``P`` in it did; its own time changed too);
2. if ``P`` is a **source folder itself** (its own metadata changed), add ``P``
   to ``dirs`` instead (its parent lies outside every source);
3. if ``P`` is a **folder that was created or moved in** (the destination end of
   a move), add ``P`` to ``trees`` as well (everything below it is new to the
   snapshot, and may replace a folder of the same name that was there).

That is all. A folder's own metadata change is rule 1 (its record is part of
its parent's listing); a folder deleted or moved away is rule 1 on its old
path (it and everything below it leave the snapshot); a file moved across
folders is rule 1 on both ends. Events the watcher cannot place (an overflow,
a watch that failed, "something below F changed") name ``F`` in ``trees``, or
the agent passes no hint at all (``changes=None``: a full scan).

What the engine does with it
============================

* ``dirs``: the folder's own record is read again (lstat) and its direct
  entries are listed and read afresh. A subfolder that is not named keeps the
  parent snapshot's records below it -- unless the listing shows it is another
  folder (not a folder in the parent snapshot, or another inode: scanned whole)
  or that its own listing or its readability changed (another mtime, ctime or
  mode: listed too, and so on down).
* ``trees``: the folder and everything below it are scanned as a full scan
  would.
* A named path that no longer is a folder (deleted, or now a file or symlink)
  names the nearest folder above it that still is one. A named folder that the
  parent snapshot does not have (new) names its parent folder too, up to one
  the parent snapshot has, so it is found. Paths below an excluded folder are
  dropped.
* Folders where the previous run could not read something (warnings:
  unreadable, kept previous, changed while reading, special file) are recorded
  in that snapshot and scanned again by the next run, like ``trees``.

When the engine ignores a hint (a full scan instead; ``BackupResult.scan``
says which it did): ``since_snapshot`` is not the parent the run picks (the
newest intact snapshot of the set), the sources or the exclude rules differ
from the parent's, the parent recorded no scan rules (made before issue #12, or
its list of folders to retry was too long), a path lies outside every source,
or ``rehash`` is set.

What the agent must guarantee
=============================

* **The journal starts before the scan.** ``since_snapshot = S`` means: every
  change made after the run that committed ``S`` *began* is in the hint. So the
  agent starts a new journal when it starts a run, and on success that journal
  becomes the hint for the next run against the snapshot the run committed
  (changes made during the run are in it: the run may have listed the folder
  before they happened). On failure the journals are merged (the old hint is
  still against the old parent).
* **Events have arrived.** Watchers deliver late (FSEvents coalesces for a
  second or more; Windows buffers): the agent waits for its watcher's latency
  before it hands over a hint.
* **Nothing was missed.** An overflow, a dropped watch, the agent not running
  for a while, a source on a network share or another volume the watcher does
  not cover: no hint (a full scan), or the affected folders in ``trees``.
* Hard links: an edit through another name of the same file changes this one
  too, but the event names only the folder written through. Such a change
  shows at the next full scan; agents that must catch it do full scans
  periodically.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChangeHint:
    """Folders (absolute paths on this computer) that may have changed since ``since_snapshot``.

    ``dirs``: read each folder's own record and its direct entries again (see the
    module docstring for what the agent puts here, event by event).
    ``trees``: read each folder and everything beneath (a folder created or moved
    in, or events the journal could not place more precisely).
    """

    since_snapshot: str
    dirs: frozenset[str] = frozenset()
    trees: frozenset[str] = frozenset()
