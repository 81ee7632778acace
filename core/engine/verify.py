"""Verification: is every snapshot intact and every byte it names where it should be?

The quick check reads every manifest (their checksums catch truncation and
edits) and checks that each content exists with the right size. ``read_all``
also reads every content once, from the drive rather than the cache, and
compares its SHA-256 (encrypted sets: decrypts and authenticates it).
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from core.engine import scratch
from core.engine.manifest import FILE, Entry
from core.engine.progress import Progress, ProgressCallback, no_progress
from core.engine.repo import BackupSet
from core.errors import DamagedSet, PlugbackError

# (what to call it in a report, the entry, where its bytes are or None if nowhere, or LOOK_UP)
_Check = tuple[str, Entry, "list[Path] | None | object"]
LOOK_UP = object()   # a check's paths: ask BackupSet.content_paths (in the worker)


@dataclass(frozen=True)
class VerifyOptions:
    """``read_all`` reads every content back (a scrub); otherwise sizes are checked."""

    read_all: bool = False
    workers: int = 4
    progress: ProgressCallback = no_progress


@dataclass
class VerifyResult:
    """``damaged``: (what, why) pairs naming the file and the snapshots that hold it."""

    snapshots: int = 0
    contents: int = 0
    bytes_read: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged

    def to_dict(self) -> dict:
        return {"ok": self.ok, "snapshots": self.snapshots, "contents": self.contents,
                "bytes_read": self.bytes_read, "notices": self.notices,
                "damaged": [{"path": p, "reason": r} for p, r in self.damaged]}


def stored_size(bset: BackupSet, entry: Entry) -> int:
    """How many bytes ``entry``'s content takes where it is stored."""
    if bset.encrypted:
        from core.engine import crypto

        return crypto.encrypted_size(entry.size)
    return entry.size


def check_entry(bset: BackupSet, entry: Entry, paths: list[Path] | None = None) -> str | None:
    """Read ``entry``'s content from the drive and compare it with the manifest; a reason or None."""
    paths = paths if paths is not None else bset.content_paths(entry)
    if not paths:
        return "its content is missing from the drive"
    digest = hashlib.sha256()
    size = 0
    try:
        for block in bset.read_content(entry, paths, drop_cache=True):
            digest.update(block)
            size += len(block)
    except DamagedSet as err:
        return str(err)
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    if size != entry.size:
        return f"it has {size} bytes instead of {entry.size}"
    if digest.hexdigest() != entry.sha256:
        return "its content does not match its checksum (changed or damaged on the drive)"
    return None


def _structure_problem(bset: BackupSet, entry: Entry, paths: list[Path] | None) -> str | None:
    if not paths:
        return "its content is missing from the drive"
    try:
        size = sum(os.stat(p).st_size for p in paths)
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    if size != stored_size(bset, entry):
        return f"its stored copy has {size} bytes instead of {stored_size(bset, entry)}"
    return None


def verify(bset: BackupSet, options: VerifyOptions | None = None) -> VerifyResult:
    """Check the opened set ``bset``; every damaged file is named in ``result.damaged``.

    Memory stays flat in the file count (issue #11): manifests stream into a scratch
    table of distinct contents (core/engine/scratch.py), whose checks then stream
    through a bounded pool.
    """
    options = options or VerifyOptions()
    result = VerifyResult()
    if bset.layout.journal.exists():
        result.notices.append("A backup was interrupted: Latest/ may be partly updated. Earlier snapshots "
                              "are intact; the next backup finishes the work.")
    with _Contents() as contents:
        newest = _read_manifests(bset, contents, result)
        # What a person sees in Latest/ must be right too, not only the copy Plugback would use;
        # after an interrupted run Latest/ is between two snapshots until the next run.
        latest = newest if newest is not None and not bset.encrypted and not result.notices else None
        files, size = contents.totals()
        tally = _Tally(files + (latest[1] if latest else 0), size + (latest[2] if latest else 0))
        _run_checks(bset, contents.checks(), options, result, tally, contents.saw_paths)
        if latest:
            _run_checks(bset, _latest_checks(bset, latest[0], contents), options, result, tally)
    return result


