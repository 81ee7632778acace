"""Pack files: many small objects in one blob, as restic does, so that a backup of small files
costs one put per 16 MiB instead of one per file (rclone's WebDAV backend manages about 11
staged puts a second; bench/storage_rclone.py).

* ``packs/<2 hex>/<64 hex>``: the encrypted streams of several objects (each byte for byte
  what ``objects/`` would hold for it alone), one after another. The name is the SHA-256
  of the pack's bytes, so reading it back proves it whole.
* ``index/<64 hex>`` (the pack's name): where each object is in it, encrypted in the stream
  format: JSON ``{"format": "plugback-pack-index", "version": 1, "pack": ID, "size": BYTES,
  "objects": [[OBJECT NAME, OFFSET, LENGTH], ...]}``.

Write order: a pack is put and read back, then its index is put and read back (where the
backend stages, the index's bytes go to ``tmp/`` and are read back there while the pack is put,
and are only moved onto its name after the pack's check: ``storage.base.Stages``); the
manifest that names its objects comes after both (core/engine/remote/backup.py). A pack is
written in place (``Unstaged``: not staged in ``tmp/`` and moved), so a cut put may leave it
torn; a pack without an index is what an interrupted run left: nothing names it, and the next
backup (:func:`drop_unindexed`) or prune deletes it.
Every index is read and checked when a set first needs one (names, ranges inside the pack,
the pack's own name); a damaged index is damage, as a damaged manifest is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Iterator

from core.engine import crypto, scratch
from core.engine.manifest import is_hex64
from core.engine.storage import Backend, read_all
from core.engine.storage.base import CHUNK, Staged, UnstagedChunks, can_stage
from core.errors import DamagedSet, NewerFormat

if TYPE_CHECKING:
    from core.engine.remote.rset import RemoteSet

PACKS_DIR = "packs"
INDEX_DIR = "index"
PACK_SIZE = 16 << 20         # bytes of encrypted objects a pack collects before it is stored (was 8 MiB: a pack
                             # and its index cost ~14 WebDAV requests, 0.14 s at rclone's 10 ms pacer)
PACK_BELOW = 1 << 20         # content smaller than this (plaintext bytes) goes into packs
PACK_OBJECTS = 4096          # ... or this many objects (what a pack remembers of each until it is stored)
MAX_PACK_BYTES = 64 << 20    # a reader refuses an index describing a larger pack
MAX_INDEX_BYTES = 16 << 20
MAX_INDEX_OBJECTS = 1 << 17  # a reader refuses an index listing more objects
INDEX_FORMAT = "plugback-pack-index"
INDEX_VERSION = 1
INDEX_READERS = 4            # index gets in flight when a set's indexes are first read
SPOOL_BUFFER = 256 << 10     # a pack spool's write buffer (a write per small object otherwise)
PACKS_IN_FLIGHT = 2          # full packs being stored or waiting to be, at most (spooled: a local file each)
log = logging.getLogger(__name__)


def pack_blob(pack_id: str) -> str:
    return f"{PACKS_DIR}/{pack_id[:2]}/{pack_id}"


def index_blob(pack_id: str) -> str:
    return f"{INDEX_DIR}/{pack_id}"


def encode_index(keys: crypto.SetKeys, pack_id: str, size: int, objects: list[tuple[str, int, int]]) -> bytes:
    doc = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "pack": pack_id, "size": size,
           "objects": [list(o) for o in objects]}
    return crypto.encrypt_bytes(keys, json.dumps(doc, separators=(",", ":")).encode())


def decode_index(keys: crypto.SetKeys, blob: str, raw: bytes) -> tuple[str, int, list[tuple[str, int, int]]]:
    """An index blob's (pack id, pack size, objects), checked; DamagedSet naming ``blob`` otherwise."""
    def bad(reason: str) -> DamagedSet:
        return DamagedSet(what=f"{blob}: {reason}")

    try:
        doc = json.loads(crypto.decrypt_bytes(keys, raw, name=blob))
    except (ValueError, RecursionError):
        raise bad("it is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        raise bad("it is not a pack index")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad("its 'version' is not a version number")
    if version > INDEX_VERSION:
        raise NewerFormat(path=blob, version=version)
    pack, size, objects = doc.get("pack"), doc.get("size"), doc.get("objects")
    if not isinstance(pack, str) or not is_hex64(pack) or blob != index_blob(pack):
        raise bad("it does not describe the pack it is named after")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_PACK_BYTES:
        raise bad("its pack size is not a size")
    if not isinstance(objects, list) or not 0 < len(objects) <= MAX_INDEX_OBJECTS:
        raise bad("it lists no objects, or too many")
    out, end = [], 0
    for o in objects:
        if not (isinstance(o, list) and len(o) == 3 and is_hex64(o[0]) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in o[1:]) and o[1] == end and o[2] > 0):
            raise bad("an object's place in the pack is not valid")
        end = o[1] + o[2]
        out.append((o[0], o[1], o[2]))
    if end != size:
        raise bad("its objects do not fill the pack exactly")
    return pack, size, out


