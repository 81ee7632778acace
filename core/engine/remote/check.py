"""Checking and thinning a remote set: ``verify`` and ``forget`` / prune.

Both stream: the listing of ``objects/`` and every manifest go through a scratch
table on this computer's disk (core/engine/scratch.py), so memory stays flat in the
number of files and snapshots, as for local sets.

* ``verify`` checks that every content a readable snapshot names is on the remote
  with the size its encrypted copy must have; with ``read_all`` it downloads and
  decrypts each one and checks its SHA-256 and keyed name (core/engine/verify.py's
  ``check_entry``, the same check as for a local set).
* ``forget`` deletes the manifests of the snapshots the policy drops, then (prune)
  the objects no remaining manifest names. The manifests go first: a run cut in
  between leaves objects nobody names, which the next prune deletes. Every manifest
  must read to its checked end before anything is deleted: a damaged or unreadable
  one stops the prune, since it cannot say which objects it still needs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

from core.engine import scratch
from core.engine.manifest import FILE, Entry
from core.engine.progress import Clock, Progress
from core.engine.remote.packs import Packer, index_blob, pack_blob, read_pack
from core.engine.remote.rset import RemoteSet, manifest_blob, object_blob
from core.engine.retention import ForgetResult, RetentionPolicy, choose
from core.engine.storage.lock import RemoteLock
from core.engine.verify import VerifyOptions, VerifyResult, check_entry, stored_size
from core.engine.window import batches
from core.errors import Cancelled, PlugbackError, UsageError

AHEAD = 64     # contents handed to the read workers at a time


def verify(rset: RemoteSet, options: VerifyOptions | None = None) -> VerifyResult:
    """Check the remote set; every damaged or missing content is named in ``result.damaged``."""
    options = options or VerifyOptions()
    result = VerifyResult()
    with closing(scratch.connect()) as db:
        db.execute("CREATE TABLE stored (name BLOB PRIMARY KEY, size INTEGER) WITHOUT ROWID")
        db.execute("CREATE TABLE content (name BLOB PRIMARY KEY, sha BLOB, size INTEGER, label TEXT, "
                   "stored INTEGER) WITHOUT ROWID")
        db.execute("BEGIN")
        rows = ((bytes.fromhex(n), size) for n, size in rset.object_names())
        for batch in scratch.batches(rows):
            db.executemany("INSERT OR IGNORE INTO stored VALUES (?, ?)", batch)
        for sid in rset.snapshot_ids():
            db.execute("SAVEPOINT m")
            try:
                _add_manifest(db, rset, sid, options)
            except Cancelled:
                raise
            except PlugbackError as err:
                db.execute("ROLLBACK TO m")
                result.damaged.append((f"snapshots/{sid}", str(err)))
                continue
            finally:
                db.execute("RELEASE m")
            result.snapshots += 1
        db.execute("COMMIT")
        _check_contents(db, rset, options, result)
    return result


def _add_manifest(db, rset: RemoteSet, sid: str, options: VerifyOptions) -> None:
    with rset.open_manifest(sid) as reader:
        rows = ((bytes.fromhex(rset.object_name(e)), bytes.fromhex(e.sha256 or ""), e.size, f"{e.path} ({sid})",
                 e.stored) for e in reader if e.type == FILE)
        for batch in scratch.batches(rows):
            options.cancel.check()
            db.executemany("INSERT OR IGNORE INTO content VALUES (?, ?, ?, ?, ?)", batch)


def _check_contents(db, rset: RemoteSet, options: VerifyOptions, result: VerifyResult) -> None:
    total_files, total_bytes = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM content").fetchone()
    done = [0, 0]
    rows = db.execute("SELECT c.name, c.sha, c.size, c.label, c.stored, s.size FROM content c "
                      "LEFT JOIN stored s ON s.name = c.name")

    def check(row) -> tuple[str, str, int]:
        name, sha, size, label, recorded, stored = row
        e = Entry(label, FILE, size=size, sha256=bytes(sha).hex(), obj=bytes(name).hex(), stored=recorded)
        if stored is None:
            return label, f"its content ({object_blob(e.obj or '')}) is missing from the remote", size
        if stored != stored_size(rset, e):   # type: ignore[arg-type]  # RemoteSet reads like a BackupSet
            return label, f"its stored copy has {stored} bytes instead of {stored_size(rset, e)}", size  # type: ignore[arg-type]
        if options.read_all:
            return label, check_entry(rset, e) or "", size   # type: ignore[arg-type]
        return label, "", size

    workers = options.workers if options.read_all else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for batch in batches(iter(rows.fetchone, None), AHEAD):
            for label, problem, size in pool.map(check, batch):
                options.cancel.check()
                done[0] += 1
                done[1] += size
                result.contents += 1
                result.bytes_read += size if options.read_all else 0
                if problem:
                    result.damaged.append((label, problem))
            options.progress(Progress("verify", done[0], total_files, done[1], total_bytes, ""))


def forget(rset: RemoteSet, policy: RetentionPolicy, *, prune: bool = True, dry_run: bool = False,
           clock: Clock | None = None) -> ForgetResult:
    """Forget the snapshots ``policy`` does not keep; with ``prune`` delete the objects nobody names."""
    if policy.is_empty():
        raise UsageError("Say what to keep, e.g. --keep-last 10 or --keep-daily 7 --keep-weekly 8.")
    clock = clock or Clock()
    with RemoteLock(rset.backend, clock, purpose="forget"):
        keep, drop = choose(rset.snapshot_ids(), policy, clock.now())
        result = ForgetResult(keep, drop)
        if dry_run:
            return result
        for sid in drop:
            rset.backend.delete(manifest_blob(sid))
        rset.forget_cached()
        if prune:
            try:
                result.objects_removed, result.bytes_freed = prune_objects(rset)
            finally:
                rset.packs.close()   # read again when next needed: packs were deleted and made
        return result


def prune_objects(rset: RemoteSet) -> tuple[int, int]:
    """Delete the objects no snapshot names (standalone ones; packs: :func:`_prune_packs`);
    (objects, bytes). Every manifest must read to its checked end first. The caller holds the
    set's lock."""
    with closing(scratch.connect()) as db:
        db.execute("CREATE TABLE unused (name BLOB PRIMARY KEY, size INTEGER) WITHOUT ROWID")
        db.execute("BEGIN")   # one transaction: nothing here needs to survive a crash
        rows = ((bytes.fromhex(n), size) for n, size in rset.object_names())
        for batch in scratch.batches(rows):
            db.executemany("INSERT OR IGNORE INTO unused VALUES (?, ?)", batch)
        for sid in rset.snapshot_ids():
            try:
                with rset.open_manifest(sid) as reader:
                    refs = ((bytes.fromhex(rset.object_name(e)),) for e in reader if e.type == FILE)
                    for batch in scratch.batches(refs):
                        db.executemany("DELETE FROM unused WHERE name = ?", batch)
            except PlugbackError as err:
                raise PlugbackError(f"Cannot prune: snapshot {sid} could not be read ({err}); pruning could "
                                    "delete content it still needs. Run 'plugback verify SET' first.") from None
        db.execute("COMMIT")
        removed, freed = 0, 0
        for name, size in _rows(db):
            hexname = bytes(name).hex()
            if rset.packs.find(hexname) is None:
                rset.backend.delete(object_blob(hexname))
                removed, freed = removed + 1, freed + size
        r, f = _prune_packs(rset, lambda n: db.execute("SELECT size FROM unused WHERE name = ?",
                                                       (bytes.fromhex(n),)).fetchone())
    return removed + r, freed + f


