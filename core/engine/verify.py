"""Verification: is every snapshot intact and every byte it names where it should be?

The quick check reads every manifest (their checksums catch truncation and
edits) and checks that each content exists with the right size. ``read_all``
also reads every content once, from the drive rather than the cache, and
compares its SHA-256 (encrypted sets: decrypts and authenticates it).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, cast

from core.engine import rawlines, scratch, verify_latest, verify_merge
from core.engine.chunks import ChunkPaths
from core.engine.fs import long_path
from core.engine.manifest import FILE, Entry
from core.engine.objindex import ObjectIndex
from core.engine.progress import CancelToken, Progress, ProgressCallback, no_progress
from core.engine.repo import BackupSet
from core.engine.trust import TrustRecord
from core.engine.window import batches
from core.errors import Cancelled, DamagedSet, PlugbackError

# (what to call it in a report, the entry, where its bytes are or None if nowhere, or LOOK_UP)
_Check = tuple[str, Entry, "list[Path] | None | object"]
AHEAD = 512          # checks handed to the workers ahead (flat memory; see restore.AHEAD)
BATCH = 32           # checks per hand-off to a worker
LOOK_UP = object()       # a check's paths: ask BackupSet.content_paths (in the worker)
OBJECT_ONLY = object()   # ... only its copy in objects/ (BackupSet.object_paths), if any
IN_LATEST = object()     # ... its copy in Latest/ (plain sets' newest snapshot), if there
_INSERT = "INSERT INTO content (name, parts, sha, size, obj, path, sid, n, last, stored, k)"   # (_Contents)
_UPSERT = ("ON CONFLICT (name, parts, size) DO UPDATE SET n = n + 1, last = max(last, excluded.last), "
           "k = CASE WHEN last = excluded.last THEN k + 1 WHEN last < excluded.last THEN 1 ELSE k END")


@dataclass(frozen=True)
class VerifyOptions:
    """``read_all`` reads every content back (a scrub); otherwise sizes are checked. ``cancel``
    stops it (Cancelled) between manifest batches and between checks."""

    read_all: bool = False
    workers: int = 8   # reads wait on the drive: more threads than cores keep its queue full (restore.IO_WORKERS)
    progress: ProgressCallback = no_progress
    cancel: CancelToken = field(default_factory=CancelToken)
    #: This computer's record of the manifests it wrote (``BackupOptions.cache``; core/engine/trust.py):
    #: the newest snapshot's, when its bytes on the drive are the recorded ones, is not decoded entry by entry.
    cache: Path | None = None


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

        return entry.stored or crypto.encrypted_size(entry.size)   # (stored: a compressed object)
    return entry.size


def check_entry(bset: BackupSet, entry: Entry, paths: list[Path] | None = None) -> str | None:
    """Read ``entry``'s content from the drive and compare it with the manifest; a reason or None."""
    try:
        paths = paths if paths is not None else bset.content_paths(entry)
    except DamagedSet as err:   # a damaged chunk list (format 2)
        return str(err)
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
    except (FileNotFoundError, NotADirectoryError):
        return "its content is missing from the drive"   # (gone since it was looked up, or never looked up)
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
    if isinstance(paths, ChunkPaths):
        return paths.structure_problem()
    try:
        size = sum(os.stat(long_path(p)).st_size for p in paths)
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    if size != stored_size(bset, entry):
        return f"its stored copy has {size} bytes instead of {stored_size(bset, entry)}"
    return None


def verify(bset: BackupSet, options: VerifyOptions | None = None) -> VerifyResult:
    """Check the opened set ``bset``; every damaged file is named in ``result.damaged``.

    Memory stays flat in the file count (issue #11): every manifest streams once into
    a scratch table of distinct contents (core/engine/scratch.py), whose checks then
    stream through a bounded pool; plain sets then check each file of the newest
    snapshot at its place in ``Latest/`` (its manifest read once more, as lines). Snapshots
    with the newest's entry lines are decoded once (core/engine/rawlines.py).
    """
    options = options or VerifyOptions()
    result = _verify(bset, options, gather=True)
    # None: the newest changed on the drive after the merge read it: again, each manifest read for
    # itself (as when it is not recorded)
    return result if result is not None else cast(VerifyResult, _verify(bset, options, gather=False))


