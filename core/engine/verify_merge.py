"""An older manifest read beside the newest's lines: what the newest holds gets no row (issue #11).

``verify`` streams every manifest into a table of distinct contents, then checks each row;
a plain set's newest snapshot is checked file by file in ``Latest/``. A content an older
snapshot shares with the newest one (most of them: a day of changes touches a few files)
needs no row of its own: the ``Latest/`` checks read it, with the newest's size and SHA-256.
Before, such rows were written (~0.45 s at 100,000 files), marked as the newest's (0.15 s)
and read back only to be skipped (0.17 s).

Here an older manifest whose bytes this computer recorded writing (core/engine/trust.py) is
read as lines beside the newest's (both sorted by path), when the newest's bytes are the
recorded ones too: a line byte for byte the newest's line, or a file at the same path with
the same content (name, parts, size, obj, stored), is skipped without decoding it, unless
``objects/`` may hold its content (then it keeps its row, so the report names the same
snapshots as before). Every other line becomes a row as ``rawlines.proven_files`` makes it.

Why that is safe: a skipped line's content is a content of the newest snapshot with the same
size, whose every file the ``Latest/`` checks read and hash. That holds only if the newest
that ``Latest/`` is checked against is the one read here: both manifests must prove to be the
recorded bytes at their ends (else NotProven: the caller rolls the rows back and decodes the
older manifest in full), and ``verify`` starts over without this (:attr:`Merge.used`) when the
newest is not then read proven as the newest intact snapshot (a drive that changed it meanwhile).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Callable, Iterator

from core.engine import safeio
from core.engine.manifest import FILE, MAX_MANIFEST_BYTES
from core.engine.progress import CancelToken
from core.engine.rawlines import NotProven
from core.errors import PlugbackError

if TYPE_CHECKING:
    from core.engine.repo import BackupSet

Row = tuple[str, int, str, int, "str | None", str, int]   # (object name, parts, SHA-256, size, obj, path, stored)
_SHA = b'"sha256":"'      # (in a JSON line, these bytes start a key: a quote inside a string is escaped)
_SAME = ("sha256", "parts", "size", "obj", "stored")
KEEP_BATCH = 512          # the newest's rows handed to ``keep`` at most at once (memory flat; more only per block)


class Merge:
    """The newest snapshot ``sid`` (its recorded hash ``expected``), for reading older manifests beside it."""

    def __init__(self, bset: "BackupSet", sid: str, expected: str, may_hold: Callable[[str], bool]):
        self.bset = bset
        self.sid = sid
        self.expected = expected
        self.may_hold = may_hold
        self.used = False       # some older manifest's rows were added this way
        self.orphans = False    # a row was added whose content objects/ may not hold (the newest may)
        self.broken = False     # the newest's bytes were not the recorded ones: not read beside again
        self.totals: tuple[int, int] | None = None   # the newest's (files, bytes), once proven (files)
        self.gz = ""   # then: the SHA-256 of its file's bytes as read

    def files(self, reader, expected: str, cancel: CancelToken | None = None, digest=None,
              keep: Callable[[list[Row]], None] | None = None) -> Iterator[Row]:
        """The rows of the older manifest ``reader`` (recorded hash ``expected``) that the newest does not
        make needless; NotProven (after the last) if either manifest's bytes are not the recorded ones.
        ``digest`` (a hashlib object) gets its entry lines, as ``rawlines.lines_digest`` hashes them.
        ``keep`` gets the newest's own rows, a list at a time, as ``rawlines.proven_files`` with
        ``held`` (``may_hold``) gives them: the newest's files whose content ``objects/`` may hold;
        once proven, :attr:`totals` holds the newest's (files, bytes) from its header (the same
        proven bytes), so the newest need not be read again for them (verify._Contents.add_kept)."""
        self.totals = None
        gz = _Hashing() if keep is not None else None   # the newest's file bytes, for same_file()
        with self.bset.open_manifest(self.sid, tee=gz) as newest:
            lines = self._lines(newest.raw_blocks())
            yield from self._rows(reader, lines, cancel, digest, keep)
            for _ in lines:
                pass   # the newest read to its end: its trailer and hash checked
            if newest.digest != self.expected:
                self.broken = True
            if reader.digest != expected or self.broken:
                raise NotProven(reader.name)
            t = newest.manifest.totals
        self.used = True
        if gz is not None:
            self.totals, self.gz = (t["files"], t["bytes"]), gz.digest.hexdigest()

    def same_file(self) -> bool:
        """Whether the newest's file still holds the bytes a read of :meth:`files` with ``keep``
        proven (their SHA-256, as stored): then what was gathered is what reading it again would
        give (verify._read_each), at the cost of hashing its compressed bytes (~6 MB at 100,000 files)."""
        if not self.gz:
            return False
        digest = _Hashing()
        try:
            fd = safeio.open_regular(self.bset.layout.manifest(self.sid), root=self.bset.root)
        except (OSError, PlugbackError):
            return False   # reading it for itself names what is wrong
        with os.fdopen(fd, "rb") as f:
            while block := f.read(1 << 20):
                digest.write(block)
                if digest.size > MAX_MANIFEST_BYTES:
                    return False
        return digest.digest.hexdigest() == self.gz

    def _rows(self, reader, newest: Iterator[bytes], cancel: CancelToken | None, digest=None,
              keep: Callable[[list[Row]], None] | None = None) -> Iterator[Row]:
        may_hold = self.may_hold
        kept: list[dict] | None = [] if keep is not None else None   # the newest's lines whose content objects/ may hold
        n = next(newest, None)
        nd: dict | None = None   # n decoded
        for block in reader.raw_blocks():
            if cancel is not None:
                cancel.check()
            if digest is not None:
                digest.update(block)
            lines = block.split(b"\n")
            lines.pop()
            for line in lines:
                if line == n:   # the newest's line: its content is read in Latest/ (and its row, if any, is the newest's)
                    n, nd = next(newest, None), None
                    at = line.find(_SHA)
                    if at < 0 or not may_hold(line[at + 10:at + 74].decode()):
                        continue
                    d = json.loads(line)
                    if kept is not None:
                        kept.append(d)
                else:
                    d = json.loads(line)
                    path = d["path"]
                    key = path.split("/")
                    same = None
                    while n is not None:
                        nd = nd if nd is not None else json.loads(n)
                        if nd["path"] == path:
                            same = nd
                        elif nd["path"].split("/") > key:
                            break
                        if kept is not None and nd["type"] == FILE and may_hold(nd["sha256"]):
                            kept.append(nd)
                            if len(kept) >= KEEP_BATCH and keep is not None:   # (many newest-only lines before it)
                                keep([_row(k) for k in kept if k["type"] == FILE])
                                kept.clear()
                        n, nd = next(newest, None), None
                        if same is not None:
                            break
                    if d["type"] == FILE and same is not None and same.get("type") == FILE \
                            and all(d.get(k) == same.get(k) for k in _SAME) and not may_hold(d["sha256"]):
                        continue   # the same content at the same path (only its times changed)
                if d["type"] != FILE:
                    continue
                sha = d["sha256"]
                if not may_hold(sha):
                    self.orphans = True
                yield sha, d.get("parts") or 0, sha, d.get("size") or 0, d.get("obj"), d["path"], d.get("stored") or 0
            if keep is not None and kept:
                keep([_row(k) for k in kept if k["type"] == FILE])
                kept.clear()
        if keep is not None:
            self._keep_rest(n, newest, keep)

    def _keep_rest(self, n: bytes | None, newest: Iterator[bytes], keep: Callable[[list[Row]], None]) -> None:
        """The newest's lines after the older manifest's last: those whose content ``objects/`` may hold to ``keep``."""
        kept: list[Row] = []
        while n is not None:
            at = n.find(_SHA)
            if at >= 0 and self.may_hold(n[at + 10:at + 74].decode()) and (d := json.loads(n))["type"] == FILE:
                kept.append(_row(d))
                if len(kept) >= KEEP_BATCH:
                    keep(kept)
                    kept = []
            n = next(newest, None)
        if kept:
            keep(kept)

    def _lines(self, blocks: Iterator[bytes]) -> Iterator[bytes]:
        """The newest's lines; a newest that cannot be read to its checked end is :attr:`broken`."""
        try:
            for block in blocks:
                lines = block.split(b"\n")
                lines.pop()
                yield from lines
        except Exception:
            self.broken = True
            raise


def _row(d: dict) -> Row:
    """A file line's row, as ``rawlines.proven_files`` makes it."""
    sha = d["sha256"]
    return sha, d.get("parts") or 0, sha, d.get("size") or 0, d.get("obj"), d["path"], d.get("stored") or 0


class _Hashing:
    """A sink (``open_manifest``'s ``tee``) that keeps only the SHA-256 and the size of what it is given."""

    def __init__(self):
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.size += len(data)
