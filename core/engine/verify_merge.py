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

import json
from typing import TYPE_CHECKING, Callable, Iterator

from core.engine.manifest import FILE
from core.engine.progress import CancelToken
from core.engine.rawlines import NotProven

if TYPE_CHECKING:
    from core.engine.repo import BackupSet

Row = tuple[str, int, str, int, "str | None", str, int]   # (object name, parts, SHA-256, size, obj, path, stored)
_SHA = b'"sha256":"'      # (in a JSON line, these bytes start a key: a quote inside a string is escaped)
_SAME = ("sha256", "parts", "size", "obj", "stored")


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

    def files(self, reader, expected: str, cancel: CancelToken | None = None, digest=None) -> Iterator[Row]:
        """The rows of the older manifest ``reader`` (recorded hash ``expected``) that the newest does not
        make needless; NotProven (after the last) if either manifest's bytes are not the recorded ones.
        ``digest`` (a hashlib object) gets its entry lines, as ``rawlines.lines_digest`` hashes them."""
        with self.bset.open_manifest(self.sid) as newest:
            lines = self._lines(newest.raw_blocks())
            yield from self._rows(reader, lines, cancel, digest)
            for _ in lines:
                pass   # the newest read to its end: its trailer and hash checked
            if newest.digest != self.expected:
                self.broken = True
            if reader.digest != expected or self.broken:
                raise NotProven(reader.name)
        self.used = True

    def _rows(self, reader, newest: Iterator[bytes], cancel: CancelToken | None, digest=None) -> Iterator[Row]:
        may_hold = self.may_hold
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
