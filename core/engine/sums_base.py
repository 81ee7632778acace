"""``Latest.sha256`` changed where it changed (issue #12): a journal backup of 1,000,000 files
with 10 changed used to read the file whole (97 MB) and write it whole again.

What this computer left in ``Latest.sha256`` after a commit is remembered locally
(core/engine/trust.py) as a :class:`SumsState`: the file's identity (size, mtime, inode)
and where every :data:`STRIDE`-th line starts. The next run on that snapshot, if the file
on the drive still has that identity, never reads it whole: it knows, from the run's
splices (core/engine/splice.py), which of the parent's lines stay as they are and which
were taken one by one, and

* **patches** the file in place when every taken run of lines has the same names as
  before (files changed, none added, removed or renamed: the common case): it reads those
  few lines back (checking their names) and writes the changed hashes over the old ones,
  same length, then fsyncs. A crash in between leaves the journal on the drive, and the
  next run rewrites the file whole from the committed manifest (``journal.resume``);
* else **rewrites** it: the old file's kept runs of lines copied as they are, the new
  lines between them, through ``tmp/`` and a rename as before.

The old file is trusted by its identity here, not by a hash of its bytes (reading it
whole is what this avoids): another program that edits it in place within the same clock
tick, keeping its size, or resets its mtime, goes unseen, and its lines stay wrong until a
full scan's run rewrites the file. Nothing reads ``Latest.sha256`` but people checking
``Latest/`` with ``sha256sum -c`` (restore and verify use the manifests), and a line is
only ever copied or overwritten at a line start the record names, never followed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Iterable, Iterator, cast

STRIDE = 4096            # lines between two remembered line starts
MAX_PATCH_LINES = 65536  # taken lines a patch reads back and compares at most (else: a rewrite)
_READ = 1 << 20


class Short(Exception):
    """The old file ended before the lines the run's splices named (it is not the one recorded)."""


@dataclass
class SumsState:
    """What this computer left in ``Latest.sha256``: its identity and line starts (see the module)."""

    size: int
    mtime_ns: int
    ino: int
    lines: int
    index: list[int] = field(default_factory=list)   # byte offset of line k * STRIDE

    def to_json(self) -> dict:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "ino": self.ino, "lines": self.lines,
                "index": self.index}

    @classmethod
    def parse(cls, d) -> "SumsState | None":
        """The record's value, checked (None: not one this version wrote)."""
        if not isinstance(d, dict):
            return None
        values, index = [d.get(k) for k in ("size", "mtime_ns", "ino", "lines")], d.get("index")
        if not all(type(v) is int and v >= 0 for v in values) or not isinstance(index, list):
            return None
        size, mtime_ns, ino, lines = cast("list[int]", values)
        if len(index) != -(-lines // STRIDE) or not all(type(v) is int for v in index):
            return None
        if index and (index[0] != 0 or any(b <= a for a, b in zip(index, index[1:], strict=False)) or index[-1] >= size):
            return None
        return cls(size, mtime_ns, ino, lines, index)

    @classmethod
    def of(cls, path, lines: int, index: list[int]) -> "SumsState | None":
        """The state of the file just written (or left as it was) at ``path``."""
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, lines, list(index))

    def matches(self, st: os.stat_result) -> bool:
        return (stat.S_ISREG(st.st_mode) and st.st_size == self.size and st.st_mtime_ns == self.mtime_ns
                and st.st_ino == self.ino)

    def on_drive(self, path) -> bool:
        """Whether ``path`` (never followed) still is the file this state describes."""
        try:
            return self.matches(os.lstat(path))
        except OSError:
            return False


class LineIndex:
    """Counts lines and bytes of whole-line text as it is added and notes where every
    :data:`STRIDE`-th line starts."""

    def __init__(self):
        self.lines = self.size = 0
        self.index: list[int] = []

    def line(self, n: int) -> None:
        """One line of ``n`` bytes (its newline included)."""
        if self.lines % STRIDE == 0:
            self.index.append(self.size)
        self.lines += 1
        self.size += n

    def text(self, text: bytes) -> None:
        """Whole lines."""
        count = text.count(b"\n")
        mark = len(self.index) * STRIDE   # the next line number to note
        at, line = 0, self.lines
        while mark < self.lines + count:
            if mark > line:
                at = after_lines(text, at, mark - line, 100)
                line = mark
            self.index.append(self.size + at)
            mark += STRIDE
        self.lines += count
        self.size += len(text)


