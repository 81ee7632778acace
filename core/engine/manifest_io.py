"""Manifests as streams: read entries one at a time, write them as they come.

The format itself (entries, header fields, every check of untrusted values)
is ``core/engine/manifest.py``'s; this module moves its bytes. Memory stays flat
in the number of entries on both sides:

* :class:`ManifestReader` gunzips a manifest's bytes as they are read (from the
  drive, or from a decrypting reader), parses a batch of lines at a time, and
  yields each entry checked (types, ranges, path rules, order). The header is
  available at once (``reader.manifest``: a :class:`Manifest` without entries);
  the trailer (entry count and SHA-256 of every byte before it) is checked when
  the last entry has been yielded. Until then an entry is well formed but the
  file may still turn out truncated or edited: a caller that acts on entries
  before the end must not commit anything on that basis until iteration ended
  without ``ManifestDamaged``.
* :class:`ManifestWriter` takes entries in manifest order, spools them
  compressed to a local temporary file (unlinked at once; the header's totals
  are known only at the end), and then streams the finished manifest's gzip
  bytes: header with totals, entries, trailer.

``encode`` / ``decode`` are the whole-manifest forms of the two (tests, small sets).
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tempfile
from typing import Iterable, Iterator, Protocol

from core.engine import deflate
from core.engine import manifest as mf
from core.engine.manifest import (
    DIR,
    FILE,
    LINK,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    EntryOrder,
    Manifest,
    _is_int,
    decode_header,
    parse_entry,
    sort_key,
)
from core.engine.manifest import Entry as Entry  # re-exported: readers and writers speak in entries
from core.engine.pieces import Piece, PieceSpool
from core.errors import ManifestDamaged, NewerFormat

READ_BLOCK = 1 << 20          # bytes read from the drive at a time
TEXT_BLOCK = 1 << 18          # text unpacked at a time: one batch of parsed lines (~1,300 entries, ~1.5 MB)
BATCH_LINES = 4096            # lines parsed per json.loads call (one call per line costs a tenth of a run)
SPOOL_BUFFER = 64 << 10       # bytes of lines a Spool collects before compressing them
MAX_LINE = 1 << 20            # no valid entry line is near this long (paths are capped at 16 K characters)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)
_STR = json.encoder.encode_basestring_ascii   # the escaper _ENCODER itself uses for strings (C)


def _text(value: str | None) -> str:
    return "null" if value is None else _STR(value)


def entry_line(e: Entry) -> bytes:
    """``e``'s manifest line with its newline: byte for byte ``_ENCODER.encode(e.to_dict())``, without
    the dict and the encoder's generic walk (a tenth of a first backup's Python time, issue #11).
    tests/core/engine/test_entry_line.py holds it to the encoder on awkward entries."""
    line = (f'{{"path":{_STR(e.path)},"type":{_STR(e.type)},"mtime_ns":{int.__repr__(e.mtime_ns)},'
            f'"mode":{int.__repr__(e.mode)}')
    if e.type == FILE:
        line += f',"size":{int.__repr__(e.size)},"sha256":{_text(e.sha256)}'
    elif e.type == LINK:
        line += f',"target":{_text(e.target)}'
    if e.ino:
        line += f',"ino":{int.__repr__(e.ino)},"ctime_ns":{int.__repr__(e.ctime_ns)}'
    if e.mirror or e.parts or e.obj or e.attrs or e.stored:
        line += _rare_fields(e)
    return (line + "}\n").encode("ascii")


def _rare_fields(e: Entry) -> str:
    """The fields most entries leave out, in ``Entry.to_dict``'s order."""
    line = f',"mirror":{_STR(e.mirror)}' if e.mirror else ""
    if e.parts:
        line += f',"parts":{int.__repr__(e.parts)}'
    if e.obj:
        line += f',"obj":{_STR(e.obj)}'
    if e.attrs:
        line += f',"attrs":{int.__repr__(e.attrs)}'
    if e.stored:
        line += f',"stored":{int.__repr__(e.stored)}'
    return line


class Readable(Protocol):
    """Where a manifest's bytes come from: a file, or a decrypting reader over one."""

    def read(self, n: int = -1, /) -> bytes: ...


