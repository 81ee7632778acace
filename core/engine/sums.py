"""``Latest.sha256``: a sha256sum-compatible list of the files in ``Latest/``.

Run ``sha256sum -c ../Latest.sha256`` inside ``Latest/`` to check the newest
backup with standard tools. Names with a backslash or a newline are escaped the
way GNU sha256sum does (a leading backslash on the line). Files stored split
(over the destination's size limit) are left out: their parts have no hash of
their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from typing import Iterable, Iterator

from core.engine.atomic import write_atomic
from core.engine.manifest import FILE, Entry, Manifest
from core.engine.manifest_io import READ_BLOCK, Spool
from core.engine.sums_base import MAX_PATCH_LINES, LineIndex, Short, SumsState, after_lines, patches, rewritten

# A file's line as this version's ManifestWriter writes it (core/engine/splice.py: spliced blocks).
_FILE_LINE = re.compile(rb'"path":"([^"\n]*)","type":"f","mtime_ns":-?\d+,"mode":\d+,"size":\d+,'
                        rb'"sha256":"([0-9a-f]{64})"([^\n]*)')
_FILE_KEY = b'","type":"f"'


def sums_line(sha256: str, mirror_path: str) -> bytes:
    """A file's line, escaped as GNU sha256sum does (checked on the text: no byte of another
    character's UTF-8 is a backslash or a newline). One encode for the whole line (issue #11)."""
    if "\\" in mirror_path or "\n" in mirror_path:
        name = os.fsencode(mirror_path).replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
        return b"\\" + sha256.encode() + b"  " + name + b"\n"
    return os.fsencode(f"{sha256}  {mirror_path}\n")


class LatestSums:
    """``Latest.sha256`` built entry by entry (the newest snapshot's, in manifest order) and
    spooled, so memory stays flat; :meth:`commit` writes it only when it changed.

    With :attr:`base` (the parent's file, still as this computer left it: core/engine/sums_base.py)
    spliced blocks are only counted, and the commit patches or rewrites the old file."""

    def __init__(self):
        self._spool = Spool("plugback-sums-")
        self._digest = hashlib.sha256()
        self._index = LineIndex()
        self.base: SumsState | None = None   # the parent's Latest.sha256 on the drive, by its record
        self._ops: list[tuple[int, int, int]] = []   # base: (new lines, old skipped, old kept) per splice
        self._new = 0
        self.state: SumsState | None = None   # what the commit left (for the record)

    def add(self, e: Entry) -> None:
        if e.type == FILE and not e.parts and e.sha256:   # a checked file entry always has one
            line = sums_line(e.sha256, e.mirror_path)
            self._digest.update(line)
            self._index.line(len(line))
            self._new += 1
            self._spool.add(line[:-1])

    def add_block(self, block: bytes, skip: int = 0, files: int = 0) -> None:
        """The lines of the files in ``block``: whole manifest lines this computer wrote (a splice):
        the next ``files`` lines of the parent's, after ``skip`` lines of the parent's files that
        were not spliced. With :attr:`base` only counted; else made from ``block``."""
        if self.base is not None:
            self._ops.append((self._new, skip, files))
            self._new = 0
            return
        text = _lines_of(block)
        self._digest.update(text)
        self._index.text(text)
        self._spool.add_block(text)

    def commit(self, bset) -> None:
        """Into ``Latest.sha256`` (after the manifest's commit: a crash before the end leaves the
        journal, and the next run rewrites the file from the manifest)."""
        path = bset.layout.latest_sums
        try:
            if self.base is not None:
                self._commit_on_base(bset)
                return
            index = self._index
            if not _holds(path, index.size, self._digest.hexdigest()):
                write_atomic(bset.fs, bset.layout.tmp, path, self._spool.blocks())
            self.state = SumsState.of(path, index.lines, index.index)
        finally:
            self._spool.close()

    def close(self) -> None:
        """Close the spool (the commit does; a failed run's close does it too)."""
        self._spool.close()

    def _commit_on_base(self, bset) -> None:
        base, path = self.base, bset.layout.latest_sums
        assert base is not None
        consumed = sum(skip + keep for _, skip, keep in self._ops)
        ops = self._ops + [(self._new, base.lines - consumed, 0)]
        if not any(keep for _, _, keep in ops):   # nothing spliced (a full scan): every line is here
            self.base = None
            return self.commit(bset)
        try:
            fd = os.open(path, _WRITE_FLAGS)
        except OSError:
            fd = -1
        if consumed > base.lines or fd < 0:
            return self._rebuild(bset)
        with open(fd, "r+b", buffering=0) as f:
            if not base.matches(os.fstat(fd)):
                f.close()
                return self._rebuild(bset)
            try:
                if self._patched(bset, f, ops):
                    return None
                f.seek(0)
                index = LineIndex()
                write_atomic(bset.fs, bset.layout.tmp, path,
                             rewritten(OldSums(f), ops, _with_newlines(self._spool.lines()), index))
            except Short:
                f.close()
                return self._rebuild(bset)
        self.state = SumsState.of(path, index.lines, index.index)
        return None

    def _patched(self, bset, f, ops: list[tuple[int, int, int]]) -> bool:
        """Whether the old file could be patched in place (and was, if anything changed)."""
        assert self.base is not None
        if any(count != skip for count, skip, _ in ops) or sum(c for c, _, _ in ops) > MAX_PATCH_LINES:
            return False
        new = list(_with_newlines(self._spool.lines()))
        todo = patches(f, self.base, ops, iter(new))
        if todo is None:
            self._spool.close()
            self._spool = Spool("plugback-sums-")   # (read once: the rewrite takes the lines kept here)
            for line in new:
                self._spool.add(line[:-1])
            return False
        for offset, line in todo:
            f.seek(offset)
            bset.fs.write(f, line)
        if todo:
            bset.fs.fsync(f)
        self.state = SumsState.of(bset.layout.latest_sums, self.base.lines, self.base.index)
        return True

    def _rebuild(self, bset) -> None:
        """The old file is not the one recorded after all: the new one from the committed manifest
        (slow, and never expected: a record and its file that disagree)."""
        sums = LatestSums()
        with bset.open_manifest(bset.newest_id()) as reader:
            for e in reader:
                sums.add(e)
        sums.commit(bset)
        self.state = sums.state