class PackIndex:
    """Where each packed object is: every index of the set in a scratch table (memory flat),
    read once, the first time it is asked. Thread-safe."""

    def __init__(self, rset: "RemoteSet"):
        self._rset = rset
        self._db = None
        self._mutex = threading.Lock()
        self._listed = True     # False: a set made by this process, whose indexes need no reading

    def known_empty(self) -> None:
        """The set was created a moment ago by this process: no index to list or read."""
        self._listed = False

    def _ready(self):
        if self._db is None:
            db = scratch.connect()
            db.execute("CREATE TABLE packed (name BLOB PRIMARY KEY, pack BLOB, offset INTEGER, length INTEGER)")
            db.execute("CREATE TABLE packs (id BLOB PRIMARY KEY, size INTEGER, stored INTEGER)")
            db.execute("BEGIN")
            backend, keys = self._rset.backend, self._rset.keys
            for pack, size, objects in _read_indexes(backend, keys) if self._listed else ():
                _insert(db, pack, size, objects)
            for info in backend.list(PACKS_DIR) if self._listed else ():
                name = info.name.split("/")[-1]
                if is_hex64(name) and info.name == pack_blob(name):
                    db.execute("INSERT INTO packs (id, size, stored) VALUES (?, NULL, ?) "
                               "ON CONFLICT (id) DO UPDATE SET stored = excluded.stored",
                               (bytes.fromhex(name), info.size))
            db.execute("COMMIT")
            self._db = db
        return self._db

    def find(self, name: str) -> tuple[str, int, int] | None:
        """(pack id, offset, length) of a packed object, or None."""
        with self._mutex:
            row = self._ready().execute("SELECT pack, offset, length FROM packed WHERE name = ?",
                                        (bytes.fromhex(name),)).fetchone()
        return (bytes(row[0]).hex(), row[1], row[2]) if row else None

    def add(self, pack: str, size: int, objects: list[tuple[str, int, int]]) -> None:
        with self._mutex:
            db = self._ready()
            db.execute("BEGIN")
            _insert(db, pack, size, objects)
            db.execute("UPDATE packs SET stored = size WHERE id = ?", (bytes.fromhex(pack),))
            db.execute("COMMIT")

    def objects(self) -> Iterator[tuple[str, int]]:
        """(name, length) of every packed object whose pack is stored whole (its listed size)."""
        yield from self._pages("SELECT p.name, p.length FROM packed p JOIN packs k ON k.id = p.pack "
                               "WHERE k.stored = k.size AND p.name > ? ORDER BY p.name LIMIT 512",
                               lambda r: (bytes(r[0]).hex(), r[1]))

    def packs(self) -> Iterator[tuple[str, int | None, int | None]]:
        """(pack id, size its index says or None, size stored or None) of every pack and index."""
        yield from self._pages("SELECT id, size, stored FROM packs WHERE id > ? ORDER BY id LIMIT 512",
                               lambda r: (bytes(r[0]).hex(), r[1], r[2]))

    def size_of(self, pack: str) -> int | None:
        """The pack's size as its index says, or None."""
        with self._mutex:
            row = self._ready().execute("SELECT size FROM packs WHERE id = ?", (bytes.fromhex(pack),)).fetchone()
        return row[0] if row else None

    def names_in(self, pack: str) -> list[str]:
        with self._mutex:
            rows = self._ready().execute("SELECT name FROM packed WHERE pack = ?", (bytes.fromhex(pack),)).fetchall()
        return [bytes(r[0]).hex() for r in rows]

    def _pages(self, sql: str, row) -> Iterator:
        last = b""
        while True:
            with self._mutex:
                page = self._ready().execute(sql, (last,)).fetchall()
            if not page:
                return
            yield from (row(r) for r in page)
            last = page[-1][0]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def drop_unindexed(rset: "RemoteSet") -> int:
    """Delete the packs no index names (what a cut run or an interrupted prune left; a pack is
    written in place, so it may be torn): garbage by the format's rules, and a rolling check
    that reads every pack back would call a torn one damage. Only under the set's lock, once
    the indexes are read (:class:`PackIndex`). How many were deleted."""
    gone = 0
    for pack, size, stored in rset.packs.packs():
        if size is None and stored is not None:
            rset.backend.delete(pack_blob(pack))
            gone += 1
    return gone


