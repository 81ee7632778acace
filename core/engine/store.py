"""Putting a file's content into a set, in plain or encrypted mode.

Plain mode keeps the newest version of every file as an ordinary file in
``Latest/``; before a copy there is replaced or removed, its content is moved
(a rename on the same volume) into ``objects/<sha256>``, unless an identical
object is already there. Encrypted mode writes every content once, encrypted,
to ``objects/<keyed name>``.

Write order (the crash-safety proof, with core/engine/backup.py): new content is
written into ``tmp/`` first; an old version leaves ``Latest/`` only by a rename
into ``objects/``; so at every instant each content a committed snapshot names
is in ``objects/`` or still in ``Latest/`` where the newest snapshot put it.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

from core.engine import chunkstore
from core.engine.atomic import tmp_name
from core.engine.fs import COPY_BLOCK, READ_FLAGS, VolumeInfo, long_path, read_buffer, read_into
from core.engine.hashset import CompactSet
from core.engine.lean_child import check_same, is_changed, read_open_whole
from core.engine.manifest import FILE, LINK, Entry
from core.engine.progress import RunWarning, WarningCode
from core.engine.repo import BackupSet
from core.engine.source_open import open_source
from core.engine.splitwriter import SplitWriter
from core.errors import PlugbackError

_OBJECT_NAME = re.compile(r"^[0-9a-f]{64}$")   # (as SetLayout.object checks it)
WHOLE_BYTES = 1 << 20   # encrypted sets: files under this are read whole and sealed in one call
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


@dataclass
class Copied:
    """A source file's content, written to ``tmp/`` and hashed in the same pass."""

    sha256: str
    size: int
    obj: str | None
    tmp_paths: list[str] = field(default_factory=list)   # (strings: built for every file copied)
    changed: bool = False   # the source changed during the read: copy again next run
    stored: int = 0         # encrypted sets: Entry.stored for this copy (0: encrypted_size(size))
    checked: bool = False   # read back and matched after its own fdatasync (copy_ahead.py): not again
    in_place: bool = False  # written at its place in a first backup's Latest/ being built (fresh_latest.py)


def read_source(path: str, sink, hasher, size_hint: int = -1, mtime_ns: int | None = None,
                fd: int = -1, ino: int = 0, dev: int = 0) -> tuple[int, bool]:
    """Stream ``path`` into ``sink`` and ``hasher``; (bytes read, changed since it was scanned).

    ``size_hint`` and ``mtime_ns`` are what the scan saw: the read stops at that
    size, and a file whose size or time differs afterwards was changed meanwhile.
    ``fd``: ``path`` opened already (:func:`prefetch_source`), read and closed here.
    ``ino``, ``dev``: the scan's; another file reached by ``path`` raises ``lean_child.Replaced``
    before any of its bytes reach ``sink`` (the ``fstat`` after the first read; a second one
    after the last only for a file read in more than one block).
    """
    size = 0
    buf = read_buffer()
    if fd < 0:
        fd = open_source(long_path(path))   # (never waits, never follows a symlink: ELOOP, sourceread reports it)
    try:
        n = read_into(fd, buf)
        st = os.fstat(fd)
        check_same(st, ino, dev, path)
        more = False
        while n:
            block = buf[:n]
            hasher.update(block)
            sink.write(block)
            size += n
            if 0 <= size_hint <= size:
                break   # the size it had: a file that grew shows in the fstat
            n, more = read_into(fd, buf), True
        if more:
            st = os.fstat(fd)
    finally:
        os.close(fd)
    return size, is_changed(st, size, mtime_ns)


def read_whole(path: str, size_hint: int, mtime_ns: int | None = None, fd: int = -1,
               ino: int = 0, dev: int = 0) -> tuple[bytes, bool]:
    """A small file's bytes in one read (more only if it returns short) and whether it changed
    since it was scanned: :func:`read_source` for content held whole (``size_hint`` bytes at
    most are read; a file that grew shows in the fstat). ``fd``, ``ino``, ``dev``: as for read_source."""
    return read_open_whole(fd if fd >= 0 else open_source(long_path(path)), size_hint, mtime_ns, ino, dev, path)