class ManifestReader:
    """Streams one manifest: ``.manifest`` (header fields) at once, then its entries by iteration.

    ``stream`` yields the gzip bytes (``read(n)``); ``name`` names the file in
    errors; ``encrypted``: True requires an ``obj`` on every file entry.
    """

    def __init__(self, stream: Readable, name: str = "manifest", *, encrypted: bool | None = None):
        self._stream = stream
        self.name = name
        self._encrypted = encrypted
        self._z = deflate.decompressobj(16 + deflate.MAX_WBITS)
        self._text = 0
        self._pending = b""            # bytes after the last complete line
        self._eof = False
        self._digest = hashlib.sha256()
        self._count = 0
        self._done = False
        self.closing: object | None = None   # what close() closes (the file under a decrypting reader)
        header_line = self._first_line()
        self.manifest = self._header(header_line)

    # --- bytes -> lines ------------------------------------------------------------------
    def _damaged(self, reason: str) -> ManifestDamaged:
        return ManifestDamaged(path=self.name, reason=reason)

    def _more(self) -> bytes:
        """The next piece of text ("" at the end), refusing more than MAX_MANIFEST_TEXT in all."""
        while True:
            if self._z.unconsumed_tail:
                data = self._z.unconsumed_tail
            else:
                if self._eof:
                    return b""
                data = self._stream.read(READ_BLOCK)
                if not data:
                    self._eof = True
                    if not self._z.eof:
                        raise self._damaged("not readable as gzip: it is truncated")
                    return b""
                if self._z.eof:
                    raise self._damaged("not readable as gzip: unexpected data after its end")
            try:
                text = self._z.decompress(data, TEXT_BLOCK)
            except deflate.error as err:
                raise self._damaged(f"not readable as gzip: {err}") from None
            if self._z.unused_data:
                raise self._damaged("not readable as gzip: unexpected data after its end")
            self._text += len(text)
            if self._text > mf.MAX_MANIFEST_TEXT:   # read at run time: tests lower it
                raise self._damaged(f"it unpacks to more than {mf.MAX_MANIFEST_TEXT} bytes")
            if text:
                return text

    def _lines(self) -> list[bytes]:
        """The next complete lines (at least one), or [] at the end of the text."""
        while True:
            text = self._more()
            if not text:
                if self._pending:
                    raise self._damaged("it is truncated (its last line is incomplete)")
                return []
            buf = self._pending + text
            cut = buf.rfind(b"\n")
            if cut < 0:
                if len(buf) > MAX_LINE:
                    raise self._damaged("a line is far too long")
                self._pending = buf
                continue
            self._pending = buf[cut + 1:]
            return buf[:cut].split(b"\n")

    def _first_line(self) -> bytes:
        lines = self._lines()
        if not lines:
            raise self._damaged("it is truncated")
        first, rest = lines[0], lines[1:]
        self._queue = rest
        return first

    def _parse(self, lines: list[bytes]) -> list:
        try:
            objs = json.loads(b"[" + b",".join(lines) + b"]")
            if len(objs) != len(lines) or not all(isinstance(o, dict) for o in objs):
                raise ValueError
        except (ValueError, RecursionError):
            raise self._damaged("a line is not valid JSON") from None
        return objs

    # --- header, entries, trailer ----------------------------------------------------------
    def _header(self, line: bytes) -> Manifest:
        (header,) = self._parse([line])
        if header.get("type") != "header" or header.get("format") != MANIFEST_FORMAT:
            raise self._damaged("no header line")
        version = header.get("version")
        if not _is_int(version) or version < 1:
            raise self._damaged("its header has no valid version")
        if version > MANIFEST_VERSION:
            raise NewerFormat(path=self.name, version=version)
        self._digest.update(line + b"\n")
        return decode_header(header, self.name)

    def __iter__(self) -> Iterator[Entry]:
        if self._done:
            raise RuntimeError("a manifest stream is read once")
        self._done = True
        order = EntryOrder(self.name)
        lines, trailer = self._queue, None
        self._queue = []
        while True:
            if not lines:
                lines = self._lines()
                if not lines:
                    break
            objs = self._parse(lines)
            for line, obj in zip(lines, objs, strict=True):
                if trailer is not None:
                    raise self._damaged("it has lines after its trailer")
                if obj.get("type") == "trailer":
                    trailer = obj
                    continue
                self._digest.update(line + b"\n")
                self._count += 1
                yield order.check(parse_entry(obj, self.name, encrypted=self._encrypted, line=self._count + 1))
            lines = []
        if trailer is None:
            raise self._damaged("it is truncated (no trailer)")
        if trailer.get("sha256") != self._digest.hexdigest() or trailer.get("entries") != self._count:
            raise self._damaged("its checksum does not match its contents")

    def raw_blocks(self, *, proven: bool = False) -> Iterator[bytes]:
        """The entry lines as text blocks of whole lines (each ending in a newline), **not checked**
        entry by entry; their hash and count are checked against the trailer at the end, like
        iterating. Only for bytes to be proven ones this computer wrote (core/engine/trust.py):
        ``digest`` then holds the hash recomputed over the bytes read. ``proven``: bytes proven
        already (a local copy read again): neither hashed nor checked again."""
        if self._done:
            raise RuntimeError("a manifest stream is read once")
        self._done = True
        held = b"".join(line + b"\n" for line in self._queue) + self._pending   # after the header
        self._queue, self._pending = [], b""
        while True:
            cut = held.rfind(b"\n", 0, len(held) - 1)   # keep the last whole line: it may be the trailer
            if cut >= 0:
                block, held = held[:cut + 1], held[cut + 1:]
                if not proven:
                    self._digest.update(block)
                    self._count += block.count(b"\n")
                yield block
            elif len(held) > 2 * MAX_LINE:
                raise self._damaged("a line is far too long")
            text = self._more()
            if not text:
                break
            held += text
        if proven:
            return
        if not held.endswith(b"\n") or held.count(b"\n") != 1:
            raise self._damaged("it is truncated (no trailer)")
        (trailer,) = self._parse([held[:-1]])
        if (trailer.get("type") != "trailer" or trailer.get("sha256") != self._digest.hexdigest()
                or trailer.get("entries") != self._count):
            raise self._damaged("its checksum does not match its contents")

    @property
    def entries(self) -> int:
        """The entries read so far (all of them, once read to the end)."""
        return self._count

    @property
    def digest(self) -> str:
        """The SHA-256 of the lines read so far (all but the trailer, once read to the end)."""
        return self._digest.hexdigest()

    def close(self) -> None:
        for f in (self._stream, self.closing):
            close = getattr(f, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> "ManifestReader":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def read_all(self) -> Manifest:
        """The whole manifest, entries included (memory grows with it: small sets and tests)."""
        m = self.manifest
        m.entries = list(self)
        return m


class Spool:
    """Text lines kept compressed in a local temporary file (unlinked at once), read back in order.

    What a run must remember about each of millions of entries until its end
    (the new manifest's lines, what to read back) waits here, not in memory.
    """

    def __init__(self, prefix: str = "plugback-spool-"):
        self._file = tempfile.TemporaryFile(prefix=prefix)
        self._wbits = deflate.MAX_WBITS
        self._z = deflate.compressobj(1, self._wbits)
        self._buf: list[bytes] = []
        self._buffered = 0

    def add(self, line: bytes) -> None:
        """One line, without its newline (it must not hold one)."""
        self._buf.append(line)
        self._buffered += len(line)
        if self._buffered >= SPOOL_BUFFER:
            self._flush()

    def add_block(self, block: bytes) -> None:
        """Whole lines, each ending in a newline (a spliced block of another manifest's lines)."""
        if block:
            self._buf.append(block[:-1])
            self._buffered += len(block)
            if self._buffered >= SPOOL_BUFFER:
                self._flush()

    def _flush(self) -> None:
        if self._buf:
            self._file.write(self._z.compress(b"\n".join(self._buf) + b"\n"))
            self._buf = []
            self._buffered = 0

    def blocks(self) -> Iterator[bytes]:
        """Everything added, as blocks of whole lines (each ending in a newline); read once."""
        self._flush()
        self._file.write(self._z.flush())
        self._file.seek(0)
        z = deflate.decompressobj(self._wbits)
        pending = b""
        while True:
            data = z.unconsumed_tail or self._file.read(SPOOL_BUFFER)
            if not data:
                break
            pending += z.decompress(data, SPOOL_BUFFER)   # bounded: spooled text packs tightly
            cut = pending.rfind(b"\n")
            if cut >= 0:
                yield pending[:cut + 1]
                pending = pending[cut + 1:]
        pending += z.flush()
        if pending:
            yield pending

    def lines(self) -> Iterator[bytes]:
        """Everything added, line by line (without newlines)."""
        for block in self.blocks():
            yield from block[:-1].split(b"\n")

    def close(self) -> None:
        self._file.close()


class ManifestWriter:
    """Takes entries in manifest order; :meth:`chunks` then gives the finished manifest's gzip bytes.

    Entries wait in a local :class:`Spool` (compressed, unlinked at once, so it
    vanishes with the process) because the header, which comes first, holds
    totals known only at the end. Use as a context manager or call :meth:`close`.
    """

    def __init__(self):
        self._spool = PieceSpool()
        self._last: list[str] | None = None
        self.count = 0
        self.totals = {"files": 0, "dirs": 0, "links": 0, "bytes": 0}
        self.sha256 = ""   # the trailer's hash, once chunks() has given every byte
        self.head = 0      # then: the bytes before the entries' pieces (gzip header, header line)
        self.pieces = self._spool.pieces   # the entries' pieces (core/engine/pieces.py)

    def add(self, e: Entry) -> None:
        key = sort_key(e.path)
        if self._last is not None and key <= self._last:
            raise ValueError(f"manifest entries out of order: {e.path!r} after {'/'.join(self._last)!r}")
        self._last = key
        if e.type == FILE:
            if not e.sha256:
                raise ValueError(f"file entry without content hash: {e.path!r}")
            self.totals["files"] += 1
            self.totals["bytes"] += e.size
        elif e.type == DIR:
            self.totals["dirs"] += 1
        else:
            self.totals["links"] += 1
        self.count += 1
        self._spool.add_block(entry_line(e))

    def add_block(self, block: bytes, first: str, last: str, piece: tuple[bytes, Piece] | None = None) -> None:
        """Whole entry lines of a manifest this computer wrote (core/engine/splice.py), copied as
        they are: ``first`` and ``last`` are the paths of its first and last line; ``piece``:
        ``block`` is the whole text of that manifest's piece: its deflate bytes and record. Their number
        and totals come separately (:meth:`add_counts`), before :meth:`chunks`."""
        if self._last is not None and sort_key(first) <= self._last:
            raise ValueError(f"manifest entries out of order: {first!r} after {'/'.join(self._last)!r}")
        self._last = sort_key(last)
        if piece is not None:
            self._spool.add_piece(piece[0], block or None, piece[1])
        else:
            self._spool.add_block(block)

    def add_counts(self, count: int, totals: dict[str, int]) -> None:
        """The number of lines and the totals (:attr:`totals`' keys) of what :meth:`add_block` took."""
        self.count += count
        for k, v in totals.items():
            self.totals[k] += v

    def chunks(self, m: Manifest) -> Iterator[bytes]:
        """The manifest's gzip bytes (header from ``m``'s fields with these entries' totals)."""
        m.totals = dict(self.totals)
        header = {"type": "header", "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
                  "snapshot": m.snapshot_id, "time": m.time, "host": m.host, "job": m.job,
                  "sources": m.sources, "parent": m.parent, "totals": m.totals}
        if m.scan is not None:
            header["scan"] = m.scan
        # One gzip member, one deflate stream in pieces, each compressed on its own: the header,
        # the spooled entries' pieces as they were compressed when added (not compressed again:
        # that was a fifth of a journal backup), and the trailer (the final block).
        digest, crc, size = hashlib.sha256(), 0, 0
        for piece, text in _pieces(_ENCODER.encode(header), self._spool.deflated()):
            if not self.head:
                self.head = len(piece)
            if text is None:   # the trailer, once every byte before it is counted
                self.sha256 = digest.hexdigest()
                trailer = {"type": "trailer", "entries": self.count, "sha256": self.sha256}
                text = (_ENCODER.encode(trailer) + "\n").encode("ascii")
                crc, size = deflate.crc32(text, crc), size + len(text)
                yield _deflate(text, final=True) + struct.pack("<II", crc, size & 0xFFFFFFFF)
                return
            digest.update(text)
            crc, size = deflate.crc32(text, crc), size + len(text)
            if piece:
                yield piece

    def close(self) -> None:
        self._spool.close()

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *_) -> None:
        self.close()


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"   # deflate, no name or time, fastest