def _with_newlines(lines: Iterable[bytes]) -> Iterator[bytes]:
    return (line + b"\n" for line in lines)


def _lines_of(block: bytes) -> bytes:
    """The Latest.sha256 lines of the files in ``block`` (whole manifest lines this computer wrote)."""
    out = []
    matches = list(_FILE_LINE.finditer(block))
    if len(matches) == block.count(_FILE_KEY):
        for m in matches:
            path, sha, rest = m.groups()
            if b"\\" in path or b'"mirror":' in rest or b'"parts":' in rest:
                out.append(_sums_of(block[m.start() - 1:block.find(b"\n", m.end())]))
            else:
                out.append(sha + b"  " + path + b"\n")
    else:   # a quote in a name: line by line
        out = [_sums_of(line) for line in block[:-1].split(b"\n") if _FILE_KEY in line]
    return b"".join(out)


class OldSums:
    """The parent snapshot's ``Latest.sha256`` (an open file, as this computer left it:
    core/engine/sums_base.py), read forward a run of lines at a time."""

    def __init__(self, file):
        self._file = file
        self._buf, self._pos, self._mark = b"", 0, 0   # the buffer keeps what lies from _mark on
        self._ahead = 0     # whole lines in the buffer from _pos on
        self._width = 100   # bytes a line, about (to guess where the n-th line ends)

    def take(self, skip: int, count: int) -> bytes | None:
        """The ``count`` lines after the next ``skip`` (None if there are not that many)."""
        self._mark = self._pos
        if not self._forward(skip, keep=False):
            return None
        self._mark = self._pos
        if not self._forward(count, keep=True):
            return None
        return self._buf[self._mark:self._pos]

    def _forward(self, n: int, keep: bool) -> bool:
        """Move ``n`` lines on, reading more as needed (False: the file ended first); ``keep``:
        the buffer keeps the lines passed (else memory holds at most a few reads)."""
        if n <= 0:
            return True
        while self._ahead < n:
            if not keep and self._ahead:   # (every whole line in the buffer is passed: forget them)
                n -= self._ahead
                self._pos = self._mark = self._buf.rfind(b"\n") + 1
                self._ahead = 0
            more = self._file.read(min(max(READ_BLOCK, (n - self._ahead) * self._width), 16 * READ_BLOCK))
            if not more:
                return False
            cut = self._mark   # (what lies before the mark is dropped)
            self._buf, self._pos, self._mark = self._buf[cut:] + more, self._pos - cut, 0
            self._ahead += more.count(b"\n")
        end = after_lines(self._buf, self._pos, n, self._width)
        self._width = max(1, (end - self._pos) // n)
        self._pos, self._ahead = end, self._ahead - n
        return True

    def close(self) -> None:
        self._file.close()


def _sums_of(line: bytes) -> bytes:
    """The Latest.sha256 line of one file's manifest line (b"" for a file stored split)."""
    d = json.loads(line)
    return b"" if d.get("parts") else sums_line(d["sha256"], d.get("mirror") or d["path"])


def write_latest_sums(bset, entries: Manifest | Iterable[Entry]) -> None:
    """Rewrite ``Latest.sha256`` for the newest snapshot (a Manifest, or its entries as a stream
    in manifest order), atomically, and only if it changed (see :class:`LatestSums`)."""
    sums = LatestSums()
    for e in (entries.entries if isinstance(entries, Manifest) else entries):
        sums.add(e)
    sums.commit(bset)   # nothing changed in Latest/ (the common case): no write, no fsync


_WRITE_FLAGS = (os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                | getattr(os, "O_BINARY", 0))


def _holds(path, size: int, sha256: str) -> bool:
    """Whether the regular file ``path`` has ``size`` bytes with that SHA-256; never follows a
    symlink or opens a FIFO."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return False
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_BINARY", 0))
    except OSError:
        return False
    digest = hashlib.sha256()
    with open(fd, "rb") as f:
        for block in iter(lambda: f.read(READ_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest() == sha256
