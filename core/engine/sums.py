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
import tempfile
from typing import Iterable

from core.engine.atomic import write_atomic
from core.engine.manifest import FILE, Entry, Manifest
from core.engine.manifest_io import READ_BLOCK, Spool

# A file's line as this version's ManifestWriter writes it (core/engine/splice.py: spliced blocks).
_FILE_LINE = re.compile(rb'"path":"([^"\n]*)","type":"f","mtime_ns":-?\d+,"mode":\d+,"size":\d+,'
                        rb'"sha256":"([0-9a-f]{64})"([^\n]*)')
_FILE_KEY = b'","type":"f"'


def sums_line(sha256: str, mirror_path: str) -> bytes:
    name = os.fsencode(mirror_path)
    if b"\\" in name or b"\n" in name:
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
        return b"\\" + sha256.encode() + b"  " + name + b"\n"
    return sha256.encode() + b"  " + name + b"\n"


class LatestSums:
    """``Latest.sha256`` built entry by entry (the newest snapshot's, in manifest order) and
    spooled, so memory stays flat; :meth:`commit` writes it only when it changed."""

    def __init__(self):
        self._spool = Spool("plugback-sums-")
        self._digest = hashlib.sha256()
        self._size = 0
        self.old: OldSums | None = None   # the parent's, proven: spliced blocks take their lines
        self.proven: str | None = None    # the hash of the Latest.sha256 on the drive, proven

    @property
    def sha256(self) -> str:
        """The hash of everything added (what :meth:`commit` leaves in ``Latest.sha256``)."""
        return self._digest.hexdigest()

    def add(self, e: Entry) -> None:
        if e.type == FILE and not e.parts and e.sha256:   # a checked file entry always has one
            line = sums_line(e.sha256, e.mirror_path)
            self._digest.update(line)
            self._size += len(line)
            self._spool.add(line[:-1])

    def add_block(self, block: bytes, skip: int = 0, files: int = 0) -> None:
        """The lines of the files in ``block``: whole manifest lines this computer wrote (a splice);
        taken from the parent's ``Latest.sha256`` when it is proven (:attr:`old`): the next
        ``files`` lines there, after ``skip`` lines of the parent's files that were not spliced."""
        text = self.old.take(skip, files) if self.old is not None else None
        if text is not None and not _ends_match(text, block):
            text = None   # (a safeguard: the two files must be in step)
        if text is None:
            if self.old is not None:   # (not the parent's after all: never again this run)
                self.old.close()
                self.old = None
            text = _lines_of(block)
        self._digest.update(text)
        self._size += len(text)
        self._spool.add_block(text)

    def commit(self, bset) -> None:
        try:
            new = self._digest.hexdigest()
            if self.proven is not None:   # the file's hash is known: no need to read it all again
                changed = new != self.proven
            else:
                changed = not _holds(bset.layout.latest_sums, self._size, new)
            if changed:
                write_atomic(bset.fs, bset.layout.tmp, bset.layout.latest_sums, self._spool.blocks())
        finally:
            self._spool.close()
            if self.old is not None:
                self.old.close()


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


def _ends_match(text: bytes, block: bytes) -> bool:
    """Whether ``text`` (lines taken from the parent's Latest.sha256) starts and ends with the lines
    of ``block``'s first and last file entries (manifest lines) that have one."""
    first = last = b""
    at = block.find(_FILE_KEY)
    while at >= 0 and not first:
        start, end = block.rfind(b"\n", 0, at) + 1, block.find(b"\n", at) + 1
        first, at = _lines_of(block[start:end]), block.find(_FILE_KEY, end)
    at = block.rfind(_FILE_KEY)
    while at >= 0 and not last:
        start, end = block.rfind(b"\n", 0, at) + 1, block.find(b"\n", at) + 1
        last, at = _lines_of(block[start:end]), block.rfind(_FILE_KEY, 0, start)
    return text.startswith(first) and text.endswith(last) and (bool(text) == bool(first))


class OldSums:
    """The parent snapshot's ``Latest.sha256`` in a local temporary file, proven to be the one this
    computer wrote for it (core/engine/trust.py), read forward a run of lines at a time."""

    def __init__(self, file):
        self._file = file
        self._buf, self._pos, self._mark = b"", 0, 0   # the buffer keeps what lies from _mark on
        self._ahead = 0     # whole lines in the buffer from _pos on
        self._width = 100   # bytes a line, about (to guess where the n-th line ends)

    @classmethod
    def read(cls, path, expected: str) -> "OldSums | None":
        """A local copy of ``path`` (a drive's Latest.sha256), if its SHA-256 is ``expected``."""
        if not _regular(path):
            return None
        copy = tempfile.TemporaryFile(prefix="plugback-oldsums-")
        digest = hashlib.sha256()
        try:
            with open(os.open(path, _READ_FLAGS), "rb") as f:
                for block in iter(lambda: f.read(READ_BLOCK), b""):
                    digest.update(block)
                    copy.write(block)
        except OSError:
            copy.close()
            return None
        if digest.hexdigest() != expected:
            copy.close()
            return None
        copy.seek(0)
        return cls(copy)

    def take(self, skip: int, count: int) -> bytes | None:
        """The ``count`` lines after the next ``skip`` (None if there are not that many)."""
        self._mark = self._pos
        if not self._forward(skip):
            return None
        self._mark = self._pos
        if not self._forward(count):
            return None
        return self._buf[self._mark:self._pos]

    def _forward(self, n: int) -> bool:
        """Move ``n`` lines on, reading more as needed (False: the file ended first)."""
        if n <= 0:
            return True
        while self._ahead < n:
            more = self._file.read(max(READ_BLOCK, (n - self._ahead) * self._width))
            if not more:
                return False
            cut = self._mark   # (what lies before the mark is dropped)
            self._buf, self._pos, self._mark = self._buf[cut:] + more, self._pos - cut, 0
            self._ahead += more.count(b"\n")
        end = _after_lines(self._buf, self._pos, n, self._width)
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


def _after_lines(buf: bytes, pos: int, n: int, width: int) -> int:
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


_READ_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
               | getattr(os, "O_BINARY", 0))


def _regular(path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


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
