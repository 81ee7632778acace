"""A local copy of the newest manifest this computer committed to a plain set (issue #12).

A journal backup of 1,000,000 files used to read its parent manifest (62 MB of gzip,
230 MB of text) from the drive, unpack and hash it whole before its pass, then unpack
it again in the pass. The manifest it committed last is now also kept on this
computer, next to the record (core/engine/trust.py): ``<cache>/manifests/<set id>.gz``,
the very gzip bytes written to the drive, one per set (the newest snapshot's), with
what the record says of it (:class:`LocalRecord`): the SHA-256 of those bytes, the
drive file's identity (size, mtime, inode) after the commit, and its pieces
(core/engine/pieces.py: lengths and first paths).

The next run uses it instead of the drive's file when the drive's file still has that
identity and the local bytes still hash to the recorded SHA-256 (anything else: the
drive's file, read and proven as before, core/engine/splice.py ``ParentCopy``). It
then unpacks only what it needs before the pass (the header; the pieces that hold a
folder the change hint names; pieces with mirror names), and the pass unpacks each
piece once, copying those it keeps whole into the new manifest compressed as they are.
Encrypted sets keep no local copy (it would be plaintext on this computer).
"""

from __future__ import annotations

import bisect
import hashlib
import io
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from core.engine import deflate
from core.engine.manifest import Manifest, is_hex64, sort_key
from core.engine.manifest_io import _ENCODER, READ_BLOCK, ManifestReader
from core.engine.pieces import Piece, unpack
from core.errors import ManifestDamaged

_OPEN = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


@dataclass
class LocalRecord:
    """What the record keeps of the local copy (see the module)."""

    sha256: str
    size: int
    drive: list[int]     # the drive file's size, mtime_ns, inode after the commit
    head: int            # bytes before the entries' pieces
    pieces: list[Piece]

    def to_json(self) -> dict:
        return {"sha256": self.sha256, "size": self.size, "drive": self.drive, "head": self.head,
                "pieces": [p.to_json() for p in self.pieces]}

    @classmethod
    def parse(cls, d) -> "LocalRecord | None":
        if not isinstance(d, dict) or not is_hex64(d.get("sha256")):
            return None
        size, drive, head, raw = d.get("size"), d.get("drive"), d.get("head"), d.get("pieces")
        if (type(size) is not int or type(head) is not int or not isinstance(drive, list) or len(drive) != 3
                or not all(type(v) is int for v in drive) or not isinstance(raw, list)):
            return None
        pieces = [Piece.parse(v) for v in raw]
        if any(p is None for p in pieces) or head + sum(p.comp for p in pieces if p) > size:
            return None
        return cls(d["sha256"], size, drive, head, [p for p in pieces if p])


def _adds_up(rec: LocalRecord, head: bytes, header: Manifest, isize: int) -> bool:
    """Whether the pieces' lengths add up to the file's (a trailer after them) and to its text."""
    tail = rec.size - rec.head - sum(p.comp for p in rec.pieces)
    entries = header.totals["files"] + header.totals["dirs"] + header.totals["links"]
    trailer = len(_ENCODER.encode({"type": "trailer", "entries": entries, "sha256": "0" * 64})) + 1
    header_line = len(unpack(head[10:]))   # (after the gzip header)
    return 8 < tail <= 512 and (header_line + sum(p.text for p in rec.pieces) + trailer) & 0xFFFFFFFF == isize


