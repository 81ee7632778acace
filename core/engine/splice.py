"""A parent manifest this computer wrote, read once and spliced into the next one (issue #12).

A journal backup of 100,000 files with 10 changed copies 99.99% of the parent
snapshot's records into the new manifest. Decoding, checking and encoding each
of them again was most of the run. When the parent's bytes are proven to be ones
this computer wrote (core/engine/trust.py), they are handled as text instead:

1. :meth:`ParentCopy.read` (the run's first read, before anything is written)
   gunzips the manifest once, copies its gzip bytes to a local temporary file
   (unlinked at once), recomputes the trailer hash over the bytes it read and
   compares it with the record. Only the few things the run needs before its
   pass are picked out of the text (the named folders the parent has, mirror
   names, object names). Any mismatch: ``None``, and the run reads the parent the
   validating way (correct, only slower).
2. :class:`ParentLines` (the pass, over the local copy: the very bytes just
   proven) gives the parent's entries one at a time where the journal scan looks
   at them (parsed and checked as usual), and :meth:`ParentLines.splice` hands
   over whole runs of lines the scan reuses unchanged as one :class:`Splice`: the
   new manifest and ``Latest.sha256`` take their bytes as they are.

A plain set's parent whose local copy (core/engine/local_copy.py) is as recorded is not read
from the drive at all: step 1 unpacks only the pieces it needs, and step 2 unpacks each piece
once, or never when a splice takes it whole (``LocalParent.ahead``), copying whole pieces into
the new manifest compressed as they are (core/engine/pieces.py).

Lines are this version's writer's (``ManifestWriter``: compact JSON, ASCII, keys in
``Entry.to_dict`` order), which is what makes plain byte searches exact here: a key
such as ``","type":"d"`` can only appear where that key is (a quote inside a JSON
string is always escaped), and every entry line starts with ``{"path":"``.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _quoted  # (json.dumps' own, in C: the string quoted)
from typing import Callable, Iterable, Iterator

from core.engine.hashset import StreamNamer
from core.engine.local_copy import LocalParent, Tee
from core.engine.manifest import DIR, FILE, LINK, Entry, Manifest, parse_entry
from core.engine.manifest_io import ManifestReader, ManifestWriter
from core.engine.pieces import Piece, unpack
from core.engine.pieces import line_path as _line_path
from core.engine.store import EncryptedStore
from core.engine.sums import LatestSums
from core.engine.sums_base import SumsState
from core.engine.trust import TrustRecord
from core.errors import ManifestDamaged

HEAD = b'{"path":"'
_TYPE = b'","type":"'
_OBJ = re.compile(rb',"obj":"([0-9a-f]{64})"')
_MIRROR = b',"mirror":"'
_PARTS = b',"parts":'
_KINDS = {"files": _TYPE + b'f"', "dirs": _TYPE + b'd"'}
_KIND_OF = {FILE: "files", DIR: "dirs", LINK: "links"}


def encoded(path: str) -> bytes:
    """``path`` as a JSON string's body in a manifest line (ASCII, without the quotes)."""
    return _quoted(path)[1:-1].encode("ascii")


