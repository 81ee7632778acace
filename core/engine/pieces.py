"""A manifest's entry lines as separately compressed deflate pieces (issue #12).

The manifest writer (core/engine/manifest_io.py) compresses the entry lines in pieces
of about :data:`PIECE_TEXT` bytes of text, each with a compressor of its own and ending
on a byte boundary (a sync flush, no final block): one gzip member whose deflate stream
any gzip reader reads as usual (docs/format.md, "Manifests"), and whose pieces can each
be unpacked alone and copied, compressed, into another manifest. A journal backup copies
the parent's pieces it keeps whole as they are (core/engine/splice.py) instead of
compressing their text again; :class:`Piece` is what a local record keeps of each
(core/engine/local_copy.py).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from typing import Iterator

from core.engine import deflate

PIECE_TEXT = 256 << 10     # text bytes per piece (a splice is at most one)
HEAD = b'{"path":"'
TYPE_KEY = b'","type":"'
MIRROR_KEY = b',"mirror":"'
FILE_KEY = b'","type":"f"'
PARTS_KEY = b',"parts":'


def line_path(line: bytes) -> str:
    """The path of one entry line this version wrote (its first key)."""
    end = line.find(TYPE_KEY)
    raw = line[len(HEAD):end]
    return raw.decode("ascii") if b"\\" not in raw else json.loads(b'"' + raw + b'"')


@dataclass
class Piece:
    """One piece: its deflate bytes' and text's lengths, its lines with a mirror name, its lines in
    ``Latest.sha256`` (files not stored split), the paths of its first and last line."""

    comp: int
    text: int
    mirrors: int
    sums: int
    first: str
    last: str

    @classmethod
    def of(cls, comp: bytes, text: bytes) -> "Piece":
        return cls(len(comp), len(text), text.count(MIRROR_KEY), text.count(FILE_KEY) - text.count(PARTS_KEY),
                   line_path(text), line_path(text[text.rfind(b"\n", 0, len(text) - 1) + 1:]))

    def to_json(self) -> list:
        return [self.comp, self.text, self.mirrors, self.sums, self.first, self.last]

    @classmethod
    def parse(cls, v) -> "Piece | None":
        if (not isinstance(v, list) or len(v) != 6 or not all(type(n) is int and n >= 0 for n in v[:4])
                or not all(isinstance(p, str) for p in v[4:]) or not v[0] or not v[1]):
            return None
        return cls(*v)


def pack(text: bytes) -> bytes:
    """``text`` as deflate data of its own that ends on a byte boundary (no final block)."""
    z = deflate.compressobj(1, -deflate.MAX_WBITS)
    return z.compress(text) + z.flush(deflate.Z_SYNC_FLUSH)


def unpack(comp: bytes) -> bytes:
    """The text of one piece (deflate.error if it is not one)."""
    return deflate.decompressobj(-deflate.MAX_WBITS).decompress(comp)


class PieceSpool:
    """Entry lines kept as pieces in a local temporary file (unlinked at once); ``pieces`` lists them."""

    def __init__(self):
        self._file = tempfile.TemporaryFile(prefix="plugback-manifest-")
        self._buf: list[bytes] = []
        self._buffered = 0
        self.pieces: list[Piece] = []

    def add(self, line: bytes) -> None:
        """One line, without its newline."""
        self.add_block(line + b"\n")

    def add_block(self, block: bytes) -> None:
        """Whole lines, each ending in a newline."""
        if block:
            self._buf.append(block)
            self._buffered += len(block)
            if self._buffered >= PIECE_TEXT:
                self._flush()

    def add_piece(self, comp: bytes, text: bytes | None, piece: Piece) -> None:
        """A piece of another manifest this computer wrote (``comp``, holding ``text`` if known,
        described by ``piece``), copied as it is; taken as text when only a little text waits
        before it (pieces stay large)."""
        if 0 < self._buffered < PIECE_TEXT // 4:
            self.add_block(text if text is not None else unpack(comp))
            return
        self._flush()
        self._file.write(comp)
        self.pieces.append(piece)

    def _flush(self) -> None:
        if self._buf:
            text = b"".join(self._buf)
            self._buf, self._buffered = [], 0
            comp = pack(text)
            self._file.write(comp)
            self.pieces.append(Piece.of(comp, text))

    def deflated(self) -> Iterator[tuple[bytes, bytes]]:
        """Every piece as ``(deflate bytes, the text they hold)``, in order; read once."""
        self._flush()
        self._file.seek(0)
        for p in self.pieces:
            comp = self._file.read(p.comp)
            yield comp, unpack(comp)

    def close(self) -> None:
        self._file.close()
