"""A remote set: an encrypted backup set on a :class:`core.engine.storage.Backend` (issue #13).

The same blobs as a local encrypted set, by the same names (docs/format.md, "Remote
sets"): ``plugback.json`` (format, version, set id, creation time and the
``encryption`` member only), ``snapshots/<id>.json.gz`` (the encrypted manifest),
``objects/<2 hex>/<64 hex>`` (encrypted content under its keyed name), ``locks/``
(:class:`core.engine.storage.lock.RemoteLock`), and, for small content, ``packs/`` and
``index/`` (:mod:`core.engine.remote.packs`). There is no ``Latest/``, no journal and
no lock file: the storage has neither renames we could rely on nor pids.

Read order is the reverse of the write order: a snapshot exists once its manifest
blob is there, and every object it names was written and read back before it.
Everything read is untrusted: ``plugback.json`` goes through the local sets'
decoder, manifests through the manifest reader behind the decrypting reader, and
content through the decrypting reader with its expected keyed name.
"""

from __future__ import annotations

import io
import json
import os
import threading
import uuid
from concurrent.futures import Future, wait
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterable, Iterator, cast

from core.engine import crypto
from core.engine import manifest as mf
from core.engine import manifest_io as mio
from core.engine.layout import MANIFEST_SUFFIX, OBJECTS_DIR, SET_FILE, SET_FORMAT, SNAPSHOTS_DIR
from core.engine.remote.packs import PackCache, PackIndex, pack_blob
from core.engine.repo import (
    MAX_META_BYTES,
    SnapshotInfo,
    Unlocker,
    _no_unlocker,
    decode_meta,
    resolve_snapshot_id,
    snapshot_infos,
)
from core.engine.storage import Backend, read_all
from core.engine.storage.lock import FOLDER as LOCKS_DIR
from core.errors import (
    BlobNotFound,
    DamagedSet,
    ManifestDamaged,
    NotASet,
    SnapshotNotFound,
    UsageError,
)

REMOTE_SET_VERSION = 1      # encrypted sets are format 1 (docs/format.md)


class _BlobReader:
    """A blob as a readable stream (``read(n)``), for the decrypting reader; a blob longer than
    ``limit`` is refused as damage."""

    def __init__(self, backend: Backend, name: str, limit: int | None = None):
        self._gen = backend.get(name)
        self._buf = bytearray()
        self._eof = False
        self._limit = limit
        self._total = 0
        self.name = name

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._buf) < n):
            chunk = next(self._gen, None)
            if chunk is None:
                self._eof = True
                break
            self._total += len(chunk)
            if self._limit is not None and self._total > self._limit:
                raise ManifestDamaged(path=self.name, reason=f"it is larger than {self._limit} bytes")
            self._buf += chunk
        if n < 0 or n >= len(self._buf):
            out, self._buf = bytes(self._buf), bytearray()
        else:
            out = bytes(self._buf[:n])
            del self._buf[:n]
        return out

    def close(self) -> None:
        self._gen.close()


class Collect:
    """A sink that hands on what was written to it since the last ``take()``."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts = []
        return out


class SizedBytes(io.BytesIO):
    """Bytes as a readable stream that says its ``size``: the decrypting reader then sizes its
    buffers to a small object instead of two whole 1 MiB records (zeroed memory for every
    small object: the largest cost of checking one, bench/remote_set.py)."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.size = len(data)


def decrypt_small(keys: crypto.SetKeys, stream: bytes, *, name: str, expected_name: str | None = None,
                  max_size: int | None = None) -> bytes:
    """The plaintext of one small encrypted stream held in memory (a packed object, an index),
    checked as :func:`core.engine.crypto.decrypt_bytes` checks it."""
    return crypto.DecryptingReader(SizedBytes(stream), keys, name=name, expected_name=expected_name,
                                   max_size=max_size).read()


def encrypted_chunks(keys: crypto.SetKeys, plain: Iterable[bytes]) -> Iterator[bytes]:
    """``plain`` encrypted in the stream format, as chunks (crypto.py's writer does the work)."""
    sink = Collect()
    enc = crypto.EncryptingWriter(sink, keys)
    for block in plain:
        enc.write(block)
        out = sink.take()
        if out:
            yield out
    enc.close()
    yield sink.take()


def snapshot_of_blob(name: str) -> str | None:
    """The snapshot id of a listed ``snapshots/<id>.json.gz`` blob, or None (anything else there)."""
    folder, _, base = name.partition("/")
    sid = base[:-len(MANIFEST_SUFFIX)] if base.endswith(MANIFEST_SUFFIX) else ""
    return sid if folder == SNAPSHOTS_DIR and mf.is_snapshot_id(sid) else None