class _Contents:
    """The distinct contents of every intact manifest (object name and parts), each with where
    it was first seen and how often, in a scratch table; and which ``Latest/`` copies their
    checks already read."""

    def __init__(self):
        self.db = scratch.connect()
        self.db.execute("CREATE TABLE content (seq INTEGER PRIMARY KEY, name BLOB, parts INTEGER, sha BLOB, "
                        "size INTEGER, obj BLOB, path BLOB, sid TEXT, n INTEGER)")
        self.db.execute("CREATE UNIQUE INDEX content_key ON content (name, parts)")
        self.db.execute("CREATE TABLE seen (paths BLOB PRIMARY KEY) WITHOUT ROWID")

    def add_manifest(self, bset: BackupSet, sid: str, entries: Iterable[Entry]) -> tuple[int, int]:
        """Add one manifest's files (all or none: rolled back if it turns out damaged); (files, bytes)."""
        count = {"files": 0, "bytes": 0}

        def rows():
            for e in entries:
                if e.type == FILE:
                    count["files"] += 1
                    count["bytes"] += e.size
                    yield (bytes.fromhex(bset.object_name(e)), e.parts, bytes.fromhex(e.sha256), e.size,
                           e.obj and bytes.fromhex(e.obj), scratch.path_key(e.path), sid)

        self.db.execute("BEGIN")
        try:
            for batch in scratch.batches(rows()):
                self.db.executemany("INSERT INTO content (name, parts, sha, size, obj, path, sid, n) "
                                    "VALUES (?, ?, ?, ?, ?, ?, ?, 1) "
                                    "ON CONFLICT (name, parts) DO UPDATE SET n = n + 1", batch)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return count["files"], count["bytes"]

    def totals(self) -> tuple[int, int]:
        files, size = self.db.execute("SELECT count(*), coalesce(sum(size), 0) FROM content").fetchone()
        return files, size

    def checks(self) -> Iterator[_Check]:
        """One check per distinct content, in the order first seen (read a page at a time, so
        the table is free for :meth:`saw_paths` between pages)."""
        last = 0
        while True:
            rows = self.db.execute("SELECT seq, parts, sha, size, obj, path, sid, n FROM content WHERE seq > ? "
                                   "ORDER BY seq LIMIT ?", (last, scratch.BATCH)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for _seq, parts, sha, size, obj, path, sid, n in rows:
                e = Entry(scratch.path_of(path), FILE, size=size, sha256=bytes(sha).hex(), parts=parts,
                          obj=obj and bytes(obj).hex())
                yield f"{e.path} ({sid})" + (f" and {n - 1} more" if n > 1 else ""), e, LOOK_UP

    def saw_paths(self, paths: list[Path]) -> None:
        self.db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (_paths_key(paths),))

    def has_seen(self, paths: list[Path]) -> bool:
        return self.db.execute("SELECT 1 FROM seen WHERE paths = ?", (_paths_key(paths),)).fetchone() is not None

    def __enter__(self) -> "_Contents":
        return self

    def __exit__(self, *_) -> None:
        self.db.close()


def _paths_key(paths: list[Path]) -> bytes:
    return scratch.path_key("\0".join(map(str, paths)))


def _read_manifests(bset: BackupSet, contents: _Contents, result: VerifyResult) -> tuple[str, int, int] | None:
    """Stream every manifest into ``contents``; damaged ones go to ``result``. The newest intact
    snapshot (plain sets: what ``Latest/`` shows): (id, files, bytes), or None."""
    newest = None
    for sid in bset.snapshot_ids():
        try:
            with bset.open_manifest(sid) as reader:
                files, size = contents.add_manifest(bset, sid, reader)
        except PlugbackError as err:
            result.damaged.append((f"snapshots/{sid}", str(err)))
            continue
        result.snapshots += 1
        newest = (sid, files, size)
    return newest


def _latest_checks(bset: BackupSet, sid: str, contents: _Contents) -> Iterator[_Check | None]:
    """Each file of snapshot ``sid`` at its place in ``Latest/``; None for a copy a content check
    already read (it still counts in the progress)."""
    with bset.open_manifest(sid) as reader:
        for e in reader:
            if e.type != FILE:
                continue
            paths = [bset.layout.latest_part(e.mirror_path, i) for i in range(1, e.parts + 1)] if e.parts \
                else [bset.layout.latest_file(e.mirror_path)]
            if contents.has_seen(paths):
                yield None
                continue
            yield f"Latest/{e.mirror_path}", e, paths if all(p.exists() for p in paths) else None


@dataclass
class _Tally:
    """Progress over both kinds of checks."""

    files: int
    bytes: int
    files_done: int = 0
    bytes_done: int = 0


def _run_checks(bset: BackupSet, checks: Iterable, options: VerifyOptions, result: VerifyResult,
                tally: _Tally, saw_paths: Callable[[list[Path]], None] | None = None) -> None:
    """Run ``checks`` (label, entry, paths), a bounded number at a time;
    ``saw_paths`` hears of every ``Latest/`` copy a check read."""
    objects = str(bset.layout.objects) + os.sep

    def run(check: _Check | None):
        if check is None:
            return None
        label, e, paths = check
        if paths is LOOK_UP:
            paths = bset.content_paths(e)
        problem = _structure_problem(bset, e, paths)
        if problem is None and options.read_all:
            problem = check_entry(bset, e, paths)
        return label, e, paths, problem

    workers = options.workers if options.read_all else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done in _bounded_map(pool, run, checks, 4 * workers):
            if done is None:
                tally.files_done += 1
                options.progress(Progress("verify", tally.files_done, tally.files, tally.bytes_done,
                                          tally.bytes, ""))
                continue
            label, e, paths, problem = done
            if saw_paths and paths and not str(paths[0]).startswith(objects):
                saw_paths(paths)
            result.contents += 1
            if options.read_all:
                result.bytes_read += e.size
            if problem:
                result.damaged.append((label, problem))
            tally.files_done += 1
            tally.bytes_done += e.size
            options.progress(Progress("verify", tally.files_done, tally.files, tally.bytes_done, tally.bytes,
                                      label))


def _bounded_map(pool: ThreadPoolExecutor, fn, items: Iterable, limit: int) -> Iterator:
    """``pool.map(fn, items)`` with at most ``limit`` items taken ahead (``pool.map`` takes them all)."""
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