def _read_indexes(backend: Backend, keys: crypto.SetKeys) -> Iterator[tuple[str, int, list[tuple[str, int, int]]]]:
    """Every index under ``index/``, read and checked, :data:`INDEX_READERS` at a time (a get
    each: a remote's latency, not the CPU, sets the pace); at most twice that many wait in memory."""
    def read(name: str):
        return decode_index(keys, name, read_all(backend, name, MAX_INDEX_BYTES))

    with ThreadPoolExecutor(max_workers=INDEX_READERS, thread_name_prefix="plugback-index") as pool:
        pending: deque[Future] = deque()
        try:
            for info in backend.list(INDEX_DIR):
                pending.append(pool.submit(read, info.name))
                if len(pending) >= 2 * INDEX_READERS:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for job in pending:
                job.cancel()


def _insert(db, pack: str, size: int, objects: list[tuple[str, int, int]]) -> None:
    pid = bytes.fromhex(pack)
    db.execute("INSERT INTO packs (id, size, stored) VALUES (?, ?, NULL) "
               "ON CONFLICT (id) DO UPDATE SET size = excluded.size", (pid, size))
    # The newest place wins: a repacked object is in its old pack too until that is deleted.
    db.executemany("INSERT OR REPLACE INTO packed VALUES (?, ?, ?, ?)",
                   ((bytes.fromhex(n), pid, off, length) for n, off, length in objects))


def _discard(backend: Backend, staging: Future) -> None:
    """Remove a staged index whose pack failed (best effort: the next run clears tmp/ anyway)."""
    if not staging.cancelled() and staging.exception() is None:
        _discard_staged(backend, staging.result())


def _discard_staged(backend: Backend, staged: Staged) -> None:
    try:
        backend.discard(staged)      # type: ignore[attr-defined]
    except Exception as err:  # noqa: BLE001 - the pack's own failure is the one to report
        log.info("Could not remove the upload of %s from tmp/: %s", staged.name, err)


def _stage_index(backend: Backend, keys: crypto.SetKeys, pack: str, index: bytes) -> Staged:
    """Upload a pack's index to ``tmp/`` and read it back there (``storage.base.Stages``): the
    bytes the name will hold once the pack is checked and the index committed."""
    staged: Staged = backend.stage(index_blob(pack), index)   # type: ignore[attr-defined]
    try:
        raw = bytearray()
        gen = backend.read_staged(staged)   # type: ignore[attr-defined]
        try:
            for chunk in gen:
                raw += chunk
                if len(raw) > len(index):
                    break
        finally:
            gen.close()
        _check_index(keys, pack, index, bytes(raw))
    except BaseException:
        _discard_staged(backend, staged)
        raise
    return staged


def _check_index(keys: crypto.SetKeys, pack: str, index: bytes, raw: bytes) -> None:
    """An index read back: the very bytes encoded (``index``), and a valid index of ``pack``."""
    if raw != index:
        raise DamagedSet(what=f"{index_blob(pack)}: the remote does not hold what was stored (read back different)")
    decode_index(keys, index_blob(pack), raw)