def listed_snapshot_ids(backend: Backend) -> list[str]:
    """The snapshot ids under ``snapshots/``, oldest first: names only, no key needed (one listing)."""
    return sorted(sid for sid in (snapshot_of_blob(i.name) for i in backend.list(SNAPSHOTS_DIR)) if sid)


def manifest_blob(snapshot_id: str) -> str:
    return f"{SNAPSHOTS_DIR}/{snapshot_id}{MANIFEST_SUFFIX}"


def object_blob(name: str) -> str:
    return f"{OBJECTS_DIR}/{name[:2]}/{name}"


def object_of_blob(blob: str) -> str | None:
    """The object name a listed blob under ``objects/`` holds, or None for anything else."""
    parts = blob.split("/")
    if len(parts) == 3 and parts[0] == OBJECTS_DIR and mf.is_hex64(parts[2]) and parts[1] == parts[2][:2]:
        return parts[2]
    return None


class RemoteSet:
    """An opened remote set (:meth:`open` / :meth:`create`). Quacks like :class:`core.engine.repo.BackupSet`
    where the readers need it (snapshots, manifests, content), so restore reuses the local code."""

    encrypted = True

    def __init__(self, backend: Backend, meta: dict, keys: crypto.SetKeys | None):
        self.backend = backend
        self.meta = meta
        self._keys = keys
        # Set by open_started: the unlock still to run (the passphrase's scrypt, maybe a prompt).
        self._unlock: Callable[[], crypto.SetKeys] | None = None
        self.root = backend.where     # for messages: rclone:REMOTE:PATH
        self._ids: list[str] | None = None
        self.packs = PackIndex(self)
        self.pack_cache = PackCache(self)
        # Set by create_started: plugback.json is being written (done: the set exists).
        self.created: Future | None = None

    @staticmethod
    def exists(backend: Backend) -> bool:
        try:
            backend.stat(SET_FILE)
        except BlobNotFound:
            return False
        return True

    @classmethod
    def open(cls, backend: Backend, unlock: Unlocker | None = None) -> "RemoteSet":
        """Open the set; NotASet (nothing there) / NewerFormat / WrongPassphrase / damage on failure."""
        meta = _read_meta(backend)
        keys = (unlock or _no_unlocker)(meta["encryption"], meta["set_id"])
        return cls(backend, meta, keys)

    @classmethod
    def open_started(cls, backend: Backend, unlock: Unlocker | None = None, guess: str | None = None) -> "RemoteSet":
        """:meth:`open` without its unlock yet: ``plugback.json`` read and checked (NotASet,
        NewerFormat, damage are raised here, as :meth:`open` raises them), the keys left to
        :meth:`unlock`, which a backup calls once its key-less work runs beside it (the scan,
        reading and hashing small files: core/engine/remote/ahead.py). Until then :attr:`keys`
        raises, and nothing may be written (the backup takes the lock only after the unlock).

        ``guess``: a passphrase the unlocker will likely try (``PLUGBACK_PASSPHRASE``): its scrypt
        starts now, in a thread (:func:`crypto.derive_ahead`), beside what the unlocker does
        first (loading and asking the keyring); the unlocker still decides what opens the set."""
        meta = _read_meta(backend)
        crypto.check_encryption(meta["encryption"])
        if guess:
            crypto.derive_ahead(meta["encryption"], guess)
        rset = cls(backend, meta, None)
        rset._unlock = lambda: (unlock or _no_unlocker)(meta["encryption"], meta["set_id"])
        return rset

    @property
    def keys(self) -> crypto.SetKeys:
        if self._keys is None:
            raise RuntimeError("the remote set is not unlocked yet (RemoteSet.unlock)")
        return self._keys

    @property
    def unlocked(self) -> bool:
        return self._keys is not None

    def unlock(self) -> None:
        """Run the unlock :meth:`open_started` left (WrongPassphrase, PassphraseNeeded, ...: the
        unlocker's errors); nothing to do on a set opened unlocked. In the caller's thread, so a
        prompt for the passphrase is asked as :meth:`open` asks it."""
        if self._keys is None:
            assert self._unlock is not None
            try:
                self._keys = self._unlock()
            finally:
                self._unlock = None
                crypto.forget_ahead()

    @classmethod
    def open_closing(cls, backend: Backend, unlock: Unlocker | None = None) -> "RemoteSet":
        """:meth:`open`, closing ``backend`` (its rclone) when the set does not open. The caller
        closes the set (``with``)."""
        try:
            return cls.open(backend, unlock)
        except BaseException:
            backend.close()
            raise

    @classmethod
    def create(cls, backend: Backend, now: datetime, passphrase: str) -> "RemoteSet":
        """A new, empty encrypted set; refused where the remote folder holds anything already."""
        if next(iter(backend.list("")), None) is not None:
            raise UsageError(f"{backend.where} is not empty and not a Plugback backup set. Give an empty "
                             "or new folder on the remote, so nothing else is mixed into the backup.")
        keys, enc = crypto.create_encryption(passphrase)
        meta = {"format": SET_FORMAT, "version": REMOTE_SET_VERSION, "set_id": str(uuid.uuid4()),
                "created": now.isoformat(timespec="seconds"), "encryption": enc}
        rset = cls(backend, meta, keys)
        rset.write_meta()
        return rset

    @classmethod
    def create_started(cls, backend: Backend, now: datetime, passphrase: str) -> "RemoteSet":
        """A new, empty encrypted set (as :meth:`create`) whose keys are ready at once, while the
        passphrase's scrypt (0.4 s of CPU, outside the GIL) and the put of ``plugback.json``
        run in a thread: :attr:`created` says when the set exists. Nothing may be written
        to the set before that (core/engine/remote/backup.py waits for it)."""
        if not passphrase:
            raise UsageError("The passphrase is empty. Choose a passphrase (a few words are best).")
        if next(iter(backend.list("")), None) is not None:
            raise UsageError(f"{backend.where} is not empty and not a Plugback backup set. Give an empty "
                             "or new folder on the remote, so nothing else is mixed into the backup.")
        master = os.urandom(crypto.KEY_LEN)
        keys = crypto.SetKeys.from_master(master, crypto.ENC_VERSION)
        meta = {"format": SET_FORMAT, "version": REMOTE_SET_VERSION, "set_id": str(uuid.uuid4()),
                "created": now.isoformat(timespec="seconds")}
        rset = cls(backend, meta, keys)
        rset._ids = []                  # (new: no snapshot to list)
        rset.packs.known_empty()
        done: Future = Future()

        def create() -> None:
            try:
                _, rset.meta["encryption"] = crypto.create_encryption(passphrase, master_key=master)
                backend.put(SET_FILE, rset.meta_bytes())   # (this backend: the run's writes wait for this)
            except BaseException as err:  # noqa: BLE001 - handed to whoever waits for the set
                done.set_exception(err)
            else:
                done.set_result(None)

        rset.created = done
        threading.Thread(target=create, name="plugback-create", daemon=True).start()
        return rset

    def write_meta(self) -> None:
        """plugback.json (an atomic put: the old one or the new one, never a mix)."""
        self.backend.put(SET_FILE, self.meta_bytes())

    def meta_bytes(self) -> bytes:
        return (json.dumps(self.meta, indent=2) + "\n").encode()

    @property
    def set_id(self) -> str:
        return self.meta["set_id"]

    def close(self) -> None:
        if self._unlock is not None:     # (opened, never unlocked: a key derived ahead is dropped)
            self._unlock = None
            crypto.forget_ahead()
        if self.created is not None:
            wait([self.created])       # (its error, if any, was the run's to report)
        self.packs.close()
        self.backend.close()

    def __enter__(self) -> "RemoteSet":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    # --- snapshots -------------------------------------------------------------------------
    def snapshot_ids(self) -> list[str]:
        """Snapshot ids, oldest first (one listing of ``snapshots/``, kept until :meth:`forget_cached`)."""
        if self._ids is None:
            self._ids = listed_snapshot_ids(self.backend)
        return list(self._ids)

    def forget_cached(self, snapshot_id: str | None = None) -> None:
        self._ids = None

    def newest_id(self) -> str | None:
        ids = self.snapshot_ids()
        return ids[-1] if ids else None

    def resolve_id(self, spec: str | None) -> str:
        """A full snapshot id from 'latest', a full id or a unique prefix."""
        return resolve_snapshot_id(self.snapshot_ids(), spec)

    def open_manifest(self, snapshot_id: str, *, local: IO[bytes] | None = None,
                      tee: IO[bytes] | None = None) -> mio.ManifestReader:
        """A snapshot's manifest as a checked stream of entries (see BackupSet.open_manifest).

        ``local``: its stored (encrypted) bytes from a local copy instead of the remote; ``tee``:
        a writable file that gets a copy of the stored bytes as they are read (such a copy)."""
        blob = manifest_blob(snapshot_id)
        raw: _BlobReader | _Tee | IO[bytes]
        try:
            raw = local if local is not None else _BlobReader(self.backend, blob, mf.MAX_MANIFEST_BYTES)
        except BlobNotFound:
            raise SnapshotNotFound(snapshot=snapshot_id) from None
        if tee is not None:
            raw = _Tee(raw, tee)
        try:
            stream = crypto.DecryptingReader(raw, self.keys, name=blob)
            reader = mio.ManifestReader(stream, blob, encrypted=True)
            if reader.manifest.snapshot_id != snapshot_id:
                raise ManifestDamaged(path=blob, reason=f"it describes snapshot {reader.manifest.snapshot_id}, "
                                                        f"not {snapshot_id}")
        except BaseException:
            raw.close()
            raise
        reader.closing = raw
        return reader

    def header(self, snapshot_id: str) -> mf.Manifest:
        with self.open_manifest(snapshot_id) as reader:
            return reader.manifest

    def snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot whose manifest header is readable, oldest first (headers only)."""
        return snapshot_infos(self.snapshot_ids(), self.header)

    # --- content ---------------------------------------------------------------------------
    def object_name(self, entry: mf.Entry) -> str:
        return entry.obj or self.keys.object_name(entry.sha256 or "")

    def object_paths(self, entry: mf.Entry) -> list[PurePosixPath]:
        return [PurePosixPath(object_blob(self.object_name(entry)))]

    def content_paths(self, entry: mf.Entry, *, of_newest: bool = False) -> list[PurePosixPath]:
        """Where ``entry``'s content is: its one object (whether it is there shows when it is read)."""
        return self.object_paths(entry)

    def read_content(self, entry: mf.Entry, paths=None, drop_cache: bool = False) -> Iterator[bytes]:
        """``entry``'s plaintext, authenticated chunk by chunk and checked against its keyed name at
        the end; from its pack when it is packed. A missing object is damage (DamagedSet); a remote
        that fails is a StorageError."""
        name = self.object_name(entry)
        packed = self.packs.find(name)
        if packed:
            try:
                stream = self.pack_cache.object(*packed)
            except BlobNotFound:
                raise DamagedSet(what=f"{pack_blob(packed[0])}: the pack holding this content is missing "
                                      "from the remote") from None
            yield from crypto.DecryptingReader(SizedBytes(stream), self.keys, name=pack_blob(packed[0]),
                                               expected_name=name, max_size=entry.size)
            return
        blob = object_blob(name)
        try:
            raw = _BlobReader(self.backend, blob)
        except BlobNotFound:
            raise DamagedSet(what=f"{blob}: its content is missing from the remote") from None
        try:
            yield from crypto.DecryptingReader(raw, self.keys, name=blob, expected_name=name, max_size=entry.size)
        finally:
            raw.close()

    def object_names(self) -> Iterator[tuple[str, int]]:
        """Every object stored (name, size): one listing of ``objects/``, then the packed ones
        (whose pack is there whole)."""
        for info in self.backend.list(OBJECTS_DIR):
            name = object_of_blob(info.name)
            if name is not None:
                yield name, info.size
        yield from self.packs.objects()