def _verify(bset: BackupSet, options: VerifyOptions, gather: bool) -> VerifyResult | None:
    """:func:`verify`; None (nothing reported) when the newest snapshot's rows were gathered by the
    merge (``gather``, _Contents.add_kept) but the ``Latest/`` checks read other bytes for it."""
    result = VerifyResult()
    if bset.layout.journal.exists():
        result.notices.append("A backup was interrupted: Latest/ may be partly updated. Earlier snapshots "
                              "are intact; the next backup finishes the work.")
    # What a person sees in Latest/ must be right too, not only the copy Plugback would use;
    # after an interrupted run Latest/ is between two snapshots until the next run.
    checks_latest = not bset.encrypted and not result.notices
    index = ObjectIndex(bset.layout.objects)
    with _Contents(gather) as contents, verify_latest.started(bset, options) as early:
        trust = TrustRecord(options.cache, bset.set_id) if options.cache is not None and checks_latest else None
        newest = _read_manifests(bset, contents, result, options.cancel, index if checks_latest else None, trust)
        latest = newest if newest is not None and checks_latest else None
        files, size = contents.totals()
        tally = _Tally(files + (latest[2] if latest else 0), size + (latest[3] if latest else 0))
        _run_checks(bset, contents.checks(latest[1] if latest else None, index), options, result, tally, index)
        tally.files_done += contents.skipped[0]
        tally.bytes_done += contents.skipped[1]
        read: dict[str, str] = {}   # the hash of the newest's bytes as the Latest/ checks read them
        if latest and early is not None and early.found.sid == latest[0]:
            early.finish(options, result, tally)
            read = early.found.read
        elif latest and early is not None:
            read = verify_latest.rerun(bset, latest[0], early, options, result, tally).read
        elif latest:
            _run_checks(bset, _latest_checks(bset, latest[0], read), options, result, tally)
        if contents.proof is not None and read.get("all") != contents.proof:
            return None
    return result