def check_pack(rset: "RemoteSet", pack: str, size: int) -> None:
    """Read a whole pack back as it streams in (nothing held), checked against its name (its
    SHA-256) and ``size``: DamagedSet otherwise."""
    sha, got = hashlib.sha256(), 0
    gen = rset.backend.get(pack_blob(pack))
    try:
        for chunk in gen:
            got += len(chunk)
            if got > size:
                break
            sha.update(chunk)
    finally:
        gen.close()
    if got != size or sha.hexdigest() != pack:
        raise DamagedSet(what=f"{pack_blob(pack)}: its content does not match its name (damaged on the remote)")


def read_pack(rset: "RemoteSet", pack: str, size: int) -> bytes:
    """A whole pack (at most :data:`MAX_PACK_BYTES`), checked against its name (its SHA-256)."""
    data = read_all(rset.backend, pack_blob(pack), min(size, MAX_PACK_BYTES))
    if hashlib.sha256(data).hexdigest() != pack:
        raise DamagedSet(what=f"{pack_blob(pack)}: its content does not match its name (damaged on the remote)")
    return data


class PackCache:
    """The last few whole packs read, so that a restore or a verify of many small files costs a get
    per pack rather than one per file (memory: at most ``keep`` packs). Thread-safe; a pack
    several threads want at once is fetched once."""

    def __init__(self, rset: "RemoteSet", keep: int = 4):
        self._rset = rset
        self._keep = keep
        self._packs: OrderedDict[str, bytes] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self._mutex = threading.Lock()

    def object(self, pack: str, offset: int, length: int) -> bytes:
        """The encrypted stream of the object at ``offset`` in ``pack`` (checked: DamagedSet)."""
        with self._mutex:
            data = self._packs.get(pack)
            if data is not None:
                self._packs.move_to_end(pack)
                return data[offset:offset + length]
            loading = self._loading.setdefault(pack, threading.Lock())
        with loading:
            with self._mutex:
                data = self._packs.get(pack)
            if data is None:
                # Not checked as a whole: each object in it is authenticated when it is decrypted,
                # so one damaged object does not make its neighbours unreadable.
                size = self._rset.packs.size_of(pack) or MAX_PACK_BYTES
                data = read_all(self._rset.backend, pack_blob(pack), min(size, MAX_PACK_BYTES))
                with self._mutex:
                    self._packs[pack] = data
                    while len(self._packs) > self._keep:
                        self._packs.popitem(last=False)
                    self._loading.pop(pack, None)
        return data[offset:offset + length]


