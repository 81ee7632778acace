"""A full scan against a proven parent: unchanged entries' lines taken as they are (issue #11).

A backup with nothing changed records every entry exactly as the parent did. When the parent's
bytes are proven to be ones this computer wrote (core/engine/splice.py, core/engine/trust.py),
the pass need not decode each parent line, build an entry and encode it again: it writes the
line the pass *would* write for the scanned entry -- the parent's hash, mirror name, parts and
object copied, the scan's size, times, mode and inode -- and compares it with the parent's line
as bytes. Where they are equal, the line joins a run of kept lines that leaves as one
:class:`~core.engine.splice.Splice` (its ``Latest.sha256`` lines from the parent's, its
piece copied compressed when the run is a whole piece). Any other line -- changed, new, gone,
a folder or symlink with a mirror name, a Windows entry with attributes, a line an older writer
wrote differently -- is decoded and yielded as the usual ``(scan entry, parent entry)`` pair.

An equal line is exactly the unchanged case of ``backup._Run._add_file`` (``same_stat`` and the
same type) and of ``_add`` for a folder the parent has: the scan's size, mtime, inode and ctime
are in the compared bytes, so a kept line never hides a change.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii as _quoted
from typing import Iterable, Iterator

from core.engine.manifest import DIR, FILE, LINK, sort_key
from core.engine.scan import ScanEntry
from core.engine.splice import HEAD, ParentLines, Splice, encoded


def expected(se: ScanEntry) -> tuple[bytes, bytes | None] | None:
    """What an unchanged ``se``'s line must hold (``ParentLines.keep``'s ``head`` and ``rest``), or
    None where the pass must look at the parent's entry (recorded Windows attributes). An unchanged
    symlink's line is kept too: its target and lstat as the parent recorded them, it is in Latest/
    as the parent left it (backup._Run._add does not place such a link again either)."""
    if se.attrs:
        return None
    ino = b',"ino":%d,"ctime_ns":%d' % (se.ino, se.ctime_ns) if se.ino else b""
    if se.type == FILE:
        return (HEAD + encoded(se.path) + b'","type":"f","mtime_ns":%d,"mode":%d,"size":%d,"sha256":"'
                % (se.mtime_ns, se.mode, se.size), b'"' + ino)
    if se.type == DIR:   # (a folder's whole line: one with a mirror name is not kept)
        return HEAD + encoded(se.path) + b'","type":"d","mtime_ns":%d,"mode":%d' % (se.mtime_ns, se.mode) \
            + ino + b"}\n", None
    if se.type == LINK and se.target is not None:   # (a link's whole line, target included; likewise)
        return HEAD + encoded(se.path) + b'","type":"l","mtime_ns":%d,"mode":%d,"target":' % (se.mtime_ns, se.mode) \
            + _quoted(se.target).encode("ascii") + ino + b"}\n", None
    return None


def pairs(scanned: Iterable[ScanEntry], lines: ParentLines) -> Iterator[tuple | Splice]:
    """The pass's items in manifest order: ``(scan entry or None, parent entry or None)`` pairs as
    ``window.merge`` gives them, with the runs of unchanged entries as :class:`Splice` instead."""
    for se in scanned:
        want = expected(se)
        while True:
            if want is not None and lines.keep(want[0], want[1], se.path, se.size, se.type):
                if lines.block_done:
                    yield from _flushed(lines)
                break
            old = lines.entry()
            yield from _flushed(lines)   # (before any pair: the items stay in manifest order)
            if old is None:
                yield se, None
                break
            kx, ky = sort_key(se.path), sort_key(old.path)
            if kx < ky:
                yield se, None
                break
            lines.advance()
            if ky < kx:
                yield None, old   # gone: the scan's entry is compared with the next line
                continue
            yield se, old
            break
    yield from _flushed(lines)
    while (old := lines.entry()) is not None:
        lines.advance()
        yield None, old


def _flushed(lines: ParentLines) -> Iterator[Splice]:
    sp = lines.flush()
    if sp is not None:
        yield sp
