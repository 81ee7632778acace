"""A journal scan (issue #12): the parent snapshot's records where the change hint names nothing,
fresh listings where it does. What the hint means is ``core/engine/changes.py``'s.

The run (``core/engine/backup.py``) asks :class:`Reuse` three things:

1. while it reads the parent manifest whole (its first read, before anything is
   written), ``begin(header)`` and ``note(entry)`` per entry: whether the hint can
   be used against this parent, and which named folders the parent has;
2. ``pairs(...)``: the ``(scan entry, parent entry)`` pairs of the pass, in
   manifest order -- a full scan merged with the parent (``window.merge``), or
   the journal scan below, which yields the same pairs a full scan would;
3. ``record(warnings)``: the new manifest's ``scan`` field (its scan rules, and the
   places this run could not read, which the next journal scan reads again).

The journal scan is one sorted pass over the parent manifest's stream (its second
read), like the full scan: memory holds the plan (the hint's folders) and one
listing per folder being listed, never an entry per file.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
from typing import Iterable, Iterator, Sequence

from core.engine import fullsplice
from core.engine.changes import ChangeHint
from core.engine.fs import long_path
from core.engine.manifest import DIR, MAX_RETRY, Entry, Manifest, sort_key
from core.engine.prefetch import Prefetch
from core.engine.progress import RunWarning, WarningCode
from core.engine.scan import (
    DEFAULT_EXCLUDES,
    Excluder,
    ScanEntry,
    Source,
    _walk,
    children,
    entry_for,
    lstat_beneath,
    plan_sources,
    root_entry,
    scan,
)
from core.engine.splice import ParentLines, Splice
from core.engine.window import merge

FULL, JOURNAL = "full", "journal"
MAX_RETRY_CHARS = 256 << 10    # the header line must stay far below manifest_io.MAX_LINE
# What a run could not read (or read changing): the next journal scan reads those places again.
_RETRY_CODES = (WarningCode.UNREADABLE, WarningCode.KEPT_PREVIOUS, WarningCode.CHANGED_WHILE_READING,
                WarningCode.SPECIAL_FILE)
_REUSE, _LIST, _WHOLE = 0, 1, 2   # what to do below a folder


def rules_key(excludes: Iterable[str]) -> str:
    """A key of everything besides the sources that decides what a scan records: the user's
    exclude patterns and the built-in ones (a new version's defaults mean a full scan), and what
    a record holds (v2: Windows' hidden and system ``attrs``, which a v1 version's records lack)."""
    text = json.dumps({"v": 2, "defaults": DEFAULT_EXCLUDES, "excludes": list(excludes)})
    return hashlib.sha256(text.encode()).hexdigest()


class Plan:
    """The hint in the set's paths: folders to list (``dirs``) and to scan whole (``trees``)."""

    def __init__(self, dirs: set[str], trees: set[str]):
        self.dirs, self.trees = dirs, trees
        self.named = dirs | trees


class Reuse:
    """One run's choice between a full and a journal scan; see the module docstring."""

    def __init__(self, hint: ChangeHint | None, excludes: Sequence[str], rehash: bool,
                 source_paths: list[str], set_root: str):
        self.hint = None if rehash else hint
        self.rehash = rehash
        self.excludes, self.source_paths = excludes, source_paths
        self.set_root = os.path.abspath(set_root)
        self.kind = FULL
        self._plan: Plan | None = None
        self._parent: str | None = None
        self._wanted: set[str] = set()    # named folders and their ancestors (set paths)
        self._found: set[str] = set()     # ... those the parent has as folders

    # --- 1. while the parent manifest is read whole ----------------------------------------
    def begin(self, parent: Manifest) -> None:
        """The parent's header is known: plan the journal scan, or leave ``kind`` full."""
        hint = self.hint
        scan_field = parent.scan or {}
        if (hint is None or hint.since_snapshot != parent.snapshot_id or not scan_field.get("rules")
                or scan_field["rules"] != rules_key(self.excludes)):
            return
        sources = plan_sources(self.source_paths, parent.sources)
        if sorted((s.name, s.path) for s in sources) != sorted((s["name"], s["path"]) for s in parent.sources):
            return
        plan = _map_hint(hint, sources, Excluder(self.excludes), self.set_root, scan_field.get("retry", ()))
        if plan is None:
            return
        self._plan, self._parent = plan, parent.snapshot_id
        for path in plan.named:
            while path:
                self._wanted.add(path)
                path = posixpath.dirname(path)

    def note(self, e: Entry) -> None:
        """One entry of the parent, in the whole first read."""
        if e.type == DIR and e.path in self._wanted:
            self._found.add(e.path)

    def wanted(self, parent: Manifest) -> set[str]:
        """``begin(parent)``, then the folders whose presence in the parent matters: a first read
        that does not decode every entry (core/engine/splice.py) calls ``found`` for those it has."""
        self.begin(parent)
        return set(self._wanted)

    def found(self, path: str) -> None:
        self._found.add(path)

    def restart(self) -> None:
        """Forget what a first read noted (it was not the parent's after all: read it again)."""
        self._plan, self._parent = None, None
        self._wanted, self._found = set(), set()

    def _finish(self) -> Plan:
        """Named folders the parent does not have are new: list the folder above them (up to
        one the parent has), so the listing finds them."""
        plan = self._plan
        assert plan is not None
        for path in sorted(plan.named):
            while "/" in path and path not in self._found:
                path = posixpath.dirname(path)
                plan.dirs.add(path)
        plan.named = plan.dirs | plan.trees
        return plan

    # --- 2. the pass ------------------------------------------------------------------
    def pairs(self, parent_id: str | None, sources: list[Source], excluder: Excluder,
              warnings: list[RunWarning], old: Iterable[Entry], ahead: Prefetch | None = None
              ) -> Iterator[tuple | Splice]:
        """``(scan entry or None, parent entry or None)`` per path, in manifest order; given the
        lines of a parent this computer wrote (``ParentLines``), a journal scan yields runs of
        reused records as a :class:`Splice` instead of a pair per record, and a full scan runs of
        unchanged records (core/engine/fullsplice.py). ``ahead``: the sources read ahead (a full
        scan's; stopped here for a journal scan)."""
        if self._plan is None or parent_id is None or parent_id != self._parent:
            self.kind = FULL
            if isinstance(old, ParentLines) and not self.rehash:   # unchanged entries' lines kept as they are
                return fullsplice.scan_pairs(sources, excluder, warnings, ahead, old)
            return merge(scan(sources, excluder, warnings, ahead), old)
        if ahead is not None:
            ahead.stop()
        self.kind = JOURNAL
        if isinstance(old, ParentLines):
            return _SpliceScan(self._finish(), excluder, warnings, old).run(sources)
        return _JournalScan(self._finish(), excluder, warnings, old).run(sources)

    # --- 3. the new manifest's scan field -----------------------------------------------
    def record(self, warnings: list[RunWarning]) -> dict:
        """The ``scan`` header field of the snapshot this run commits."""
        retry = sorted({w.path for w in warnings if w.code in _RETRY_CODES and self._in_source(w.path)})
        field: dict = {"by": self.kind, "rules": rules_key(self.excludes), "retry": retry}
        if len(retry) > MAX_RETRY or sum(len(p) for p in retry) > MAX_RETRY_CHARS:
            field = {"by": self.kind, "retry": []}    # too much to retry: the next run scans all
        return field

    def _in_source(self, path: str) -> bool:
        return any(_set_path(path, Source(p, "s")) is not None for p in self.source_paths)


def _set_path(path: str, src: Source) -> str | None:
    """``path`` (absolute, on this computer) as a path in the set, if it lies in ``src``."""
    if path.startswith("\\\\?\\"):   # a long Windows path as the scan reads it (fs.long_path)
        path = "\\\\" + path[8:] if path.startswith("\\\\?\\UNC\\") else path[4:]
    path = os.path.normpath(path)
    norm, root = os.path.normcase(path), os.path.normcase(os.path.normpath(src.path))
    if norm == root:
        return src.name
    prefix = root.rstrip(os.sep) + os.sep
    if not norm.startswith(prefix):
        return None
    return src.name + "/" + path[len(prefix):].replace(os.sep, "/")


def _map_hint(hint: ChangeHint, sources: list[Source], excluder: Excluder, set_root: str,
              retry: Iterable[str]) -> Plan | None:
    """The hint's folders as set paths, checked on disk; None if a path lies outside every source."""
    dirs: set[str] = set()
    trees: set[str] = set()
    named = [(p, hint.trees) for p in hint.dirs | hint.trees] + [(p, None) for p in retry]
    for path, kind in named:
        if not isinstance(path, str) or "\x00" in path or not os.path.isabs(path):
            return None   # not a path this computer could have: trust none of the hint
        places = [(src, sp) for src in sources if (sp := _set_path(path, src)) is not None]
        if not places and kind is not None:
            return None   # the agent names a place the run does not back up: trust none of it
        inside_set = _set_path(path, Source(set_root, "s")) is not None
        for src, sp in places:
            if inside_set or _excluded(sp, excluder):
                continue
            folder, whole = _nearest_folder(src, sp)
            whole = whole and (kind is None or path in kind)
            (trees if whole else dirs).add(folder)
    return Plan(dirs, trees)


def _excluded(set_path: str, excluder: Excluder) -> bool:
    parts = set_path.split("/")[1:]
    return any(excluder.excluded("/".join(parts[:i]), True) for i in range(1, len(parts) + 1))


def _abspath(src: Source, set_path: str) -> str:
    rel = set_path[len(src.name) + 1:]
    return os.path.join(src.path, rel.replace("/", os.sep)) if rel else src.path


def _nearest_folder(src: Source, set_path: str) -> tuple[str, bool]:
    """``set_path`` if it is a folder on disk now (True), else the nearest folder above it (False)."""
    path, exact = set_path, True
    while "/" in path:
        try:
            if stat.S_ISDIR(os.lstat(long_path(_abspath(src, path))).st_mode):
                return path, exact
        except OSError:
            pass
        path, exact = posixpath.dirname(path), False
    return path, exact


class _JournalScan:
    """The pairs of a journal scan: one pass over the parent's stream (one entry looked ahead)."""

    def __init__(self, plan: Plan, excluder: Excluder, warnings: list[RunWarning], old: Iterable[Entry]):
        self.plan, self.excluder, self.warnings = plan, excluder, warnings
        self._old = iter(old)
        self.nxt: Entry | None = next(self._old, None)
        self.src: Source = Source("", "")
        self._prefix, self._cut = "", 0

    def _take(self) -> Entry:
        e = self.nxt
        assert e is not None
        self.nxt = next(self._old, None)
        return e

    def _subtree(self, path: str) -> Iterator[Entry]:
        """The parent's entries below ``path``, taken from the stream."""
        prefix = path + "/"
        while self.nxt is not None and self.nxt.path.startswith(prefix):
            yield self._take()

    def run(self, sources: list[Source]) -> Iterator[tuple]:
        for src in sorted(sources, key=lambda s: s.name):
            while self.nxt is not None and self.nxt.path.split("/", 1)[0] < src.name:
                yield from self._gone(self._take())   # (the sources are the parent's: not expected)
            self.src = src
            self._prefix, self._cut = src.path.rstrip(os.sep) + os.sep, len(src.name) + 1   # for _reused
            old = self._take() if self.nxt is not None and self.nxt.path == src.name else None
            se = root_entry(src) if old is None or src.name in self.plan.named else self._reused(old)
            yield se, old
            yield from self._below(se, old)
        while self.nxt is not None:
            yield from self._gone(self._take())

    def _gone(self, e: Entry) -> Iterator[tuple]:
        yield None, e
        if e.type == DIR:
            for x in self._subtree(e.path):
                yield None, x

    def _how(self, se: ScanEntry, old: Entry) -> int:
        """What to do below a folder both the parent and the disk have, given its fresh record."""
        path = se.path
        if path in self.plan.trees or se.ino != old.ino:
            return _WHOLE   # another folder in its place
        # Its listing changed, or whether it can be read (what lies deeper is reached through it).
        if (path in self.plan.dirs or se.mtime_ns != old.mtime_ns or se.ctime_ns != old.ctime_ns
                or se.mode != old.mode):
            return _LIST
        return _REUSE

    def _below(self, se: ScanEntry | None, old: Entry | None) -> Iterator[tuple]:
        """The pairs below one path, after the pair of the path itself was yielded."""
        if old is not None and old.type == DIR and (se is None or se.type != DIR):
            for x in self._subtree(old.path):
                yield None, x               # not a folder any more: all of it is gone
            return
        if se is None or se.type != DIR:
            return
        how = _WHOLE if old is None or old.type != DIR else self._how(se, old)
        rel = se.path[len(self.src.name) + 1:]
        if how == _WHOLE:
            yield from merge(_walk(self.src.path, self.src.name, rel, self.excluder, self.warnings, se),
                             self._subtree(se.path))
        elif how == _LIST:
            yield from self._listed(se, rel)
        else:
            yield from self._reuse(se.path)

    def _listed(self, folder: ScanEntry, rel: str) -> Iterator[tuple]:
        """A folder listed afresh: its entries merged with the parent's, each handled below."""
        fresh = children(self.src.path, self.src.name, rel, self.excluder, self.warnings, folder)
        prefix = folder.path + "/"
        for se, old in merge(fresh, self._direct(prefix)):
            yield se, old
            yield from self._below(se, old)

    def _direct(self, prefix: str) -> Iterator[Entry]:
        """The parent's direct entries of a folder (``_below`` takes what lies under each)."""
        while self.nxt is not None and self.nxt.path.startswith(prefix):
            yield self._take()

    def _reuse(self, path: str) -> Iterator[tuple]:
        """A folder nobody named: the parent's records, except below named folders."""
        prefix, named = path + "/", self.plan.named
        while self.nxt is not None and self.nxt.path.startswith(prefix):
            old = self._take()
            if old.type != DIR or old.path not in named:
                yield self._reused(old), old
                continue
            se = self._fresh(old.path)
            yield se, old
            yield from self._below(se, old)

    def _fresh(self, path: str) -> ScanEntry | None:
        """What a scan records now for ``path`` (a named folder, or what took its place)."""
        rel = path[len(self.src.name) + 1:]
        abspath = long_path(_abspath(self.src, path))   # (Windows: as a listing's children, \\?\ when long)
        try:
            st = lstat_beneath(self.src.path, rel, abspath)   # (no link followed on its way: scan.py)
        except FileNotFoundError:
            return None
        except OSError as err:
            self.warnings.append(RunWarning(WarningCode.UNREADABLE, abspath,
                                            f"could not be read, skipped ({err.strerror})"))
            return None
        return entry_for(self.src.name, rel, abspath, st, self.excluder, self.warnings)

    def _reused(self, e: Entry) -> ScanEntry:
        """The parent's record of ``e`` as if scanned: the disk is not touched."""
        rel = e.path[self._cut:] if os.sep == "/" else e.path[self._cut:].replace("/", os.sep)
        return ScanEntry(e.path, self._prefix + rel if rel else self.src.path, e.type, e.size, e.mtime_ns,
                         e.mode, e.ino, e.ctime_ns, e.target, e.attrs)


class _SpliceScan(_JournalScan):
    """A journal scan over a proven parent's lines (core/engine/splice.py): the same pairs, except
    that the records it reuses unchanged leave as whole lines (:class:`Splice`), never decoded."""

    def __init__(self, plan: Plan, excluder: Excluder, warnings: list[RunWarning], lines: ParentLines):
        super().__init__(plan, excluder, warnings, ())
        self._lines = lines
        self.nxt = lines.entry()

    def _take(self) -> Entry:
        e = self.nxt
        assert e is not None
        self._lines.advance()
        self.nxt = self._lines.entry()
        return e

    def _reuse(self, path: str) -> Iterator:
        prefix, named = path + "/", self.plan.named
        stops = sorted((sort_key(p), p) for p in named if p.startswith(prefix))   # where a splice ends
        while self.nxt is not None and self.nxt.path.startswith(prefix):
            old = self.nxt
            if old.type != DIR or old.path not in named:
                key = sort_key(old.path)
                while stops and stops[0][0] <= key:
                    stops.pop(0)
                yield self._lines.splice(prefix, stops[0][1] if stops else None)
                self.nxt = self._lines.entry()
                continue
            self._take()
            se = self._fresh(old.path)
            yield se, old
            yield from self._below(se, old)