def prefetch_source(path: str) -> int:
    """Ask the OS to start reading the small source file ``path`` now, without waiting for it; the
    descriptor it was opened with (the caller's to read, :func:`read_source`'s ``fd``, or to close),
    or -1.

    The pass copies small files one after the other in its own thread; a hint for the
    files coming next lets the drive work on several at once (what threads gave before,
    without their hand-offs). Only where the OS takes the hint (posix_fadvise); never
    blocks (O_NONBLOCK: a FIFO swapped in is not waited on), never follows a symlink, and
    never fails: the copy itself reads and reports. The copy reads from this descriptor
    (core/engine/source_ahead.py): one open and one close a file fewer (issue #11).
    """
    # Linux only (written so mypy sees it for each platform); elsewhere the copy just reads.
    if sys.platform == "win32" or sys.platform == "darwin" or not hasattr(os, "posix_fadvise"):
        return -1
    try:
        fd = open_source(long_path(path))
    except OSError:
        return -1
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass
    return fd


def _size(p: str | Path) -> int:
    """A regular file's size, never through a symlink; anything else counts as missing."""
    try:
        st = os.lstat(long_path(p))
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        return -(1 << 62)   # no sum of sizes can match
    return st.st_size


def _kind(p: str | Path) -> str | None:
    """What is at ``p``, never through a symlink: FILE (a regular file), LINK, None (nothing), or
    "" (anything else: a folder, a FIFO...)."""
    try:
        mode = os.lstat(long_path(p)).st_mode
    except OSError:
        return None
    return FILE if stat.S_ISREG(mode) else LINK if stat.S_ISLNK(mode) else ""


def _is_file(p: str | Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(long_path(p)).st_mode)
    except OSError:
        return False


class _Store:
    """What both modes share: reading a source once into ``tmp/``.

    ``warnings`` is the run's list: content that could not be kept is reported there.
    """

    def __init__(self, bset: BackupSet, volume: VolumeInfo, warnings: list[RunWarning], *, rehash: bool = False):
        self.bset = bset
        self.fs = bset.fs
        self.layout = bset.layout
        self.volume = volume
        self.warnings = warnings
        self.rehash = rehash   # stored copies are not trusted: a fresh copy replaces them (repair)
        self._made: set[str] = set()
        self._tmp = str(self.layout.tmp)

    def _hasher(self):
        return hashlib.sha256()

    def _sink(self, out: SplitWriter):
        return out

    def _copied(self, hasher, size: int, paths: list[str], changed: bool, sink) -> Copied:
        return Copied(hasher.hexdigest(), size, None, paths, changed)

    def copy_in(self, se, *, fresh: bool = False, fd: int = -1, dest: str | None = None) -> Copied:
        """Read the scanned file ``se`` once: hash it and write it into ``tmp/`` (split where needed).

        ``fresh``: always write a copy (a repair replaces a stored one); plain copies always are.
        ``fd``: ``se`` opened already (:func:`prefetch_source`); this closes it. ``dest``: a plain
        copy's place in a first backup's ``Latest/`` being built, for a file that is never split:
        written there, not renamed (core/engine/fresh_latest.py)."""
        out = SplitWriter(self.fs, self._tmp, self.volume.max_file_size, dest)
        hasher = self._hasher()
        try:
            try:
                sink = self._sink(out)
            except BaseException:
                if fd >= 0:
                    os.close(fd)
                raise
            size, changed = read_source(se.abspath, sink, hasher, se.size, se.mtime_ns, fd, se.ino, se.dev)
            if sink is not out:
                sink.close()
            out.close(*self._times(se))
        except BaseException:
            out.discard()
            raise
        copied = self._copied(hasher, size, out.paths, changed, sink)
        copied.in_place = out.in_place
        return copied

    def _times(self, se) -> tuple[int | None, int | None]:
        """(mtime_ns, mode) for the stored copy: plain copies look like the source."""
        return se.mtime_ns, se.mode

    def written_paths(self, entry: Entry) -> list:
        """Where ``entry``'s content is stored (each store says; ``str`` or ``Path`` items)."""
        raise NotImplementedError

    def discard(self, copied: Copied) -> None:
        for p in copied.tmp_paths:
            self.fs.unlink(p)

    def object_dir(self, folder: Path | str) -> None:
        """``objects/xx/``, made once per run (not a mkdir per object)."""
        if str(folder) not in self._made:
            self.fs.mkdir(folder)
            self.layout.check_not_link(Path(folder))   # never write objects through a planted symlink
            self._made.add(str(folder))

    def overwrite(self, copied: Copied, entry: Entry) -> None:
        """Replace ``entry``'s stored copy by ``copied`` (same content): repairs a damaged copy."""
        for tmp, dest in reversed(list(zip(copied.tmp_paths, self.written_paths(entry), strict=True))):
            self.fs.replace(tmp, dest)