class _Contents:
    """The distinct contents of every intact manifest (object name and parts) in a scratch table,
    each with where it was first seen, how often, and the last manifest that holds it."""

    def __init__(self, gather: bool = False):
        self.skipped = [0, 0]
        self.latest_only = [0, 0]   # (files, bytes) of the newest snapshot's given no row (add_manifest)
        self.gather = gather        # the newest's rows may be gathered by the merge (keeper, add_kept)
        self.kept: tuple[int, int, str] | None = None   # then: its (files, bytes, recorded hash), rows in ``kept``
        self.proof: str | None = None   # the newest's recorded hash once add_kept used them
        self.db = scratch.connect()
        self.db.execute("CREATE TABLE content (seq INTEGER PRIMARY KEY, name BLOB, parts INTEGER, sha BLOB, "
                        "size INTEGER, obj BLOB, path BLOB, sid TEXT, n INTEGER, last INTEGER, stored INTEGER, "
                        "k INTEGER)")   # k: how many files of manifest ``last`` hold it (add_holders)
        # One row per (name, parts, size): a manifest that lists a content with another size than
        # another manifest does gets a row (and a check) of its own, so a wrong size is never hidden.
        self.db.execute("CREATE UNIQUE INDEX content_key ON content (name, parts, size)")
        self.db.execute("CREATE TABLE latest_only (name BLOB, parts INTEGER, size INTEGER)")   # (read whole, once)
        self.db.execute("CREATE TABLE kept (name BLOB, parts INTEGER, sha BLOB, size INTEGER, obj BLOB, path BLOB, "
                        "stored INTEGER)")   # the newest's rows, gathered by the merge (keeper)

    def add_manifest(self, bset: BackupSet, sid: str, index: int, entries: Iterable[Entry],
                     cancel: CancelToken | None = None, latest: "_LatestOnly | None" = None) -> tuple[int, int]:
        """Add the files of manifest number ``index`` (all or none: rolled back if it turns out
        damaged, or on ``cancel``); (files, bytes). ``latest``: this manifest's files are the
        newest snapshot's, checked in ``Latest/``; those without a copy in ``objects/`` get no row."""
        files = ((bset.object_name(e), e.parts, e.sha256 or "", e.size, e.obj, e.path, e.stored)
                 for e in entries if e.type == FILE)
        return self.add_files(sid, index, files, cancel, latest)

    def add_files(self, sid: str, index: int, files: Iterable[tuple[str, int, str, int, str | None, str, int]],
                  cancel: CancelToken | None = None, latest: "_LatestOnly | None" = None) -> tuple[int, int]:
        """:meth:`add_manifest` of ``files``: (object name, parts, SHA-256, size, obj, path, stored)."""
        count = {"files": 0, "bytes": 0}
        only = [0, 0]   # (files, bytes) given to ``latest`` instead of a row

        def rows():
            for name, parts, sha, size, obj, path, stored in files:
                if cancel is not None and not count["files"] % 4096:
                    cancel.check()
                count["files"] += 1
                count["bytes"] += size
                if latest is not None and not latest.index.may_hold(name):
                    only[0] += 1
                    only[1] += size
                    if latest.keys:
                        yield None, (bytes.fromhex(name), parts, size)
                    continue
                yield (bytes.fromhex(name), parts, bytes.fromhex(sha), size, obj and bytes.fromhex(obj),
                       scratch.path_key(path), sid, index, stored), None

        self.db.execute("BEGIN")
        try:
            for batch in scratch.batches(rows()):
                self.db.executemany(f"{_INSERT} VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, 1) {_UPSERT}",
                                    [row for row, _ in batch if row is not None])
                if latest is not None and latest.keys:
                    self.db.executemany("INSERT INTO latest_only VALUES (?, ?, ?)", [k for _, k in batch if k is not None])
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        self.latest_only[0] += only[0]
        self.latest_only[1] += only[1]
        return count["files"], count["bytes"]

    def reset(self) -> None:
        """Every row dropped (the manifests are read again, none beside the newest: nothing gathered)."""
        self.db.execute("DELETE FROM content")
        self.db.execute("DELETE FROM latest_only")
        self.db.execute("DELETE FROM kept")
        self.latest_only = [0, 0]
        self.gather, self.kept, self.proof = False, None, None

    def keeper(self):
        """Where verify_merge.Merge.files may put the newest's rows (inside the transaction of the
        older manifest read beside it: rolled back with it), or None when none are wanted."""
        return self._keep if self.gather and self.kept is None else None

    def _keep(self, rows: list[verify_merge.Row]) -> None:
        self.db.executemany("INSERT INTO kept VALUES (?, ?, ?, ?, ?, ?, ?)", [
            (bytes.fromhex(name), parts, bytes.fromhex(sha), size, obj and bytes.fromhex(obj), scratch.path_key(path),
             stored) for name, parts, sha, size, obj, path, stored in rows])

    def add_kept(self, sid: str, index: int) -> tuple[int, int]:
        """The newest snapshot ``sid`` (number ``index``) added from what the merge gathered (:attr:`kept`)
        instead of read again: its rows as ``add_files`` with ``held`` adds them, the rest counted; (files, bytes)."""
        assert self.kept is not None
        files, size, self.proof = self.kept
        self.db.execute("BEGIN")
        try:
            self.db.execute(f"{_INSERT} SELECT name, parts, sha, size, obj, path, ?, 1, ?, stored, 1 FROM kept "
                            f"WHERE true ORDER BY rowid {_UPSERT}", (sid, index))
            held = self.db.execute("SELECT count(*), coalesce(sum(size), 0) FROM kept").fetchone()
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        self.latest_only[0] += files - held[0]
        self.latest_only[1] += size - held[1]
        return files, size

    def held_by_latest(self, last: int) -> None:
        """Contents of older manifests that the newest snapshot holds too, though it added no row
        for them (``latest`` of :meth:`add_manifest`): held last by manifest ``last``, as if the
        newest's rows had been added (then they are checked in ``Latest/`` only)."""
        if sqlite3.sqlite_version_info >= (3, 33):   # UPDATE FROM: one look-up in content_key per key (~0.2 s
            self.db.execute("UPDATE content SET last = max(content.last, ?) FROM latest_only AS k "   # less at 100 k)
                            "WHERE content.name = k.name AND content.parts = k.parts AND content.size = k.size", (last,))
        else:
            self.db.execute("UPDATE content SET last = max(last, ?) WHERE (name, parts, size) IN "
                            "(SELECT name, parts, size FROM latest_only)", (last,))

    def add_holders(self, index: int, more: int, last: int) -> None:
        """``more`` manifests, the last of them number ``last``, hold exactly the files of manifest
        number ``index``, just added (rawlines.same_as_newest, rawlines.Repeats): counted without
        decoding them, each as many times as that manifest holds it (as decoding them would)."""
        self.db.execute("UPDATE content SET n = n + ? * k, last = ? WHERE last = ?", (more, last, index))

    def totals(self) -> tuple[int, int]:
        files, size = self.db.execute("SELECT count(*), coalesce(sum(size), 0) FROM content").fetchone()
        return files + self.latest_only[0], size + self.latest_only[1]

    def checks(self, newest: int | None, index: ObjectIndex) -> Iterator[_Check]:
        """One check per distinct content, in the order first seen (a page of rows at a time).

        Content the ``newest`` manifest holds (given when ``Latest/`` is checked file by
        file) is checked here only where it has a copy in ``objects/``: its place in
        ``Latest/`` is the newest manifest's, which the Latest/ checks read. Where the
        listing of ``objects/`` (``index``) shows none, it is only counted in
        :attr:`skipped` (files, bytes): most of the newest snapshot's files, for which
        nothing is built.
        """
        last = 0
        self.skipped = list(self.latest_only) if newest is not None else [0, 0]
        while True:
            rows = self.db.execute("SELECT seq, name, parts, sha, size, obj, path, sid, n, last, stored FROM content "
                                   "WHERE seq > ? ORDER BY seq LIMIT ?", (last, AHEAD)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for _seq, name, parts, sha, size, obj, path, sid, n, holder, stored in rows:
                if holder == newest and not index.may_hold(bytes(name).hex()):
                    self.skipped[0] += 1
                    self.skipped[1] += size
                    continue
                e = Entry(scratch.path_of(path), FILE, size=size, sha256=bytes(sha).hex(), parts=parts,
                          obj=obj and bytes(obj).hex(), stored=stored)
                label = f"{e.path} ({sid})" + (f" and {n - 1} more" if n > 1 else "")
                yield label, e, OBJECT_ONLY if holder == newest else LOOK_UP

    def __enter__(self) -> "_Contents":
        return self

    def __exit__(self, *_) -> None:
        self.db.close()


@dataclass(frozen=True)
class _LatestOnly:
    """How the newest snapshot's files without a copy in ``objects/`` (as ``index`` lists it) are
    added: counted only, their (name, parts) kept too when other manifests are decoded (``keys``)."""

    index: ObjectIndex
    keys: bool


def _read_manifests(bset: BackupSet, contents: _Contents, result: VerifyResult, cancel: CancelToken | None = None,
                    objects: ObjectIndex | None = None, trust: TrustRecord | None = None) -> tuple | None:
    """Stream every manifest into ``contents``; damaged ones go to ``result``. The newest intact
    snapshot (plain sets: what ``Latest/`` shows): (id, its number, files, bytes), or None.

    Snapshots whose entry lines are the newest's, byte for byte (no-change backups), are
    decoded once, at the first of them; the others count as holders of the same contents
    (core/engine/rawlines.py). Should that decoding find damage, each is decoded as usual.
    So are older snapshots whose entry lines are those of the manifest added just before them
    (rawlines.Repeats). With ``objects`` (a plain set whose ``Latest/`` is checked), the
    newest's files that ``objects/`` does not hold get no row (``_Contents.add_manifest``); with
    ``trust`` too, a manifest's lines (the newest's, or any other this computer recorded
    writing) are not decoded when they are proven this computer's (_add_proven), and an older
    one proven so is read beside the newest's lines, which make most of its rows needless
    (core/engine/verify_merge.py: started over without that unless the newest is then read
    proven as the newest intact snapshot)."""
    ids = bset.snapshot_ids()
    seen: dict[str, str] = {}   # the newest's hashes, as read
    same = rawlines.same_as_newest(bset, ids, cancel, seen)
    merge = None
    expected = trust.hash_of(ids[-1]) if trust is not None else None
    # (unread: no older snapshot may hold the newest's lines, so they were not read for that; the
    # merge proves them at the end of each older manifest, as it does anyway: Merge.broken)
    # the newest read (to group it) and found the recorded bytes, or not read at all (no group)
    newest_ok = seen["all"] == expected if "all" in seen else "unread" in seen
    if expected is not None and newest_ok:
        if "all" in seen:
            seen["proven"] = "1"   # its group's lines are this computer's too (_add_proven)
        if objects is not None:
            merge = verify_merge.Merge(bset, ids[-1], expected, objects.may_hold)
    damaged, snapshots = len(result.damaged), result.snapshots
    newest, confirmed = _read_each(bset, ids, same, seen, contents, result, cancel, objects, trust, merge)
    if merge is not None and merge.used and not (confirmed and newest is not None and newest[0] == ids[-1]):
        del result.damaged[damaged:]   # the newest read beside the others is not the one Latest/ is checked
        result.snapshots = snapshots   # against: start over, every manifest's rows added
        contents.reset()
        newest, _ = _read_each(bset, ids, same, seen, contents, result, cancel, objects, trust, None)
    if newest is not None and contents.latest_only[0]:
        contents.held_by_latest(newest[1])
    return newest


def _read_each(bset: BackupSet, ids: list[str], same: set[int], seen: dict[str, str], contents: _Contents,
               result: VerifyResult, cancel: CancelToken | None, objects: ObjectIndex | None,
               trust: TrustRecord | None, merge: verify_merge.Merge | None) -> tuple[tuple | None, bool]:
    """_read_manifests' loop: (the newest intact snapshot, whether the newest's lines were read proven)."""
    newest, counted, confirmed = None, None, False
    repeats = rawlines.Repeats(bset)
    for index, sid in enumerate(ids):
        if counted is not None and index in same:
            result.snapshots += 1
            newest = (sid, index, *counted)
            continue
        if index not in same and index < len(ids) - 1 and (last := repeats.same_as_last(sid)) is not None:
            contents.add_holders(last[0], 1, index)   # a no-change backup of an older snapshot
            result.snapshots += 1
            newest = (sid, index, *last[1:])
            repeats.added(index, sid, newest[2:])
            continue
        # The newest's own lines (it, or the first of its group): fewer rows. Their keys are kept for
        # the older manifests' rows when some of those may be of contents only Latest/ holds.
        own = index in same or index == len(ids) - 1
        keys = len(ids) > max(len(same), 1) and (merge is None or merge.orphans or index < len(ids) - 1)
        latest = _LatestOnly(objects, keys) if objects is not None and own else None
        lines = hashlib.sha256() if index < len(ids) - 2 and index not in same else None   # (for rawlines.Repeats)
        added: tuple[int, int, bool] | None
        try:
            if index == len(ids) - 1 and contents.kept and latest and not latest.keys and merge \
                    and not merge.broken and merge.same_file():   # (else read for itself, as before)
                added = (*contents.add_kept(sid, index), False)   # gathered beside an older manifest, proven
            else:
                added = _add_proven(bset, contents, sid, index, cancel, latest, trust,
                                    seen["lines"] if "proven" in seen and index in same else None,
                                    None if own or (merge is not None and merge.broken) else merge, lines)
            files, size = added[:2] if added else _add_decoded(bset, contents, sid, index, cancel, latest)
        except Cancelled:
            raise
        except PlugbackError as err:
            result.damaged.append((f"snapshots/{sid}", str(err)))
            if index in same:
                same = set()   # its copies hold the same damage: each is decoded, and named
            continue
        if merge is not None and not own and not (added and added[2]):
            merge.orphans = True   # its rows were all added: any may be of a content only Latest/ holds
        confirmed = bool(added) if own else confirmed
        if added and added[2] and lines is not None:
            repeats.digests[sid] = lines.hexdigest()   # its lines were read beside the newest's: not again
        if index in same:
            contents.add_holders(index, len(same) - 1, max(same))
            counted = files, size
        repeats.added(index, sid, (files, size), whole=latest is None and counted is None)
        result.snapshots += 1
        newest = (sid, index, files, size)
    return newest, confirmed


def _add_proven(bset: BackupSet, contents: _Contents, sid: str, index: int, cancel: CancelToken | None,
                latest: _LatestOnly | None, trust: TrustRecord | None, lines: str | None,
                merge: verify_merge.Merge | None = None, digest=None) -> tuple[int, int, bool] | None:
    """Manifest ``sid`` added from its lines without decoding them (rawlines.proven_files), when this
    computer recorded writing it and the drive holds those very bytes, or (``lines``: it is in the
    newest's group and the newest was so proven) its lines hash as the newest's; (files, bytes,
    whether it was read beside the newest's lines: ``merge``, verify_merge.py), or None when not
    (nothing added: the caller decodes it in full, which names any damage). ``digest`` (a hashlib
    object) gets its entry lines when it is read beside the newest's."""
    expected = trust.hash_of(sid) if trust is not None else None
    if expected is None and lines is None:
        return None
    if merge is not None and expected is not None:
        keep = contents.keeper()   # the newest's own rows gathered as it is read beside this one
        try:
            with bset.open_manifest(sid) as reader:
                added = contents.add_files(sid, index, merge.files(reader, expected, cancel, digest, keep), cancel,
                                           latest)
            if keep is not None and merge.totals is not None:
                contents.kept = (*merge.totals, merge.expected)
            return (*added, True)
        except Cancelled:
            raise
        except Exception:  # noqa: BLE001 - rolled back; the newest's bytes not the recorded ones: this one alone
            if not merge.broken:
                return None
    try:
        with bset.open_manifest(sid) as reader:
            if latest is not None and not latest.keys:   # the newest's files only Latest/ holds: counted only
                others = [0, 0]
                files, size = contents.add_files(sid, index, rawlines.proven_files(
                    reader, expected, lines, latest.index.may_hold, others), cancel)
                contents.latest_only[0] += others[0]
                contents.latest_only[1] += others[1]
                return files + others[0], size + others[1], False
            return (*contents.add_files(sid, index, rawlines.proven_files(reader, expected, lines), cancel, latest),
                    False)
    except Cancelled:
        raise
    except Exception:  # noqa: BLE001 - not proven, or odd in any way: rolled back, then decoded in full
        return None


def _add_decoded(bset: BackupSet, contents: _Contents, sid: str, index: int, cancel: CancelToken | None,
                 latest: _LatestOnly | None) -> tuple[int, int]:
    """Manifest ``sid`` decoded in full (every entry checked) into ``contents``; (files, bytes)."""
    with bset.open_manifest(sid) as reader:
        return contents.add_manifest(bset, sid, index, reader, cancel, latest)


def _latest_checks(bset: BackupSet, sid: str, read: dict[str, str] | None = None) -> Iterator[_Check]:
    """Each file of snapshot ``sid`` (the newest intact one) at its place in ``Latest/``; ``read`` then
    gets the hash of its bytes as read (``all``, as rawlines.lines_digest names it)."""
    with bset.open_manifest(sid) as reader:
        for e in reader:
            if e.type != FILE:
                continue
            yield f"Latest/{e.mirror_path}", e, IN_LATEST   # (paths made and looked up in the worker)
        if read is not None:
            read["all"] = reader.digest


def _latest_paths(bset: BackupSet, e: Entry) -> list[Path] | None:
    """``e``'s copy (or parts) in ``Latest/``, or None when one is missing."""
    paths = [bset.layout.latest_part(e.mirror_path, i) for i in range(1, e.parts + 1)] if e.parts \
        else [bset.layout.latest_file(e.mirror_path)]
    return paths if all(os.path.exists(long_path(p)) for p in paths) else None


@dataclass
class _Tally:
    """Progress over both kinds of checks."""

    files: int
    bytes: int
    files_done: int = 0
    bytes_done: int = 0


def _run_checks(bset: BackupSet, checks: Iterable[_Check], options: VerifyOptions, result: VerifyResult,
                tally: _Tally, index: ObjectIndex | None = None) -> None:
    """Run ``checks`` (label, entry, paths), a bounded number at a time (``index``: what
    ``objects/`` holds, as listed)."""
    index = index or ObjectIndex(bset.layout.objects)

    def run(check: _Check):
        label, e, paths = check
        try:
            if paths is OBJECT_ONLY:
                paths = bset.object_paths(e) if index.may_hold(bset.object_name(e)) else None
                if not paths:
                    return label, e, None   # in Latest/ only: the Latest/ checks read it
            elif paths is LOOK_UP:
                paths = bset.content_paths(e)
            elif paths is IN_LATEST and options.read_all and not e.parts:
                # Read at once: the read finds a missing file and the size (no look-up before).
                return label, e, check_entry(bset, e, [bset.layout.latest_file(e.mirror_path)]) or ""
            elif paths is IN_LATEST:
                paths = _latest_paths(bset, e)
        except DamagedSet as err:   # a damaged chunk list (format 2)
            return label, e, str(err)
        found = cast("list[Path] | None", paths)   # the sentinels are resolved above
        problem = _structure_problem(bset, e, found)
        if problem is None and options.read_all:
            problem = check_entry(bset, e, found)
        return label, e, problem or ""

    workers = options.workers if options.read_all else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for label, e, problem in _bounded_map(pool, run, _without_absent(bset, checks, index, tally), AHEAD):
            options.cancel.check()
            tally.files_done += 1
            tally.bytes_done += e.size
            options.progress(Progress("verify", tally.files_done, tally.files, tally.bytes_done, tally.bytes,
                                      label))
            if problem is None:
                continue   # not checked here
            result.contents += 1
            if options.read_all:
                result.bytes_read += e.size
            if problem:
                result.damaged.append((label, problem))


def _without_absent(bset: BackupSet, checks: Iterable[_Check], index: ObjectIndex, tally: _Tally) -> Iterator[_Check]:
    """``checks`` less those of a copy in ``objects/`` that the listing of ``objects/`` shows is not
    there (counted as done): nothing to hand to a thread (most of the newest snapshot's files)."""
    for check in checks:
        if check[2] is OBJECT_ONLY and not index.may_hold(bset.object_name(check[1])):
            tally.files_done += 1
            tally.bytes_done += check[1].size
            continue
        yield check


def _bounded_map(pool: ThreadPoolExecutor, fn, items: Iterable, limit: int) -> Iterator:
    """``pool.map(fn, items)`` with at most ``limit`` items taken ahead (``pool.map`` takes them all),
    handed to the workers :data:`BATCH` at a time (a hand-off per small file, with its future and
    GIL switch, cost more than reading the file). One worker: in this thread."""
    if pool._max_workers == 1:
        yield from map(fn, items)
        return
    pending: deque[Future] = deque()
    try:
        for batch in batches(items, BATCH):
            pending.append(pool.submit(_run_batch, fn, batch))
            if len(pending) * BATCH >= limit:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()


def _run_batch(fn, batch: list) -> list:
    return [fn(item) for item in batch]


