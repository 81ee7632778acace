"""Format 2: older versions of big files as content-defined chunks (issue #11), read side.

In a plain set of format 2, the content of a big file (at least :data:`CHUNK_FROM`)
that leaves ``Latest/`` is not renamed whole into ``objects/``: it is cut by
FastCDC into chunks of about 640 KiB, each stored once as ``objects/<c[:2]>/<c>``
(``c`` the chunk's SHA-256), and a *chunk list* ``objects/<s[:2]>/<s>.chunks``
(``s`` the content's SHA-256) names them in order. A 1 MiB change inside a 150 MiB
file then stores a few chunks, not the file again (docs/format.md, "Format 2").

Chunks that the file's next version in ``Latest/`` holds unchanged are not copied
into ``objects/`` at all: the list names that copy (``latest``), and a reader finds
such a chunk by cutting that file with the same parameters. What makes this safe
(core/engine/chunkstore.py keeps it true): every chunk a list names is in
``objects/`` or is a chunk of the file now at the list's ``latest`` place, at every
instant; a big file leaves ``Latest/`` only after each of its chunks that its
successor there does not hold was written to ``objects/``.

A chunk list comes from the drive: it is decoded once here (size and count limits,
hex names, sizes summing to the content's size, its own checksum) and refused whole as
damage otherwise. Every chunk read is checked against its name, and callers check the
whole content's SHA-256 as for any content.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from core.engine import safeio
from core.engine.fs import drop_cache as _drop_cache
from core.engine.layout import check_relative
from core.errors import DamagedSet, NewerFormat, PlugbackError

if TYPE_CHECKING:
    from core.engine.repo import BackupSet

KIB, MIB = 1024, 1024 * 1024
CHUNK_FROM = 16 * MIB          # a writer chunks old versions of at least this size ...
CHUNK_UPTO = 128 * 1024 * MIB  # ... and at most this (1 Mi chunks of the smallest size)
LIST_FROM = 1 * MIB            # format: no content smaller than this has a chunk list (readers skip the look)
# The cutting parameters are part of the format (a reader cuts a file in Latest/ to find chunks
# in it): FastCDC 2020 (fastcdc-rs ``v2020``, normalization level 1, the paper's gear table) with
# these sizes. Measured in docs/performance.md ("big-file-changed").
AVG_SIZE, MIN_SIZE, MAX_SIZE = 512 * KIB, 128 * KIB, 2 * MIB
CDC = f"fastcdc2020/{MIN_SIZE}/{AVG_SIZE}/{MAX_SIZE}/nc1"
LIST_FORMAT, LIST_VERSION = "plugback-chunks", 1
LIST_SUFFIX = ".chunks"
# What a reader accepts (a list is untrusted input):
MAX_CHUNK = 16 * MIB
MAX_CHUNKS = 1 << 20
MAX_LIST_BYTES = 96 * MIB      # 1 Mi lines of 64 hex digits, a space, a size and a newline
_LINE = re.compile(rb"([0-9a-f]{64}) ([1-9][0-9]{0,9})( L)?\n")
_END = re.compile(rb"end ([0-9a-f]{64})\n")
_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ChunkList:
    """A content (``sha256``, ``size``) as chunks in order: (SHA-256 hex, size) pairs; ``lean``: the
    chunks not written to ``objects/`` because the file at ``latest`` (a mirror path in ``Latest/``)
    holds them; every other chunk is in ``objects/``."""

    sha256: str
    size: int
    chunks: tuple[tuple[str, int], ...]
    latest: str | None = None
    lean: frozenset[str] = frozenset()


def encode(cl: ChunkList) -> bytes:
    """A chunk list's bytes: a JSON header line, one ``<hex> <size>`` line per chunk (``<hex> <size> L``
    for a chunk in ``lean``), and ``end <SHA-256 of every byte before this line>``."""
    head = {"format": LIST_FORMAT, "version": LIST_VERSION, "cdc": CDC, "sha256": cl.sha256,
            "size": cl.size, "count": len(cl.chunks), "latest": cl.latest}
    body = (json.dumps(head, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
    body += b"".join(f"{c} {n}{' L' if c in cl.lean else ''}\n".encode() for c, n in cl.chunks)
    return body + b"end " + hashlib.sha256(body).hexdigest().encode() + b"\n"


class ChunkListDamaged(DamagedSet):
    """A chunk list that is not what the format says (refused whole)."""

    code = "chunk_list_damaged"

    def default_message(self, path="", reason="", **_):
        return f"The backup is damaged: {path}: {reason}. The older versions stored through it cannot be read."


def decode(raw: bytes, name: str, where: str) -> ChunkList:
    """``raw``, the list of content ``name``, checked; ChunkListDamaged (naming ``where``) otherwise."""
    def bad(reason: str) -> ChunkListDamaged:
        return ChunkListDamaged(path=where, reason=reason)

    if len(raw) > MAX_LIST_BYTES:
        raise bad(f"it is larger than {MAX_LIST_BYTES} bytes")
    first = raw.find(b"\n")
    tail = raw.rfind(b"end ")
    if first < 0 or tail <= first or not _END.fullmatch(raw, tail) or \
            hashlib.sha256(raw[:tail]).hexdigest() != raw[tail + 4:-1].decode():
        raise bad("its checksum line is missing or wrong (cut short or changed)")
    try:
        head = json.loads(raw[:first])
    except (ValueError, RecursionError):
        raise bad("its first line is not valid JSON") from None
    if not isinstance(head, dict) or head.get("format") != LIST_FORMAT:
        raise bad("it is not a chunk list")
    version = _count(head.get("version"), 1 << 31)
    if version is None or version < 1:
        raise bad("its 'version' is not a version number")
    if version > LIST_VERSION or head.get("cdc") != CDC:
        raise NewerFormat(f"The chunk list {where} is of a newer format (version {version}, cutting "
                          f"{str(head.get('cdc'))[:100]!r}) than this Plugback understands. Update Plugback to "
                          "read the older versions stored through it; nothing was changed.",
                          path=where, version=version)
    size, count, latest = _count(head.get("size"), CHUNK_UPTO), _count(head.get("count"), MAX_CHUNKS), head.get("latest")
    if head.get("sha256") != name or size is None or count is None:
        raise bad("its header does not describe this content")
    if latest is not None:
        if not isinstance(latest, str) or len(latest) > 16384:
            raise bad("its 'latest' is not a path")
        try:
            check_relative(latest, "Latest")
        except PlugbackError:
            raise bad("its 'latest' points outside Latest/") from None
    chunks: list[tuple[str, int]] = []
    lean: set[str] = set()
    pos = first + 1
    for _ in range(count):
        m = _LINE.match(raw, pos)
        if m is None or m.end() > tail:
            raise bad(f"line {len(chunks) + 2} is not '<64 hex> <size>'")
        n = int(m.group(2))
        if n > MAX_CHUNK:
            raise bad(f"a chunk of {n} bytes is larger than {MAX_CHUNK}")
        chunks.append((m.group(1).decode(), n))
        if m.group(3):
            lean.add(chunks[-1][0])
        pos = m.end()
    if pos != tail:
        raise bad("it has more lines than its count says")
    if sum(n for _, n in chunks) != size:
        raise bad("its chunks' sizes do not add up to the content's size")
    if lean and latest is None:
        raise bad("it names chunks in Latest/ but no file there")
    return ChunkList(name, size, tuple(chunks), latest, frozenset(lean))


def _count(v, limit: int) -> int | None:
    """``v`` if it is an integer (not a boolean) from 0 to ``limit``, else None."""
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= limit else None


def list_path(bset: "BackupSet", name: str) -> Path:
    """``objects/<name[:2]>/<name>.chunks``."""
    p = bset.layout.object(name)
    return p.with_name(name + LIST_SUFFIX)


def label(bset: "BackupSet", p: Path) -> str:
    """A path in the set as reports name it (``objects/ab/…``)."""
    try:
        return p.relative_to(bset.root).as_posix()
    except ValueError:
        return str(p)


def load(bset: "BackupSet", name: str, path: Path | None = None) -> ChunkList | None:
    """The checked chunk list of content ``name`` (None if it has none); ChunkListDamaged if it is
    damaged (a symlink, a FIFO, too big, or not the format)."""
    path = path or list_path(bset, name)
    if not os.path.lexists(path):
        return None   # the common case (content in Latest/): one lstat, not a walk from the set's root
    where = label(bset, path)

    def damaged(path: str = "", reason: str = "", **_) -> ChunkListDamaged:
        return ChunkListDamaged(path=where, reason=reason)

    try:
        raw = safeio.read_bytes(path, MAX_LIST_BYTES, root=bset.root, error=damaged)
    except FileNotFoundError:
        return None
    return decode(raw, name, where)


def cut(blocks: Iterable) -> Iterator[tuple[str, bytes]]:
    """(SHA-256 hex, bytes) of each chunk of the stream ``blocks`` (byte blocks), in order."""
    from pyfastcdc import FastCDC

    cdc = FastCDC(AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE, normalized_chunking=1)
    for chunk in cdc.cut_stream(_BlockReader(iter(blocks))):
        data = bytes(chunk.data)
        yield hashlib.sha256(data).hexdigest(), data


class _BlockReader:
    """A ``readinto`` stream over an iterator of byte blocks (what ``cut_stream`` reads)."""

    def __init__(self, it: Iterator):
        self._it = it
        self._left = memoryview(b"")

    def readinto(self, b) -> int:
        while not self._left:
            nxt = next(self._it, None)
            if nxt is None:
                return 0
            self._left = memoryview(nxt).cast("B")
        n = min(len(b), len(self._left))
        b[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def file_blocks(paths: list[Path], root: Path | None, drop: bool = False, block: int = MIB) -> Iterator[bytes]:
    """The bytes of ``paths`` (parts in order) in blocks, each opened as a regular file below ``root``."""
    for p in paths:
        fd = safeio.open_regular(p, error=_content_error, root=root)
        try:
            if drop:
                _drop_cache(fd)
            while True:
                data = os.read(fd, block)
                if not data:
                    break
                yield data
        finally:
            os.close(fd)


def _content_error(path: str = "", reason: str = "", **_) -> DamagedSet:
    return DamagedSet(what=f"{path}: {reason}")


def is_hex(name: str) -> bool:
    return bool(_HEX.fullmatch(name))


class ChunkPaths(list):
    """Where a chunked content is: its chunks' files in ``objects/``, in order (some may be absent:
    those are in the list's ``latest`` file). What ``BackupSet.content_paths`` gives for such
    content; read it with :meth:`read` (``BackupSet.read_content`` does)."""

    def __init__(self, bset: "BackupSet", cl: ChunkList):
        super().__init__(bset.layout.object(c) for c, _ in cl.chunks)
        self.bset = bset
        self.chunk_list = cl

    def latest_file(self) -> Path | None:
        """The file in ``Latest/`` that holds the chunks not in ``objects/`` (None: the list names none)."""
        if self.chunk_list.latest is None:
            return None
        return self.bset.layout.latest_file(self.chunk_list.latest)

    def structure_problem(self) -> str | None:
        """What the quick check finds wrong (a chunk missing or of the wrong size), or None. A chunk
        the list leaves in its ``latest`` file and not in ``objects/`` counts as present when that
        file is there (reading it is a full check's work)."""
        latest = self.latest_file()
        in_latest = latest is not None and _regular_size(latest) is not None
        lean = self.chunk_list.lean
        for p, (c, n) in zip(self, self.chunk_list.chunks, strict=True):
            size = _regular_size(p)
            if size == n or (size is None and in_latest and c in lean):
                continue
            where = label(self.bset, p)
            return f"{where} is missing" if size is None else f"{where} has {size} bytes instead of {n}"
        return None

    def read(self, drop: bool = False) -> Iterator[bytes]:
        """The content, chunk by chunk, each checked against its name: DamagedSet naming the first
        chunk that is missing or wrong (in ``objects/`` and in the ``latest`` file)."""
        located: dict[str, int] | None = None
        for p, (c, n) in zip(self, self.chunk_list.chunks, strict=True):
            data, problem = self._from_objects(p, c, n, drop)
            if data is None and c in self.chunk_list.lean:
                if located is None:
                    located = self._locate_in_latest(drop)
                data = self._from_latest(located.get(c), c, n)
            if data is None:
                raise DamagedSet(what=f"{label(self.bset, p)}: {problem}")
            yield data

    def _from_objects(self, p: Path, c: str, n: int, drop: bool) -> tuple[bytes | None, str]:
        try:
            data = b"".join(file_blocks([p], self.bset.root, drop, block=MAX_CHUNK + 1))
        except FileNotFoundError:
            return None, "this piece of an older version is missing from the drive"
        except DamagedSet as err:
            return None, err.details.get("what", str(err))
        if len(data) != n or hashlib.sha256(data).hexdigest() != c:
            return None, "this piece of an older version does not match its name (changed or damaged)"
        return data, ""

    def _locate_in_latest(self, drop: bool) -> dict[str, int]:
        """Offset of each chunk of the ``latest`` file, by SHA-256 (cut as the writer cut it); the
        set's :class:`LatestCuts` keeps the last few (older versions of one file share one)."""
        latest = self.latest_file()
        if latest is None:
            return {}
        return self.bset.latest_cuts.offsets(latest, lambda: _cut_offsets(latest, self.bset.root, drop))

    def _from_latest(self, offset: int | None, c: str, n: int) -> bytes | None:
        latest = self.latest_file()
        if offset is None or latest is None:
            return None
        try:
            fd = safeio.open_regular(latest, error=_content_error, root=self.bset.root)
        except (FileNotFoundError, DamagedSet):
            return None
        try:
            data = os.pread(fd, n, offset) if hasattr(os, "pread") else _seek_read(fd, n, offset)
        finally:
            os.close(fd)
        return data if len(data) == n and hashlib.sha256(data).hexdigest() == c else None


def _cut_offsets(latest: Path, root: Path, drop: bool) -> dict[str, int]:
    found: dict[str, int] = {}
    offset = 0
    try:
        for c, data in cut(file_blocks([latest], root, drop)):
            found.setdefault(c, offset)
            offset += len(data)
    except (FileNotFoundError, DamagedSet):
        pass
    return found


class LatestCuts:
    """The chunk offsets of the last few files in ``Latest/`` that were cut to find chunks, each
    valid while the file's size, time and inode stay (reading 30 versions of a big file cuts
    the newest once, not 30 times). Thread-safe; at most :attr:`KEEP` files."""

    KEEP = 8

    def __init__(self):
        self._lock = threading.Lock()
        self._cuts: OrderedDict = OrderedDict()

    def offsets(self, path: Path, make) -> dict[str, int]:
        """``path``'s offsets, from ``make()`` unless kept for the file as it is now."""
        try:
            st = os.lstat(path)
        except OSError:
            return {}
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            found = self._cuts.get(key)
            if found is not None:
                self._cuts.move_to_end(key)
                return found
        found = make()
        with self._lock:
            self._cuts[key] = found
            while len(self._cuts) > self.KEEP:
                self._cuts.popitem(last=False)
        return found


def _seek_read(fd: int, n: int, offset: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)   # Windows has no pread
    out = b""
    while len(out) < n:
        data = os.read(fd, n - len(out))
        if not data:
            break
        out += data
    return out


def _regular_size(p: Path) -> int | None:
    try:
        st = os.lstat(p)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None