class PlainStore(_Store):
    """Content as plain files in ``Latest/`` plus displaced versions in ``objects/``."""

    def _latest_paths(self, entry: Entry) -> list[str]:
        """Where ``entry``'s copy goes in ``Latest/``, proven to stay inside it (strings: per file)."""
        if entry.parts:
            return [str(self.layout.latest_part(entry.mirror_path, i, writing=True))
                    for i in range(1, entry.parts + 1)]
        return [self.layout.latest_name(entry.mirror_path, writing=True)]

    def has(self, entry: Entry) -> bool:
        """Whether ``Latest/`` holds ``entry``'s copy (regular files of the right total size)."""
        return sum(_size(p) for p in self._latest_paths(entry)) == entry.size

    def place(self, copied: Copied, entry: Entry, old: Entry | None) -> bool:
        """Put ``copied`` in ``Latest/`` as ``entry``; ``old`` is what is there now. True if written."""
        same = (old is not None and old.type == FILE and old.sha256 == copied.sha256
                and old.parts == entry.parts and old.mirror_path == entry.mirror_path)
        if same and old is not None and not self.rehash and self.has(old):
            self.discard(copied)
            return False
        # With --rehash the copy in Latest/ may be damaged (same size, other bytes): the fresh
        # copy of the same content replaces it, nothing of it needs keeping.
        if old is not None and not same:
            self.displace(old, incoming=(copied, entry))
        if copied.in_place:
            return True   # (written at its place in a first backup's Latest/ being built)
        for tmp, dest in zip(copied.tmp_paths, self._latest_paths(entry), strict=True):
            try:
                self.fs.replace(tmp, dest)
            except PlugbackError:
                # A folder deleted from Latest/ by hand (runs only make new folders) is made
                # again; but never when the set is gone (a pulled drive): that would write to
                # the computer's own disk under the empty mount point.
                folder = os.path.dirname(dest)
                if os.path.isdir(long_path(folder)) or not self.layout.meta.exists():
                    raise
                os.makedirs(long_path(folder), exist_ok=True)
                self.fs.replace(tmp, dest)
        return True

    def displace(self, old: Entry, incoming: tuple[Copied, Entry] | None = None) -> None:
        """Take ``old`` out of ``Latest/``, keeping its content in ``objects/`` (a warning if it cannot).

        ``incoming``: the new copy (in ``tmp/``) and entry that ``place`` puts in ``Latest/`` next.
        """
        if old.type != FILE:
            p = self.layout.latest_name(old.mirror_path, writing=True)
            if old.type == "l" and os.path.islink(long_path(p)):
                self.fs.unlink(p)
            return
        paths = self._latest_paths(old)
        kinds = [_kind(p) for p in paths]   # (one lstat each: on a cold drive each is a wait)
        if LINK in kinds:
            # Plugback puts regular files here: a symlink is never moved into objects/ (where
            # reads would follow it); it goes, and the old version is reported lost.
            for p, kind in zip(paths, kinds, strict=True):
                if kind == LINK or kind == FILE:
                    self.fs.unlink(p)
            self._edited(old)
            return
        # A real folder here was made by an interrupted run after it moved this file away.
        present = [p for p, kind in zip(paths, kinds, strict=True) if kind == FILE]
        if not present:
            return  # an interrupted run already moved it
        if self.bset.chunked and not old.parts and chunkstore.big_enough(old.size):
            self._displace_chunked(old, present[0], incoming)
            return
        sha = old.sha256
        assert sha is not None   # a file's entry has its hash (parse_entry)
        obj = [self.layout.object(sha)] if not old.parts else \
            [self.layout.object_part(sha, i) for i in range(1, old.parts + 1)]
        if os.path.exists(long_path(obj[0])):
            for p in present:
                self.fs.unlink(p)
            return
        # Parts an interrupted displacement already moved count from objects/.
        held = sum(_size(p) if os.path.lexists(long_path(p)) else _size(o) for p, o in zip(paths, obj, strict=True))
        if held != old.size:
            # Someone edited the copy in Latest/: it is not the version the snapshot names.
            for p in present:
                self.fs.unlink(p)
            self._edited(old)
            return
        self.object_dir(obj[0].parent)
        # Last part first: the first part's presence in objects/ means the object is whole.
        for src, dst in reversed(list(zip(paths, obj, strict=True))):
            if src in present:
                self.fs.replace(src, dst)
        return None

    def _displace_chunked(self, old: Entry, path: str, incoming: tuple[Copied, Entry] | None) -> None:
        """Format 2: ``old``'s copy at ``path`` into ``objects/`` as chunks (core/engine/chunkstore.py).

        When the new copy takes the same place, its chunks are not stored again: the list
        names that place. Then the copy stays until the new one is renamed over it (the same
        instant), otherwise it goes once the list is durable.
        """
        keep: set[str] = set()
        latest = None
        if incoming is not None:
            copied, entry = incoming
            if entry.mirror_path == old.mirror_path and not entry.parts and chunkstore.big_enough(copied.size):
                keep, latest = chunkstore.digests(self.bset, [Path(p) for p in copied.tmp_paths]), entry.mirror_path
        if not chunkstore.ChunkWriter(self.bset, self.object_dir).store(old, [Path(path)], keep, latest):
            self.fs.unlink(path)
            self._edited(old)
        elif latest is None:
            self.fs.unlink(path)

    def _edited(self, old: Entry) -> None:
        self.warnings.append(RunWarning(WarningCode.LATEST_EDITED, old.path,
                                        f"Latest/{old.mirror_path} was changed outside Plugback; the "
                                        "version in earlier snapshots could not be kept"))

    def written_paths(self, entry: Entry) -> list:
        return self._latest_paths(entry)

    def place_dir(self, mirror: str) -> None:
        """A new folder in ``Latest/``."""
        p = self.layout.latest_name(mirror, writing=True)
        if self.fs.make_dir(p):
            return
        if os.path.islink(long_path(p)) or not os.path.isdir(long_path(p)):
            # Not in the newest snapshot as a file (that was displaced before): an
            # interrupted run's work, whose content is in objects/ or nowhere needed.
            self.fs.unlink(p)
            self.fs.mkdir(p)

    def place_link(self, e: Entry, prev: Entry | None) -> None:
        """The symlink ``e`` in ``Latest/``; ``prev``: the parent snapshot's (None if new)."""
        p = self.layout.latest_name(e.mirror_path, writing=True)
        if prev is not None and os.path.islink(long_path(p)):
            try:
                if os.readlink(long_path(p)) == e.target:
                    return
            except OSError:
                pass
        if os.path.lexists(long_path(p)):
            self.fs.unlink(p)
        assert e.target is not None   # a symlink's entry has its target (scan, parse_entry)
        self.fs.symlink(e.target, p)

    def remove_dir(self, old: Entry) -> None:
        """Remove the folder ``old`` from ``Latest/`` (its contents went first), unless it holds
        what Plugback did not put there (a warning then)."""
        p = self.layout.latest_file(old.mirror_path, writing=True)
        self.layout.forget_folders()   # a symlink could take its place: prove it again
        if not self.fs.remove_dir(p):
            self.warnings.append(RunWarning(WarningCode.LATEST_FOREIGN, f"Latest/{old.mirror_path}",
                                            "holds files Plugback did not put there; left in place"))

    def set_aside_latest(self) -> None:
        """Empty ``Latest/`` into ``objects/``, each file under the hash of what it really holds.

        For when the newest manifest is damaged: nobody can say what ``Latest/``
        holds, so every file is kept where older snapshots' lookups find it.
        ``os.walk`` does not follow symlinks below ``Latest/``, and the run proved
        ``Latest/`` itself real (SetLayout.check_contained).
        """
        # (Windows: a prefixed top, so folders below it past 248 characters are walked too)
        for folder, dirs, files in os.walk(long_path(self.layout.latest, force=True), topdown=False):
            for name in files:
                p = Path(folder) / name
                if not _is_file(p):
                    self.fs.unlink(p)   # a symlink, FIFO or device: never followed or opened
                    continue
                obj = self.layout.object(self._set_aside_digest(p))
                if os.path.exists(long_path(obj)):
                    self.fs.unlink(p)
                else:
                    self.object_dir(obj.parent)
                    self.fs.replace(p, obj)
            for name in dirs:
                d = Path(folder) / name
                if os.path.islink(long_path(d)):
                    self.fs.unlink(d)
                else:
                    self.fs.remove_dir(d)

    def _set_aside_digest(self, p: Path) -> str:
        """The SHA-256 of ``p`` (a regular file in ``Latest/``); in a format-2 set a big file's chunks
        go to ``objects/`` first, as lists may name its place for them (core/engine/chunks.py)."""
        if self.bset.chunked and chunkstore.big_enough(os.lstat(long_path(p)).st_size):
            return chunkstore.ChunkWriter(self.bset, self.object_dir).spill([p])
        digest = hashlib.sha256()
        with open(os.open(p, READ_FLAGS | _NOFOLLOW | _NONBLOCK), "rb", buffering=0) as f:
            for block in iter(lambda: f.read(COPY_BLOCK), b""):
                digest.update(block)
        return digest.hexdigest()