def _prune_packs(rset: RemoteSet, unused) -> tuple[int, int]:
    """Packs none of whose objects is needed are deleted (their index first: a pack without one
    is garbage, an index without its pack is damage). A pack a fifth or more unused is repacked:
    its needed objects go into new packs, stored and indexed, before its index and then it are
    deleted, so every object has a place at every moment. (objects, bytes) freed."""
    removed = freed = 0
    repacked: list[str] = []
    with Packer(rset) as packer:
        for pack, size, stored in rset.packs.packs():   # (paged by id: the deletes do not disturb it)
            names = rset.packs.names_in(pack)
            gone = [(n, row[0]) for n in names if (row := unused(n))]
            if len(gone) == len(names):
                _delete_pack(rset, pack, size is not None)
                removed, freed = removed + len(names), freed + (stored or 0)
            elif size and sum(g[1] for g in gone) * 5 >= size:
                data = read_pack(rset, pack, size)
                for n in names:
                    found = rset.packs.find(n)
                    if found and found[0] == pack and not unused(n):
                        packer.add(n, data[found[1]:found[1] + found[2]])
                repacked.append(pack)
                removed, freed = removed + len(gone), freed + sum(g[1] for g in gone)
        packer.flush()
        packer.wait()    # the needed objects have their new places: now the old packs may go
    for pack in repacked:
        _delete_pack(rset, pack, True)
    return removed, freed


def _delete_pack(rset: RemoteSet, pack: str, indexed: bool) -> None:
    if indexed:
        rset.backend.delete(index_blob(pack))   # first: the pack is garbage from here on
    rset.backend.delete(pack_blob(pack))


def _rows(db):
    """The unused objects, a page at a time (no cursor stays open while the remote is asked)."""
    last = b""
    while True:
        page = db.execute("SELECT name, size FROM unused WHERE name > ? ORDER BY name LIMIT 512", (last,)).fetchall()
        if not page:
            return
        yield from page
        last = page[-1][0]
