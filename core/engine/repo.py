"""A backup set on the drive: its metadata, its snapshots, and where each file's content lives.

Reading order is the reverse of the write order (docs/format.md): a snapshot
exists only once ``snapshots/<id>.json.gz`` is in place, and every content it
names is found first in ``objects/`` and otherwise in ``Latest/`` at the path
the newest snapshot gives it.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from core.engine import chunks, safeio
from core.engine import manifest as mf
from core.engine import manifest_io as mio
from core.engine.fs import FileSystem, blocks, host_name, long_path, read_buffer, translate
from core.engine.layout import SET_FORMAT, SET_VERSION, SetLayout
from core.engine.scratch import LatestIndex
from core.errors import (
    DamagedSet,
    DriveFileDamaged,
    ManifestDamaged,
    NewerFormat,
    NotASet,
    PassphraseNeeded,
    PlugbackError,
    SnapshotNotFound,
    UsageError,
)

if TYPE_CHECKING:   # crypto loads only for encrypted sets (cryptography is slow to import)
    from core.engine import crypto

# Opens an encrypted set: (plugback.json's "encryption" dict, set id) -> keys. The caller
# chooses where secrets come from (core.agent.keys.make_unlocker); the engine never asks.
Unlocker = Callable[[dict, str], "crypto.SetKeys"]


def _no_unlocker(enc: dict, set_id: str) -> "crypto.SetKeys":
    raise PassphraseNeeded()


MAX_META_BYTES = 64 * safeio.KIB    # plugback.json is a few hundred bytes
_TEXT_LIMIT = 4096


def decode_meta(raw: bytes, path: Path) -> dict:
    """plugback.json's bytes, checked: NotASet, NewerFormat or DriveFileDamaged naming ``path``.

    Fields this version does not know are kept (and written back unchanged).
    """
    def bad(reason: str) -> DriveFileDamaged:
        return DriveFileDamaged(path=str(path), reason=reason)

    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        raise bad("it is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != SET_FORMAT:
        raise NotASet(path=str(path.parent))
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad("its 'version' is not a version number")
    if version > SET_VERSION:
        raise NewerFormat(path=str(path.parent), version=version)
    try:
        uuid.UUID(meta.get("set_id") if isinstance(meta.get("set_id"), str) else "")
    except ValueError:
        raise bad("its 'set_id' is not an id") from None
    for key in ("created", "host", "job"):
        v = meta.get(key)
        if (key == "created" or v is not None) and not (isinstance(v, str) and len(v) <= _TEXT_LIMIT
                                                        and "\x00" not in v):
            raise bad(f"its '{key}' is not valid text")
    enc = meta.get("encryption")
    if enc is not None:
        from core.engine import crypto

        crypto.check_encryption(enc, where=str(path))   # EncryptedDataDamaged / NewerFormat
    return meta


def _content_error(path: str, reason: str) -> DamagedSet:
    return DamagedSet(what=f"{path}: {reason}")


@dataclass(frozen=True)
class SnapshotInfo:
    """What a listing shows of a snapshot (from its manifest header)."""

    id: str
    time: str
    host: str
    job: str
    parent: str | None
    files: int
    dirs: int
    bytes: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def new_snapshot_id(now: datetime, after: str | None) -> str:
    """``YYYYMMDDTHHMMSSZ-xxxx``; always sorts after ``after`` (the newest), even if the clock went back."""
    t = now.astimezone(timezone.utc).replace(microsecond=0)
    if after:
        prev = datetime.strptime(after[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        if t <= prev:
            t = prev + timedelta(seconds=1)
    return t.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def resolve_snapshot_id(ids: list[str], spec: str | None) -> str:
    """A full snapshot id of ``ids`` (oldest first) from 'latest', a full id or a unique prefix."""
    if not ids:
        raise SnapshotNotFound("This set has no snapshots yet. Run a backup first.")
    if spec in (None, "", "latest"):
        return ids[-1]
    if spec in ids:
        return spec
    matches = [i for i in ids if i.startswith(spec)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UsageError(f"'{spec}' matches {len(matches)} snapshots; give more of the id.")
    raise SnapshotNotFound(snapshot=spec)


def snapshot_infos(ids: list[str], header: Callable[[str], mf.Manifest]) -> list[SnapshotInfo]:
    """A :class:`SnapshotInfo` for each of ``ids`` whose manifest header ``header`` reads (others
    are left out: ``verify`` names them)."""
    out = []
    for sid in ids:
        try:
            m = header(sid)
        except PlugbackError:
            continue
        t = m.totals
        out.append(SnapshotInfo(sid, m.time, m.host, m.job, m.parent, t.get("files", 0),
                                t.get("dirs", 0), t.get("bytes", 0)))
    return out


class BackupSet:
    """One set: open it with :meth:`open` (or :meth:`create`), then ask it."""

    def __init__(self, root: Path, meta: dict, set_keys: "crypto.SetKeys | None", fs: FileSystem):
        self.root = Path(root)
        self.layout = SetLayout(self.root)
        self.folders = safeio.CheckedFolders(self.root, _content_error)   # (content read through no symlinked folder)
        self.meta = meta
        self.keys = set_keys
        self.fs = fs
        self._manifests: dict[str, mf.Manifest] = {}
        self._latest = LatestIndex(self._readers_newest_first)
        self.latest_cuts = chunks.LatestCuts()   # format 2: chunks found in Latest/ files

    # --- opening ---------------------------------------------------------------------
    @staticmethod
    def exists(root: Path) -> bool:
        return SetLayout(Path(root)).meta.is_file()

    @classmethod
    def open(cls, root: Path, unlock: Unlocker | None = None, fs: FileSystem | None = None) -> "BackupSet":
        """Open an existing set; NotASet / NewerFormat / WrongPassphrase on failure."""
        root = Path(root)
        layout = SetLayout(root)
        try:
            raw = safeio.read_bytes(layout.meta, MAX_META_BYTES, root=root)
        except FileNotFoundError:
            raise NotASet(path=str(root)) from None
        meta = decode_meta(raw, layout.meta)
        set_keys = None
        if meta.get("encryption"):
            set_keys = (unlock or _no_unlocker)(meta["encryption"], meta["set_id"])
        return cls(root, meta, set_keys, fs or FileSystem(root))

    @classmethod
    def create(cls, root: Path, now: datetime, *, job: str = "", host: str | None = None,
               passphrase: str | None = None, fs: FileSystem | None = None,
               parents: bool = False) -> "BackupSet":
        """A new, empty set at ``root`` (encrypted when a passphrase is given).

        Only ``root`` itself is created unless ``parents``: a missing parent is most
        often a backup drive that is not plugged in, and the set must not quietly
        land on the computer's own disk instead.
        """
        root = Path(root)
        fs = fs or FileSystem(root)
        if not parents and not root.parent.is_dir():
            raise UsageError(f"The folder {root.parent} does not exist. If it is on a backup drive, plug "
                             "the drive in; otherwise create the folder first.")
        if root.exists() and not root.is_dir():
            raise UsageError(f"{root} is a file; give a folder for the backup set.")
        if root.is_dir() and any(root.iterdir()):
            raise UsageError(f"{root} is not empty and not a Plugback backup set. Give an empty or new "
                             "folder, so nothing of yours is mixed into the backup.")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise translate(err, root) from err
        layout = SetLayout(root)
        # Encrypted sets stay at version 1: format 2's chunked old versions are plain-set only.
        version = SET_VERSION if passphrase is None else 1
        meta = {"format": SET_FORMAT, "version": version, "set_id": str(uuid.uuid4()),
                "created": now.isoformat(timespec="seconds")}
        set_keys = None
        if passphrase is not None:
            from core.engine import crypto

            set_keys, meta["encryption"] = crypto.create_encryption(passphrase)
        else:
            # Names only in the clear for plain sets: an encrypted set reveals no host or job.
            meta.update(host=host or host_name(), job=job, encryption=None)
        for d in (layout.snapshots, layout.objects, layout.tmp) + (() if set_keys else (layout.latest,)):
            fs.mkdir(d)
        bset = cls(root, meta, set_keys, fs)
        bset.write_meta()
        return bset

    def write_meta(self) -> None:
        from core.engine.atomic import write_atomic

        write_atomic(self.fs, self.layout.tmp, self.layout.meta,
                     (json.dumps(self.meta, indent=2) + "\n").encode())

    @property
    def encrypted(self) -> bool:
        return self.keys is not None

    @property
    def version(self) -> int:
        """The set's format version (plugback.json's, checked on opening)."""
        return int(self.meta.get("version", 1))

    @property
    def chunked(self) -> bool:
        """Format 2, plain: big files' older versions are stored as chunks (core/engine/chunks.py)."""
        return self.keys is None and self.version >= 2

    @property
    def set_id(self) -> str:
        return self.meta["set_id"]

    # --- snapshots -------------------------------------------------------------------
    def snapshot_ids(self) -> list[str]:
        return self.layout.manifest_ids()

    def newest_id(self) -> str | None:
        ids = self.snapshot_ids()
        return ids[-1] if ids else None

    def resolve_id(self, spec: str | None) -> str:
        """A full snapshot id from 'latest', a full id or a unique prefix."""
        return resolve_snapshot_id(self.snapshot_ids(), spec)

    def open_manifest(self, snapshot_id: str, *, tee=None) -> mio.ManifestReader:
        """A snapshot's manifest as a stream (memory flat in its size): ``.manifest`` holds the
        header fields at once, iterating yields the checked entries, and the trailer is checked
        at the end (see core/engine/manifest_io.py). Close it (or use ``with``).

        ``tee``: a writable file that gets a copy of the gzip bytes as they are read (decrypted
        in an encrypted set; core/engine/splice.py keeps a local copy of a parent manifest)."""
        path = self.layout.manifest(snapshot_id)
        name = f"snapshots/{path.name}"

        def damaged(reason: str, **_) -> ManifestDamaged:
            return ManifestDamaged(path=name, reason=reason)

        try:
            fd = safeio.open_regular(path, error=damaged, root=self.root)
        except FileNotFoundError:
            raise SnapshotNotFound(snapshot=snapshot_id) from None
        raw = os.fdopen(fd, "rb")
        try:
            if os.fstat(fd).st_size > mf.MAX_MANIFEST_BYTES:
                raise damaged(f"it is larger than {mf.MAX_MANIFEST_BYTES} bytes")
            stream: mio.Readable = _SmallFirstRead(raw)
            if self.keys is not None:
                from core.engine import crypto

                stream = crypto.DecryptingReader(raw, self.keys, name=name, max_size=mf.MAX_MANIFEST_BYTES)
            if tee is not None:
                stream = _Tee(stream, tee)
            reader = mio.ManifestReader(stream, name, encrypted=self.keys is not None)
            if reader.manifest.snapshot_id != snapshot_id:
                raise damaged(f"it describes snapshot {reader.manifest.snapshot_id}, not {snapshot_id}")
        except BaseException:
            raw.close()
            raise
        reader.closing = raw
        return reader

    def manifest_chunks(self, writer: mio.ManifestWriter, m: mf.Manifest) -> Iterator[bytes]:
        """The bytes of the manifest ``writer`` collected (header fields from ``m``), encrypted
        for an encrypted set: what ``write_atomic`` puts in ``snapshots/``."""
        if self.keys is None:
            yield from writer.chunks(m)
            return
        from core.engine import crypto

        sink = _Collect()
        enc = crypto.EncryptingWriter(sink, self.keys)
        for chunk in writer.chunks(m):
            enc.write(chunk)
            yield sink.take()
        enc.close()
        yield sink.take()

    def manifest(self, snapshot_id: str) -> mf.Manifest:
        """A snapshot's whole manifest, checked (ManifestDamaged if it is not intact); kept.

        Memory grows with the snapshot: small sets and tests. Paths that must scale stream
        with :meth:`open_manifest` (restore, verify, ls, diff, prune) or read :meth:`header`.
        """
        if snapshot_id not in self._manifests:
            with self.open_manifest(snapshot_id) as reader:
                self._manifests[snapshot_id] = reader.read_all()
        return self._manifests[snapshot_id]

    def header(self, snapshot_id: str) -> mf.Manifest:
        """A snapshot's header fields (a Manifest without entries), read without its entries.

        Cheap, and therefore not proof that the snapshot is intact: the trailer, which
        checks the entries, is read only by iterating :meth:`open_manifest` to its end.
        """
        with self.open_manifest(snapshot_id) as reader:
            return reader.manifest

    def snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot whose manifest header is readable (and names its own id), oldest first.

        Headers only, never the entries: listing stays instant at a million files (issue
        #11). So a snapshot whose entries were damaged after its header is still listed;
        ``verify`` names it, and restore, ls and diff refuse it when they reach the damage.
        """
        return snapshot_infos(self.snapshot_ids(), self.header)

    def encode_manifest(self, m: mf.Manifest) -> bytes:
        """A whole manifest's bytes as stored in this set (encrypted in an encrypted set)."""
        with mio.ManifestWriter() as writer:
            for e in sorted(m.entries, key=lambda e: mf.sort_key(e.path)):
                writer.add(e)
            return b"".join(self.manifest_chunks(writer, m))

    def forget_cached(self, snapshot_id: str) -> None:
        """Drop what this object keeps about ``snapshot_id`` (it was written or deleted)."""
        self._manifests.pop(snapshot_id, None)
        self._latest.close()   # rebuilt from the then newest manifest on the next lookup

    # --- content ---------------------------------------------------------------------
    def newest_intact(self) -> mf.Manifest | None:
        """The newest snapshot whose manifest is intact, whole (damaged newer ones are verify's to report)."""
        for sid in reversed(self.snapshot_ids()):
            try:
                return self.manifest(sid)
            except ManifestDamaged:
                continue
        return None

    def _readers_newest_first(self) -> Iterator[mio.ManifestReader]:
        """Readers of every manifest whose header reads, newest first (for the Latest/ index)."""
        if self.keys is not None:
            return   # encrypted sets keep no Latest/
        for sid in reversed(self.snapshot_ids()):
            try:
                reader = self.open_manifest(sid)
            except DamagedSet:
                continue
            yield reader

    def latest_holder(self, sha256: str) -> tuple[str, int] | None:
        """Where content with ``sha256`` is in ``Latest/`` as the newest intact snapshot placed it:
        (mirror path, parts), or None (plain sets).

        Looked up in a scratch table built by streaming that manifest once, on the first
        call (memory flat in the file count). Whatever is read through it is hash-checked
        by its reader, so an older table after a damaged newest manifest can cost a
        restore, never give wrong bytes.
        """
        return self._latest.lookup(sha256)

    def object_name(self, entry: mf.Entry) -> str:
        return (entry.obj if self.keys is not None else entry.sha256) or ""   # checked entries have both

    def object_paths(self, entry: mf.Entry) -> list[Path] | None:
        """``entry``'s copy in ``objects/``: one path, the parts in order, or (format 2) its chunks
        (a :class:`chunks.ChunkPaths`, from its checked chunk list; ChunkListDamaged if that is
        damaged); None if there is none."""
        name = self.object_name(entry)
        if entry.parts:
            parts = [self.layout.object_part(name, i) for i in range(1, entry.parts + 1)]
            return parts if parts[0].exists() else None
        p = self.layout.object(name)
        if p.exists():
            return [p]
        if self.chunked and entry.size >= chunks.LIST_FROM:
            cl = chunks.load(self, name)   # ChunkListDamaged if it is not a valid list
            if cl is not None:
                if cl.size != entry.size:
                    raise chunks.ChunkListDamaged(path=chunks.label(self, chunks.list_path(self, name)),
                                                  reason=f"it describes {cl.size} bytes, the snapshot {entry.size}")
                return chunks.ChunkPaths(self, cl)
        return None

    def content_paths(self, entry: mf.Entry, *, of_newest: bool = False) -> list[Path] | None:
        """Where ``entry``'s bytes are: one path, or the parts in order; None if nowhere.

        ``of_newest``: ``entry`` is from the newest snapshot, whose manifest the caller
        read to its checked end: then its own copy in ``Latest/`` is a place the format
        names for its content, and no ``Latest/`` index is needed.
        """
        found = self.object_paths(entry)
        if found or self.keys is not None:
            return found
        holder = (entry.mirror_path, entry.parts) if of_newest else self.latest_holder(entry.sha256 or "")
        if holder is None:
            return None
        mirror, n_parts = holder
        if n_parts:
            parts = [self.layout.latest_part(mirror, i) for i in range(1, n_parts + 1)]
            return parts if os.path.exists(long_path(parts[0])) else None
        p = self.layout.latest_file(mirror)
        return [p] if os.path.isfile(long_path(p)) else None   # (long_path: Windows, past 248 characters)

    def read_content(self, entry: mf.Entry, paths: list[Path], drop_cache: bool = False) -> Iterator[bytes | memoryview]:
        """The plaintext of ``entry`` in blocks (decrypted and authenticated in encrypted sets)."""
        from core.engine.fs import drop_cache as _drop

        if isinstance(paths, chunks.ChunkPaths):
            yield from paths.read(drop_cache)
            return
        if self.keys is None:
            # Blocks are views of one reused buffer: use each before asking for the next.
            buf = read_buffer()
            for p in paths:
                fd = self.folders.open(p)
                try:
                    if drop_cache:
                        _drop(fd)
                    yield from blocks(fd, buf)
                finally:
                    os.close(fd)
            return
        from core.engine import crypto

        # A small file's object (most of them) is read in one call and opened with one decrypt.
        max_size = entry.size if entry.sha256 is not None else None
        first = self.folders.open(paths[0]) if len(paths) == 1 else None
        if first is not None and (blob := _small_object(first, drop_cache)) is not None:
            yield from crypto.open_whole(self.keys, blob, name=f"objects/{entry.obj}", max_size=max_size)
            return
        raw = _ConcatReader(paths, drop_cache, self.folders.open, first)
        try:
            # No keyed-name check here (a second SHA-256 pass): every caller checks the plain
            # SHA-256 against the (authenticated) manifest, which an object copied under
            # another name fails just the same.
            # A compressed object may expand to the size the manifest records, no more (a bomb
            # stops there); scrub reads objects it knows by name only (no sha256, no size).
            reader = crypto.DecryptingReader(raw, self.keys, name=f"objects/{entry.obj}", max_size=max_size)
            yield from reader
        finally:
            raw.close()


class _SmallFirstRead:
    """A manifest file read in small blocks: the first one holds the header, all that a listing
    reads (the reader asks for 1 MiB at a time); then 256 KiB, about what one batch of
    entries unpacks from, so the gzip bytes waiting in memory stay small too."""

    FIRST, BLOCK = 64 * 1024, 256 * 1024

    def __init__(self, f):
        self._f = f
        self._limit = self.FIRST

    def read(self, n: int = -1) -> bytes:
        n = self._limit if n < 0 else min(n, self._limit)
        self._limit = self.BLOCK
        return self._f.read(n)

    def close(self) -> None:
        self._f.close()


class _Tee:
    """A stream whose bytes are also written to ``copy`` as they are read."""

    def __init__(self, stream: mio.Readable, copy):
        self._stream, self._copy = stream, copy

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self._copy.write(data)
        return data

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class _Collect:
    """A write sink whose bytes are taken out piece by piece (streams an EncryptingWriter)."""

    def __init__(self):
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def close(self) -> None:
        pass   # nothing to release: the bytes are taken as they come

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


SMALL_OBJECT = (1 << 20) + (64 << 10)   # objects up to this size are read whole (a small file's)


def _small_object(fd: int, drop_cache: bool) -> bytes | None:
    """The bytes of the object opened as ``fd`` (then closed) if at most :data:`SMALL_OBJECT` (one read,
    more if short); None for a bigger one, ``fd`` left open and unread for its stream (opened once)."""
    from core.engine.fs import drop_cache as _drop

    try:
        size = os.fstat(fd).st_size
        if size > SMALL_OBJECT:
            return None
        if drop_cache:
            _drop(fd)
        parts = []
        while size > 0 and (data := os.read(fd, size + 1)):
            parts.append(data)
            size -= len(data)
        blob = parts[0] if len(parts) == 1 else b"".join(parts)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return blob


class _ConcatReader:
    """Parts of a split object read as one stream."""

    def __init__(self, paths: list[Path], drop_cache: bool, opener, first: int | None = None):
        # first: the first part's descriptor, opened already (taken over)
        from core.engine.fs import drop_cache as _drop

        self._files = []
        self.size = 0   # read by crypto.DecryptingReader to size its buffers
        self._i = 0
        try:
            for p in paths:
                fd, first = (opener(p) if first is None else first), None
                f = open(fd, "rb", buffering=0)
                self._files.append(f)
                if drop_cache:
                    _drop(f)
                self.size += os.fstat(f.fileno()).st_size
        except BaseException:   # a later part missing or refused: the parts opened so far closed
            self.close()
            raise

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while self._i < len(self._files) and (n < 0 or len(out) < n):
            chunk = self._files[self._i].read(-1 if n < 0 else n - len(out))
            if not chunk:
                self._i += 1
                continue
            out += chunk
        return bytes(out)

    def readinto(self, b) -> int:
        while self._i < len(self._files):
            n = self._files[self._i].readinto(b)
            if n:
                return n
            self._i += 1
        return 0

    def close(self) -> None:
        for f in self._files:
            f.close()