def _stored_field(size: int, stored: int) -> int:
    from core.engine import crypto

    return crypto.stored_field(size, stored)


class EncryptedStore(_Store):
    """All content encrypted in ``objects/<keyed name>``; nothing in the clear."""

    def __init__(self, bset: BackupSet, volume: VolumeInfo, warnings: list[RunWarning], *, rehash: bool = False):
        super().__init__(bset, volume, warnings, rehash=rehash)
        assert bset.keys is not None   # an encrypted set, opened with its keys
        self.keys = bset.keys
        # Objects known to be whole: named by a committed manifest or a checkpointed journal
        # entry (the caller says which), or written by this run. Any other object may be
        # half-written by a crash or a pulled drive, so it is not reused. (Kept as 64-bit
        # keys, flat at millions of objects: two names share one with odds of 2**-64.)
        self.trusted = CompactSet()
        self._objects = f"{self.layout.objects}{os.sep}"
        # Small files are sealed whole (one file in tmp/, never split) where a file of
        # WHOLE_BYTES plus its header, tag and zstd's worst case fits the volume.
        self._whole = volume.max_file_size is None or volume.max_file_size >= 2 * WHOLE_BYTES

    def _hasher(self):
        return self.keys.object_hasher()   # the plain SHA-256 and the keyed name in one pass

    def seals_whole(self, size: int) -> bool:
        """Whether a file of ``size`` bytes is read whole and sealed in one call (also by sealpool's workers)."""
        return self._whole and 0 <= size < WHOLE_BYTES

    @property
    def tmp_dir(self) -> str:
        return self._tmp

    def adopt(self, sealed) -> Copied | None:
        """The copy a sealpool worker made (``sealpool.Sealed``), or None: copy the file here (the
        worker wrote nothing since it held the content, and no trusted object holds it)."""
        tmp, sha, obj, size, changed, written = sealed
        copied = Copied(sha, size, obj, [], changed)
        if tmp is None:
            return copied if obj in self.trusted and _is_file(self._object_paths(obj, 0)[0]) else None
        if not tmp.startswith(self._tmp + os.sep):
            raise ValueError(f"not a name in tmp/: {tmp!r}")
        copied.tmp_paths.append(tmp)
        copied.stored = _stored_field(size, written)
        return copied

    def copy_in(self, se, *, fresh: bool = False, fd: int = -1, dest: str | None = None) -> Copied:
        """As :meth:`_Store.copy_in` (``dest``: plain sets only); a small file is read whole first and sealed in one call, and
        not written at all (no ``tmp_paths``) when a trusted object holds its content already."""
        if not self.seals_whole(se.size):
            return super().copy_in(se, fd=fd)
        data, changed = read_whole(se.abspath, se.size, se.mtime_ns, fd, se.ino, se.dev)
        hasher = self._hasher()
        hasher.update(data)
        copied = Copied(hasher.sha256_hexdigest(), len(data), hasher.hexdigest(), [], changed)
        if not fresh and copied.obj in self.trusted and not self.rehash and _is_file(self._object_paths(copied.obj, 0)[0]):
            return copied   # nothing to write: place() keeps the object there
        from core.engine import crypto

        blob = crypto.seal_whole(self.keys, data)
        tmp = tmp_name(self._tmp, ".part")
        fd = self.fs.create(tmp)
        try:
            try:
                self.fs.write_fd(fd, blob)
            finally:
                self.fs.finish_fd(fd)   # (closes it either way)
        except BaseException:
            self.fs.unlink(tmp)
            raise
        copied.tmp_paths.append(tmp)
        copied.stored = _stored_field(copied.size, len(blob))
        return copied

    def _sink(self, out: SplitWriter):
        from core.engine import crypto

        return crypto.EncryptingWriter(out, self.keys)

    def _copied(self, hasher, size: int, paths: list[str], changed: bool, sink) -> Copied:
        copied = Copied(hasher.sha256_hexdigest(), size, hasher.hexdigest(), paths, changed)
        copied.stored = _stored_field(size, sink.ciphertext_bytes)
        return copied

    def _times(self, se) -> tuple[int | None, int | None]:
        return None, None   # an object's time and mode would only leak information

    def _object_paths(self, name: str | None, parts: int) -> list:
        """Where the object ``name`` is stored: its parts, or (most) one path as a plain string (a
        ``Path`` per object cost more than its rename), with ``SetLayout.object``'s name check."""
        assert name is not None   # every file of an encrypted set has one (parse_entry, _copied)
        if parts:
            return [self.layout.object_part(name, i) for i in range(1, parts + 1)]
        if not _OBJECT_NAME.match(name):
            raise ValueError(f"not an object name: {name!r}")
        return [f"{self._objects}{name[:2]}{os.sep}{name}"]

    def has(self, entry: Entry) -> bool:
        return entry.obj in self.trusted and _is_file(self._object_paths(entry.obj, entry.parts)[0])

    def place(self, copied: Copied, entry: Entry, old: Entry | None) -> bool:
        """Store ``copied`` unless a trusted object has it; an untrusted one is replaced (and the
        caller reads the new one back). True if written."""
        paths = self._object_paths(copied.obj, entry.parts)
        if not copied.tmp_paths or (copied.obj in self.trusted and not self.rehash and _is_file(paths[0])):
            self.discard(copied)   # identical content is stored once
            # The entry records the bytes of the object that stays: the same as the copy's unless
            # another zstd version compressed it.
            held = sum(_size(p) for p in paths)
            entry.stored = _stored_field(entry.size, held) if held > 0 else copied.stored
            return False
        self.object_dir(os.path.dirname(paths[0]))
        # Parts go in last-first: the first part's presence means the object is whole.
        for tmp, dest in reversed(list(zip(copied.tmp_paths, paths, strict=True))):
            self.fs.replace(tmp, dest)
        self.trusted.add(copied.obj)
        entry.stored = copied.stored
        return True

    def displace(self, old: Entry) -> None:
        """Nothing: objects stay until no snapshot names them (prune)."""

    def written_paths(self, entry: Entry) -> list:
        return self._object_paths(entry.obj, entry.parts)