def _deflate(text: bytes, *, final: bool) -> bytes:
    """``text`` as deflate data that ends on a byte boundary (and with the final block if ``final``)."""
    z = deflate.compressobj(1, -deflate.MAX_WBITS)
    return z.compress(text) + z.flush(deflate.Z_FINISH if final else deflate.Z_SYNC_FLUSH)


def _pieces(header: str, entries: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes | None]]:
    """``(gzip bytes, text)``: the gzip header with the header line, the entries' pieces, and
    ``(b"", None)`` where the trailer goes."""
    head = (header + "\n").encode("ascii")
    yield _GZIP_HEADER + _deflate(head, final=False), head
    yield from entries
    yield b"", None


def encode(manifest: Manifest) -> bytes:
    """A whole manifest's bytes on the drive (before any encryption); its entries are sorted first."""
    with ManifestWriter() as w:
        for e in sorted(manifest.entries, key=lambda e: sort_key(e.path)):
            w.add(e)
        return b"".join(w.chunks(manifest))


def decode(data: bytes, name: str = "manifest", *, encrypted: bool | None = None) -> Manifest:
    """A whole manifest from its bytes, checked (see :class:`ManifestReader`)."""
    return ManifestReader(io.BytesIO(data), name, encrypted=encrypted).read_all()


def write_chunks(chunks: Iterable[bytes], sink) -> int:
    """Write ``chunks`` to ``sink`` (``write(bytes)``); the number of bytes written."""
    n = 0
    for c in chunks:
        sink.write(c)
        n += len(c)
    return n