@dataclass
class Splice:
    """Whole lines of the parent manifest the new one takes as they are (in manifest order)."""

    block: bytes     # the lines, each ending in a newline
    first: str       # the paths of its first and last line
    last: str
    sums: int        # its block's files' lines in Latest.sha256 (files not stored split; plain sets)
    skip: int        # the parent's lines there before them that were not spliced
    piece: tuple[bytes, Piece] | None = None   # the block is a whole piece of the parent: its bytes, record
    after: list[tuple[bytes, Piece]] = field(default_factory=list)   # whole pieces after it, never unpacked
    # A full scan's splice (core/engine/fullsplice.py) knows what it holds, as scanned: its lines,
    # its files and their bytes (counted as it goes), and its folders (the pass is inside them).
    lines: int = 0
    files: int = 0
    size: int = 0
    dirs: list[str] = field(default_factory=list)

    def emit(self, writer, sums: LatestSums | None) -> None:
        """Into the new manifest (and Latest.sha256), in its place in manifest order. (Its totals
        are not counted here: ProvenParent.settle adds those of every splice at the end.)"""
        writer.add_block(self.block, self.first, self.last, self.piece)
        for comp, p in self.after:
            writer.add_block(b"", p.first, p.last, (comp, p))
        if sums is not None:
            sums.add_block(self.block, self.skip, self.sums)
            for comp, p in self.after:   # (their text only where Latest.sha256 is made from it)
                sums.add_block(unpack(comp) if sums.base is None else b"", 0, p.sums)

    @classmethod
    def of(cls, block: bytes, first: str, skip: int, plain: bool, piece: tuple[bytes, Piece] | None = None,
           after: list[tuple[bytes, Piece]] | None = None) -> "Splice":
        last = _line_path(block[block.rfind(b"\n", 0, len(block) - 1) + 1:])
        after = after or []
        if not plain:
            sums = 0
        else:
            sums = piece[1].sums if piece else block.count(_KINDS["files"]) - block.count(_PARTS)
        return cls(block, first, last, sums, skip, piece, after)