class Packer:
    """Collects small objects' encrypted streams into packs. A full pack is stored (put, read
    back, indexed, read back: :meth:`_store`) by a thread of the packer's own while the caller
    goes on collecting; at most :data:`PACKS_IN_FLIGHT` full packs are stored or wait to be (an
    :meth:`add` that fills one more waits for room). A pack's bytes go to a local spool file as
    they come (:class:`_PackSpool`), not to memory: the put streams them from there and the
    read-back hashes what comes back without holding it (:func:`check_pack`). :meth:`flush` sends the
    last one; :meth:`wait` returns once every pack sent is stored, raising the first failure
    (a failure is also raised by the next :meth:`add` or :meth:`flush` that sends a pack).
    Thread-safe; :meth:`close` (or ``with``) ends the thread."""

    def __init__(self, rset: "RemoteSet"):
        self._rset = rset
        self._mutex = threading.Lock()
        self._spool: _PackSpool | None = None
        self._spools: set[_PackSpool] = set()      # every spool not closed yet (close() closes them)
        self._objects: list[tuple[str, int, int]] = []
        self._room = threading.BoundedSemaphore(PACKS_IN_FLIGHT)
        self._pool = ThreadPoolExecutor(max_workers=PACKS_IN_FLIGHT, thread_name_prefix="plugback-pack")
        self._stagers = ThreadPoolExecutor(max_workers=PACKS_IN_FLIGHT, thread_name_prefix="plugback-index")
        self._sent: deque[Future] = deque()
        self.packs_stored = 0

    def add(self, name: str, stream: bytes) -> None:
        with self._mutex:
            spool = self._spool
            if spool is None:
                spool = self._spool = _PackSpool()
                self._spools.add(spool)
            self._objects.append((name, spool.size, len(stream)))
            spool.write(stream)
            if spool.size < PACK_SIZE and len(self._objects) < PACK_OBJECTS:
                return
            _, objects = self._take()
        self._send(spool, objects)

    def flush(self) -> None:
        """Send the pack being collected (if it holds anything) to be stored."""
        with self._mutex:
            spool, objects = self._take()
        if spool is not None:
            self._send(spool, objects)

    def wait(self) -> None:
        """Every pack sent so far is stored (only then may a manifest name its objects)."""
        while True:
            with self._mutex:
                if not self._sent:
                    return
                job = self._sent.popleft()
            job.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._stagers.shutdown(wait=True)
        with self._mutex:
            spools, self._spools = self._spools, set()
            self._spool = None
        for spool in spools:       # (the one being collected, and those of packs cancelled unsent)
            spool.close()

    def __enter__(self) -> "Packer":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def _take(self) -> "tuple[_PackSpool | None, list[tuple[str, int, int]]]":
        spool, objects = self._spool, self._objects
        self._spool, self._objects = None, []
        return spool, objects

    def _send(self, spool: "_PackSpool", objects: list[tuple[str, int, int]]) -> None:
        try:
            self._room.acquire()
        except BaseException:
            self._free(spool)
            raise
        try:
            with self._mutex:
                while self._sent and self._sent[0].done():
                    self._sent.popleft().result()     # a pack that failed fails the run here, not only at wait()
                self._sent.append(self._pool.submit(self._store_then_free, spool, objects))
        except BaseException:
            self._free(spool)
            self._room.release()
            raise

    def _store_then_free(self, spool: "_PackSpool", objects: list[tuple[str, int, int]]) -> None:
        try:
            self._store(spool, objects)
        finally:
            self._free(spool)
            self._room.release()

    def _free(self, spool: "_PackSpool") -> None:
        spool.close()
        with self._mutex:
            self._spools.discard(spool)

    def _store(self, spool: "_PackSpool", objects: list[tuple[str, int, int]]) -> None:
        """Pack, read back, index, read back: only then may a manifest name these objects."""
        backend, keys = self._rset.backend, self._rset.keys
        pack, size = spool.sha.hexdigest(), spool.size
        index = encode_index(keys, pack, size, objects)
        # The index's bytes go to tmp/ and are read back there beside the pack's put where the
        # backend stages (before a new set's lock, too: backup._Gated), so that once the pack is
        # checked only the move names it (a rename: no bytes written, nothing more to read back).
        staging = (self._stagers.submit(_stage_index, backend, keys, pack, index)
                   if can_stage(backend) else None)
        try:
            # In place, not staged (a request-costly move less): nothing trusts a pack before its
            # index, which is named only once the pack read back equal to its name.
            backend.put(pack_blob(pack), UnstagedChunks(spool.chunks))
            check_pack(self._rset, pack, size)
        except BaseException:
            if staging is not None:
                staging.add_done_callback(lambda job: _discard(backend, job))
            raise
        if staging is not None:
            backend.commit(staging.result())      # type: ignore[attr-defined]
        else:
            backend.put(index_blob(pack), index)
            _check_index(keys, pack, index, read_all(backend, index_blob(pack), MAX_INDEX_BYTES))
        self._rset.packs.add(pack, size, objects)
        with self._mutex:
            self.packs_stored += 1


class _PackSpool:
    """A pack being collected: its bytes in a local file (unlinked at once; not held in memory: a
    pack is up to PACK_SIZE and up to PACKS_IN_FLIGHT + 1 are collected or stored at once), their
    SHA-256 (the pack's name) and size as they are written."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="plugback-pack-", buffering=SPOOL_BUFFER)
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.sha.update(data)
        self.size += len(data)

    def chunks(self) -> Iterator[bytes]:
        """The pack's bytes from the start (a retried put reads them again)."""
        self._file.flush()
        self._file.seek(0)
        while block := self._file.read(CHUNK):
            yield block

    def close(self) -> None:
        self._file.close()