def identity(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class Tee:
    """The manifest bytes being committed, copied to ``path`` + ``.part`` on their way to the drive;
    :meth:`keep` puts the copy in place once the commit is done."""

    def __init__(self, path: Path | None):
        self.path = path
        self._file: BinaryIO | None = None
        self._digest = hashlib.sha256()
        self._size = 0

    def chunks(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        if self.path is None:
            yield from chunks
            return
        part = self.path.with_name(self.path.name + ".part")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._file = open(os.open(part, _CREATE, 0o600), "wb")
        except OSError:
            self._file = None
        for c in chunks:
            if self._file is not None:
                self._file.write(c)
                self._digest.update(c)
                self._size += len(c)
            yield c

    def keep(self, drive_path: Path, head: int, pieces: list[Piece]) -> LocalRecord | None:
        """The copy in place, and what the record says of it (None: nothing kept)."""
        if self._file is None or self.path is None:
            return None
        try:
            self._file.close()
            self._file = None
            os.replace(self.path.with_name(self.path.name + ".part"), self.path)
            drive = identity(os.lstat(drive_path))
        except OSError:
            return None
        return LocalRecord(self._digest.hexdigest(), self._size, drive, head, list(pieces))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class LocalParent:
    """A parent manifest read from its local copy (see the module); ``header`` its header fields."""

    def __init__(self, file, rec: LocalRecord, header: Manifest, name: str, path: Path):
        self.file, self.rec, self.header, self.name, self.path = file, rec, header, name, path
        self._offsets: list[int] = []
        self._next = 0   # the next piece a lazy pieces() gives
        t = header.totals
        self.entries = t["files"] + t["dirs"] + t["links"]

    @classmethod
    def open(cls, path: Path, rec: LocalRecord, drive_path: Path, snapshot_id: str) -> "LocalParent | None":
        """The local copy, if the drive's file and the copy are as recorded (else None)."""
        try:
            st = os.lstat(drive_path)
            if not stat.S_ISREG(st.st_mode) or identity(st) != rec.drive:
                return None
            f = open(os.open(path, _OPEN), "rb")
        except OSError:
            return None
        try:
            digest, size = hashlib.sha256(), 0
            for block in iter(lambda: f.read(READ_BLOCK), b""):
                digest.update(block)
                size += len(block)
            if size != rec.size or digest.hexdigest() != rec.sha256:
                f.close()
                return None
            f.seek(0)
            head = f.read(rec.head)
            header = ManifestReader(io.BytesIO(head), drive_path.name).manifest
            f.seek(size - 4)
            isize = struct.unpack("<I", f.read(4))[0]
        except (OSError, ManifestDamaged, struct.error):
            f.close()
            return None
        if header.snapshot_id != snapshot_id or not _adds_up(rec, head, header, isize):
            f.close()
            return None
        return cls(f, rec, header, f"snapshots/{drive_path.name}", path)

    def pieces(self, only: Iterable[int] | None = None, lazy: bool = False) -> Iterator[tuple[bytes, bytes, Piece]]:
        """``(text, deflate bytes, record)`` of every piece (or of those ``only`` names, ascending;
        ``lazy``: of the pieces :meth:`ahead` did not take)."""
        offsets = [self.rec.head]
        for p in self.rec.pieces:
            offsets.append(offsets[-1] + p.comp)
        self._offsets = offsets
        todo = range(len(self.rec.pieces)) if only is None else only
        if lazy:
            todo = self._untaken()
        for i in todo:
            self.file.seek(offsets[i])
            comp = self.file.read(self.rec.pieces[i].comp)
            try:
                text = unpack(comp)
            except deflate.error:
                text = b""
            if len(text) != self.rec.pieces[i].text:   # (never expected: the bytes' hash was right)
                try:
                    os.unlink(self.path)   # the next run reads the drive's
                except OSError:
                    pass
                raise ManifestDamaged(path=str(self.path), reason="this computer's copy of it does not match "
                                      "its record; the next backup reads the drive's")
            yield text, comp, self.rec.pieces[i]

    def _untaken(self) -> Iterator[int]:
        while self._next < len(self.rec.pieces):
            self._next += 1
            yield self._next - 1

    def ahead(self, prefix: str, stop: str | None) -> list[tuple[bytes, Piece]]:
        """The next pieces (not yet given by a lazy :meth:`pieces`) whose every line's path starts
        with ``prefix`` and sorts before ``stop``: taken, as deflate bytes, never unpacked."""
        out: list[tuple[bytes, Piece]] = []
        stop_key = sort_key(stop) if stop is not None else None
        while self._next < len(self.rec.pieces):
            p = self.rec.pieces[self._next]
            if not (p.first.startswith(prefix) and p.last.startswith(prefix)) or \
                    (stop_key is not None and sort_key(p.last) >= stop_key):
                break
            self.file.seek(self._offsets[self._next])
            out.append((self.file.read(p.comp), p))
            self._next += 1
        return out

    def holding(self, paths: Iterable[str]) -> list[int]:
        """The pieces that would hold the lines of ``paths`` (ascending)."""
        firsts = [sort_key(p.first) for p in self.rec.pieces]
        return sorted({max(0, bisect.bisect_right(firsts, sort_key(p)) - 1) for p in paths} if firsts else set())

    def close(self) -> None:
        self.file.close()