def _read_meta(backend: Backend) -> dict:
    """``plugback.json``, read and checked (NotASet when there is none; refused when not encrypted)."""
    try:
        raw = read_all(backend, SET_FILE, MAX_META_BYTES)
    except BlobNotFound:
        raise NotASet(path=backend.where) from None
    meta = decode_meta(raw, cast(Path, _Where(backend.where, SET_FILE)))
    if not meta.get("encryption"):
        raise UsageError(f"{backend.where} holds a backup set that is not encrypted (a set made on a "
                         "drive and copied there?). Remote sets are always encrypted: open this one as "
                         "a folder, or back up to a new remote folder.")
    return meta


class _Tee:
    """A readable stream that copies what is read from it into ``copy``."""

    def __init__(self, stream: "_BlobReader | IO[bytes]", copy: IO[bytes]):
        self._stream, self._copy = stream, copy

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self._copy.write(data)
        return data

    def close(self) -> None:
        self._stream.close()


class Unclosed:
    """A local file read through a reader that closes what it reads, left open (read again, or sent, after)."""

    def __init__(self, f: IO[bytes]):
        self._f = f

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def close(self) -> None:
        pass


class _Where:
    """What decode_meta names in its messages (it wants a path with a parent)."""

    def __init__(self, where: str, name: str):
        self._text = f"{where}/{name}"
        self.parent = where

    def __str__(self) -> str:
        return self._text


__all__ = ["LOCKS_DIR", "RemoteSet", "SizedBytes", "Unclosed", "decrypt_small", "encrypted_chunks", "manifest_blob",
           "object_blob", "object_of_blob"]