class ProvenParent:
    """One run's use of the record (core/engine/trust.py): the parent read once when proven
    (``copy``, for the pass), and the snapshot the run commits recorded."""

    def __init__(self, cache, set_id: str):
        self.trust = TrustRecord(cache, set_id)
        self.copy: ParentCopy | LocalParent | None = None
        self._lines: ParentLines | None = None
        self._plain = False
        self._tee: Tee | None = None

    def read(self, bset, parent_id: str, reuse, namer: StreamNamer, store, sums: LatestSums | None
             ) -> Manifest | None:
        """The parent's header after reading it whole into ``copy`` (or finding its local copy:
        core/engine/local_copy.py), noting what ``reuse``, ``namer``, ``store`` and ``sums``
        need; None when the parent is not proven (nothing noted then, except in ``namer``: the
        caller makes a new one)."""
        expected = self.trust.hash_of(parent_id)
        if expected is None:
            return None
        objects = store.trusted.update if isinstance(store, EncryptedStore) else None
        try:
            self.copy = self._local(bset, parent_id, reuse, namer) if objects is None else None
            if self.copy is None:
                self.copy = ParentCopy.read(bset, parent_id, expected, begin=reuse.wanted, found=reuse.found,
                                            reserve=namer.reserve, every_name=namer.every_name, objects=objects)
        except ManifestDamaged:
            self.copy = None   # the validating read names the damage
        if self.copy is None:
            reuse.restart()
            if isinstance(store, EncryptedStore):
                store.trusted.clear()
            return None
        self._plain = sums is not None
        base = self.trust.sums_of(parent_id)
        if sums is not None and base is not None and base.on_drive(bset.layout.latest_sums):
            sums.base = base
        return self.copy.header

    def _local(self, bset, parent_id: str, reuse, namer: StreamNamer) -> "LocalParent | None":
        """The parent's local copy, if it is as recorded, with what the pass needs noted."""
        rec, path = self.trust.local_of(parent_id), self.trust.local_path
        local = LocalParent.open(path, rec, bset.layout.manifest(parent_id), parent_id) \
            if rec is not None and path is not None else None
        if local is None:
            return None
        try:
            wanted = {HEAD + encoded(p) + _TYPE + b'd"': p for p in reuse.wanted(local.header)}
            for text, _, _ in local.pieces(local.holding(wanted.values())):
                _found_dirs(text, wanted, reuse.found)
            every = namer.every_name
            named = None if every else [i for i, p in enumerate(local.rec.pieces) if p.mirrors]
            if named is None or named:
                for text, _, _ in local.pieces(named):
                    _mirrors(text, namer.reserve, every)
        except BaseException:
            local.close()
            raise
        return local

    def tee(self, bset, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """The bytes of the manifest being committed, kept locally on their way (plain sets)."""
        self._tee = Tee(self.trust.local_path if bset.keys is None else None)
        return self._tee.chunks(chunks)

    def lines(self) -> "ParentLines | None":
        """The proven parent's lines for the pass (None: it was not proven)."""
        copy = self.copy
        if isinstance(copy, LocalParent):   # (pieces unpacked once, or never; whole ones copied as they are)
            self._lines = ParentLines(((t, (c, p)) for t, c, p in copy.pieces(lazy=True)), copy.name, False,
                                      self._plain, copy.close, copy.ahead)
        else:
            self._lines = copy.lines(self._plain) if copy is not None else None
        return self._lines

    def settle(self, writer, stats: dict[str, int]) -> None:
        """After the pass (every parent line spliced or taken): the spliced lines' count and totals
        to the writer and the run's statistics: the parent's own (its header's, proven), less
        those of the entries taken one by one, which a few counters follow."""
        if self._lines is None or self.copy is None:
            return
        taken, counted = self._lines.taken, self._lines.counted
        totals = {k: self.copy.header.totals[k] - taken[k] for k in ("files", "dirs", "links", "bytes")}
        writer.add_counts(self.copy.entries - taken["lines"], totals)
        for key in ("files", "bytes"):   # (less what the pass counted of a full scan's splices)
            stats[key] += totals[key] - counted[key]
            stats["done_" + key] += totals[key] - counted[key]

    def record(self, bset, snapshot_id: str, writer: ManifestWriter, sums: SumsState | None) -> None:
        """The snapshot this run committed (its manifest's hash and local copy, what it left in
        Latest.sha256) to the record."""
        local = self._tee.keep(bset.layout.manifest(snapshot_id), writer.head, writer.pieces) \
            if self._tee is not None else None
        self.trust.record(snapshot_id, writer.sha256, sums, local)

    def close(self) -> None:
        if self.copy is not None:
            self.copy.close()
            self.copy = None
        if self._tee is not None:
            self._tee.close()


class ParentCopy:
    """The parent manifest's gzip bytes in a local temporary file, proven to be what this
    computer wrote. ``header``: its header fields. Close it (the pass's lines close it)."""

    def __init__(self, file, header: Manifest, entries: int, name: str, encrypted: bool):
        self.file, self.header, self.name, self.encrypted = file, header, name, encrypted
        self.entries = entries   # (the trailer's count)

    @classmethod
    def read(cls, bset, snapshot_id: str, expected: str, *, begin: Callable[[Manifest], set[str]],
             found: Callable[[str], None], reserve: Callable[[str, str], None] | None,
             every_name: bool, objects: Callable[[list[str]], None] | None) -> "ParentCopy | None":
        """Read ``snapshot_id``'s manifest once, keeping a local copy; None unless the hash
        recomputed over the bytes read is ``expected`` (a damaged file: ``ManifestDamaged``).

        ``begin(header)`` returns the folders to look for: ``found(path)`` for each the
        parent has as a folder. ``reserve(mirror, path)`` for every entry's Latest/ name when
        ``every_name``, else for the entries with a mirror name (hashset.StreamNamer's rule).
        ``objects(names)`` gets every object name (encrypted sets).
        """
        copy = tempfile.TemporaryFile(prefix="plugback-parent-")
        try:
            with bset.open_manifest(snapshot_id, tee=copy) as reader:
                wanted = {HEAD + encoded(p) + _TYPE + b'd"': p for p in begin(reader.manifest)}
                for block in reader.raw_blocks():
                    _found_dirs(block, wanted, found)
                    if reserve is not None:
                        _mirrors(block, reserve, every_name)
                    if objects is not None:
                        objects([m.decode("ascii") for m in _OBJ.findall(block)])
                if reader.digest != expected:
                    copy.close()
                    return None
                copy.seek(0)
                return cls(copy, reader.manifest, reader.entries, reader.name, bset.keys is not None)
        except BaseException:
            copy.close()
            raise

    def lines(self, plain: bool) -> "ParentLines":
        """Its lines, from the local copy (read again without checks: these bytes were just proven)."""
        self.file.seek(0)
        reader = ManifestReader(self.file, self.name, encrypted=self.encrypted)
        return ParentLines(((b, None) for b in reader.raw_blocks(proven=True)), self.name, self.encrypted, plain,
                           reader.close)

    def close(self) -> None:
        self.file.close()


def _found_dirs(block: bytes, wanted: dict[bytes, str], found: Callable[[str], None]) -> None:
    """``found(path)`` for each folder line of ``block`` that ``wanted`` names."""
    if not wanted:
        return
    marker = _KINDS["dirs"]
    at = block.find(marker)
    while at >= 0:
        start = block.rfind(b"\n", 0, at) + 1
        path = wanted.get(block[start:at + len(marker)])
        if path is not None:
            found(path)
        at = block.find(marker, at + len(marker))


def _mirrors(block: bytes, reserve: Callable[[str, str], None], every_name: bool) -> None:
    if not every_name:
        at = block.find(_MIRROR)
        while at >= 0:
            start, end = block.rfind(b"\n", 0, at) + 1, block.find(b"\n", at)
            d = json.loads(block[start:end])
            reserve(d["mirror"], d["path"])
            at = block.find(_MIRROR, end)
        return
    for line in block[:-1].split(b"\n"):
        if _MIRROR in line:
            d = json.loads(line)
            reserve(d["mirror"], d["path"])
        else:
            path = _line_path(line)
            reserve(path, path)


KEPT, BLOCK_DONE = 1, 2   # ParentLines.keep's answers for a kept line


class ParentLines:
    """The pass's view of a :class:`ParentCopy`: ``entry()`` (the current line, parsed and
    checked), ``advance()``, and ``splice()`` for a run of lines taken unparsed.

    Iterating yields the entries (a full scan's merge). Memory: one block of text.
    """

    def __init__(self, blocks: Iterator[tuple[bytes, tuple[bytes, Piece] | None]], name: str, encrypted: bool,
                 plain: bool, close: Callable[[], None],
                 ahead: Callable[[str, str | None], list[tuple[bytes, Piece]]] = lambda prefix, stop: []):
        self._name, self._encrypted, self._plain, self.close = name, encrypted, plain, close
        self._blocks, self._ahead = blocks, ahead
        self._piece: tuple[bytes, Piece] | None = None   # the buffer's deflate bytes and record: a whole piece
        self.taken = {"lines": 0, "files": 0, "dirs": 0, "links": 0, "bytes": 0}   # not spliced
        self.counted = {"files": 0, "bytes": 0}   # spliced, and counted by the pass (a full scan's)
        self._run: Splice | None = None   # a full scan's run of kept lines: where it starts in the buffer
        self._run_at = 0
        self._buf, self._pos = b"", 0
        self._entry: Entry | None = None
        self._sums = 0   # Latest.sha256 lines of the entries taken one by one since the last splice
        self._refill()

    def _refill(self) -> None:
        if self._pos >= len(self._buf):
            (self._buf, self._piece), self._pos = next(self._blocks, (b"", None)), 0

    def entry(self) -> Entry | None:
        """The entry at the current line (None at the end)."""
        if self._entry is None and self._pos < len(self._buf):
            end = self._buf.find(b"\n", self._pos)
            try:
                d = json.loads(self._buf[self._pos:end])
            except ValueError:
                raise ManifestDamaged(path=self._name, reason="a line is not valid JSON") from None
            self._entry = parse_entry(d, self._name, encrypted=self._encrypted)
        return self._entry

    def advance(self) -> None:
        e = self.entry()
        if e is not None:
            kind = _KIND_OF[e.type]
            self.taken["lines"] += 1
            self.taken[kind] += 1
            if kind == "files":
                self.taken["bytes"] += e.size
                self._sums += not e.parts
        self._pos = self._buf.find(b"\n", self._pos) + 1
        self._entry = None
        self._refill()

    def __iter__(self) -> Iterator[Entry]:
        while (e := self.entry()) is not None:
            self.advance()
            yield e

    def splice(self, prefix: str, stop: str | None) -> Splice:
        """The lines from the current one on whose paths start with ``prefix``, up to (not
        including) the folder ``stop``'s line (at most one block); the current line must be
        one of them, and ``stop`` the first named folder after it."""
        first = self.entry()
        assert first is not None and first.path.startswith(prefix)
        buf, pos = self._buf, self._pos
        end = _run_end(buf, pos, len(buf), HEAD + encoded(prefix))
        if stop is not None:
            at = buf.find(b"\n" + HEAD + encoded(stop) + _TYPE + b'd"', pos, end)
            if at >= 0:
                end = at + 1
        whole = self._piece if pos == 0 and end == len(buf) else None
        after = self._ahead(prefix, stop) if end == len(buf) else []
        self._pos, self._entry = end, None
        self._refill()
        skip, self._sums = self._sums, 0
        return Splice.of(buf[pos:end], first.path, skip, self._plain, whole, after)

    # --- a full scan's runs of unchanged lines (core/engine/fullsplice.py) ---------------------
    def keep(self, head: bytes, rest: bytes | None, path: str, size: int, kind: str) -> int:
        """Whether the current line is what the pass would write for an unchanged entry: ``head``
        whole (a folder's line), or a file's: ``head``, its 64-character hash, ``rest``, then only
        fields the pass copies from the parent (no ``attrs``). If so (not 0) it joins the run being
        kept (``path`` its path, ``size`` its bytes, ``kind`` its type); :meth:`flush` hands the run
        over, and must be called at once when the answer is :data:`BLOCK_DONE` (the block's last line)."""
        buf, pos = self._buf, self._pos
        if not buf.startswith(head, pos):
            return 0
        if rest is None:
            end = pos + len(head) - 1
        else:
            at = pos + len(head) + 64
            end = buf.find(b"\n", at)
            if not buf.startswith(rest, at) or not _copied_tail(buf, at + len(rest), end):
                return 0
        run = self._run
        if run is None:
            run = self._run = Splice(b"", path, path, 0, 0)
            self._run_at = pos
        run.lines += 1
        if kind == FILE:
            run.files += 1
            run.size += size
        elif kind == DIR:
            run.dirs.append(path)
        self._pos, self._entry = end + 1, None
        return BLOCK_DONE if end + 1 >= len(buf) else KEPT

    def flush(self) -> Splice | None:
        """The run of kept lines as one :class:`Splice` (None if there is none), then the next block
        if this one is done."""
        run, self._run = self._run, None
        sp = None
        if run is not None:
            buf, pos = self._buf, self._pos
            whole = self._piece if self._run_at == 0 and pos == len(buf) else None
            sp = Splice.of(buf[self._run_at:pos], run.first, self._sums, self._plain, whole)
            sp.lines, sp.files, sp.size, sp.dirs = run.lines, run.files, run.size, run.dirs
            self.counted["files"] += run.files
            self.counted["bytes"] += run.size
            self._sums = 0
        self._refill()
        return sp

    def __enter__(self) -> "ParentLines":
        return self

    def __exit__(self, *_) -> None:
        self.close()


_COPIED = (b',"mirror":', b',"parts":', b',"obj":', b',"stored":')   # a file's fields after ctime_ns


def _copied_tail(buf: bytes, at: int, end: int) -> bool:
    """Whether a file line's ``buf[at:end]`` (after its ino and ctime_ns) holds only fields the pass
    takes from the parent's entry as they are (``Entry.to_dict``'s order: ``attrs`` is the scan's)."""
    if end == at + 1:
        return buf[at] == 0x7D   # "}"
    return buf.startswith(_COPIED, at) and buf.find(b'"attrs":', at, end) < 0


def _run_end(buf: bytes, lo: int, hi: int, head: bytes) -> int:
    """The first line start in ``buf[lo:hi]`` whose line does not start with ``head`` (else ``hi``).

    The line at ``lo`` does, and lines that do are one run (manifest order puts everything
    below a folder right after it), so a binary search over line starts finds the end.
    """
    while True:
        nl = buf.find(b"\n", (lo + hi) // 2, hi)
        if nl < 0 or nl + 1 >= hi:             # no line starts in the upper half: step one line
            nl = buf.find(b"\n", lo, hi)
            if nl < 0 or nl + 1 >= hi:
                return hi
            if not buf.startswith(head, nl + 1):
                return nl + 1
            lo = nl + 1
        elif buf.startswith(head, nl + 1):
            lo = nl + 1
        else:
            hi = nl + 1