def after_lines(buf: bytes, pos: int, n: int, width: int) -> int:
    """Where the ``n``-th line from ``pos`` ends (``n`` > 0, and ``buf`` has that many): counted up
    to a guess of ``n * width`` bytes, then line by line to the exact place."""
    guess = min(len(buf), pos + n * width)
    seen = buf.count(b"\n", pos, guess)
    if seen >= n:
        at = guess
        for _ in range(seen - n + 1):
            at = buf.rfind(b"\n", pos, at)
        return at + 1
    at = buf.rfind(b"\n", pos, guess) + 1 if seen else pos
    for _ in range(n - seen):
        at = buf.find(b"\n", at) + 1
    return at


class OldLines:
    """The old file's lines read forward, for runs asked in line order (a patch's): one read of
    each stretch between them, a seek only to a later stride's remembered start past what was
    read. (Each run read from its stride's start cost a day of 1,000 changed files ~0.25 s of CPU:
    the same 1 MiB read and searched again per run.)"""

    def __init__(self, f, state: SumsState) -> None:
        self.f, self.state = f, state
        self.line = -1   # the line that starts at buf[at]; -1: nothing read yet
        self.buf, self.at, self.offset = b"", 0, 0   # offset: where buf[0] is in the file

    def take(self, first: int, count: int) -> tuple[int, list[bytes]]:
        """Where line ``first`` of the old file starts, and lines ``first`` to ``first + count - 1``
        (with their newlines); :class:`Short` if the file ends before them."""
        at = self.state.index[first // STRIDE]
        if self.line < 0 or first < self.line or (first // STRIDE > self.line // STRIDE
                                                  and at >= self.offset + len(self.buf)):
            self.f.seek(at)
            self.buf, self.at, self.offset, self.line = b"", 0, at, first // STRIDE * STRIDE
        while self.line < first:   # (counted over a window of the lines' likely length, not to the end)
            want = first - self.line
            end = min(len(self.buf), self.at + want * 256)
            seen = self.buf.count(b"\n", self.at, end)
            if seen >= want:
                self.at, self.line = after_lines(self.buf, self.at, want, 100), first
            elif seen:
                self.at, self.line = self.buf.rfind(b"\n", self.at, end) + 1, self.line + seen
            elif (nl := self.buf.find(b"\n", self.at)) >= 0:
                self.at, self.line = nl + 1, self.line + 1
            else:   # (the text after the last newline starts the next line: kept)
                self._more()
        start, lines = self.offset + self.at, list[bytes]()
        while len(lines) < count:
            nl = self.buf.find(b"\n", self.at)
            if nl < 0:
                self._more()
                continue
            lines.append(self.buf[self.at:nl + 1])
            self.at, self.line = nl + 1, self.line + 1
        return start, lines

    def _more(self) -> None:
        more = self.f.read(_READ)
        if not more:
            raise Short
        self.offset += self.at
        self.buf, self.at = self.buf[self.at:] + more, 0


def same_name(old: bytes, new: bytes) -> bool:
    """Whether two lines name the same file (a leading ``\\`` marks an escaped name: GNU's rule)."""
    o, n = (1 if old[:1] == b"\\" else 0), (1 if new[:1] == b"\\" else 0)
    return o == n and old[o + 64:] == new[n + 64:] and len(old) > o + 66


def patches(f, state: SumsState, ops: list[tuple[int, int, int]], new: Iterator[bytes]
            ) -> list[tuple[int, bytes]] | None:
    """``(offset, line)`` to write over the old file, when every taken run has the same names
    as before (``ops``: per splice, the new lines before it, the old lines it skips and keeps);
    None when one does not (a rewrite then)."""
    out: list[tuple[int, bytes]] = []
    line, lines = 0, OldLines(f, state)
    for count, skip, keep in ops:
        if count:
            start, old = lines.take(line, count)
            for o in old:
                n = next(new)
                if not same_name(o, n):
                    return None
                if n != o:
                    out.append((start, n))
                start += len(o)
        line += skip + keep
    return out


def rewritten(old, ops: list[tuple[int, int, int]], new: Iterator[bytes], index: LineIndex
              ) -> Iterable[bytes]:
    """The new file's text: the old file's kept runs (``old``: a sums.OldSums over it) and the new
    lines between them, noted in ``index``; :class:`Short` if the old file is too short."""
    for count, skip, keep in ops:
        while count:
            n = min(count, STRIDE)
            text = b"".join(next(new) for _ in range(n))
            count -= n
            index.text(text)
            yield text
        text = old.take(skip, keep)
        if text is None:
            raise Short
        if text:
            index.text(text)
            yield text
