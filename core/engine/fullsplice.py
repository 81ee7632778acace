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

Where folders can be read through their descriptors (POSIX), :func:`scan_pairs` does the scan and
this comparison in one loop (:class:`_Fused`): a day of changes of the standard set is ~29,000
entries of which a few hundred changed, and building a scan entry for each only to format it
again was most of the pass's own Python (docs/architecture.md, "The day of changes, sixth pass").
"""

from __future__ import annotations

import os
import stat
import sys
from json.encoder import encode_basestring_ascii as _quoted
from typing import Iterable, Iterator

from core.engine.manifest import DIR, FILE, LINK, sort_key
from core.engine.prefetch import Prefetch
from core.engine.scan import BY_DESCRIPTOR, Excluder, ScanEntry, Source, entry_for, lstat_listing, root_entry, scan
from core.engine.splice import BLOCK_DONE, HEAD, ParentLines, Splice, encoded

_FILE = b'","type":"f","mtime_ns":%d,"mode":%d,"size":%d,"sha256":"'   # (Entry.to_dict's order)
_DIR = b'","type":"d","mtime_ns":%d,"mode":%d'
_INO = b',"ino":%d,"ctime_ns":%d'


def expected(se: ScanEntry) -> tuple[bytes, bytes | None] | None:
    """What an unchanged ``se``'s line must hold (``ParentLines.keep``'s ``head`` and ``rest``), or
    None where the pass must look at the parent's entry (recorded Windows attributes). An unchanged
    symlink's line is kept too: its target and lstat as the parent recorded them, it is in Latest/
    as the parent left it (backup._Run._add does not place such a link again either)."""
    if se.attrs:
        return None
    ino = _INO % (se.ino, se.ctime_ns) if se.ino else b""
    if se.type == FILE:
        return HEAD + encoded(se.path) + _FILE % (se.mtime_ns, se.mode, se.size), b'"' + ino
    if se.type == DIR:   # (a folder's whole line: one with a mirror name is not kept)
        return HEAD + encoded(se.path) + _DIR % (se.mtime_ns, se.mode) + ino + b"}\n", None
    if se.type == LINK and se.target is not None:   # (a link's whole line, target included; likewise)
        return HEAD + encoded(se.path) + b'","type":"l","mtime_ns":%d,"mode":%d,"target":' % (se.mtime_ns, se.mode) \
            + _quoted(se.target).encode("ascii") + ino + b"}\n", None
    return None


def pairs(scanned: Iterable[ScanEntry], lines: ParentLines) -> Iterator[tuple | Splice]:
    """The pass's items in manifest order: ``(scan entry or None, parent entry or None)`` pairs as
    ``window.merge`` gives them, with the runs of unchanged entries as :class:`Splice` instead."""
    for se in scanned:
        yield from _merged(se, expected(se), lines)
    yield from _rest(lines)


def _merged(se: ScanEntry, want: tuple[bytes, bytes | None] | None, lines: ParentLines) -> Iterator[tuple | Splice]:
    """``se`` (``want``: :func:`expected`'s for it) against the parent's lines from the current one:
    kept, or the parent's entries before it gone, then ``se`` new or paired with its parent entry."""
    while True:
        if want is not None and (kept := lines.keep(want[0], want[1], se.path, se.size, se.type)):
            if kept == BLOCK_DONE:
                yield from _flushed(lines)
            return
        old = lines.entry()
        yield from _flushed(lines)   # (before any pair: the items stay in manifest order)
        if old is None:
            yield se, None
            return
        kx, ky = sort_key(se.path), sort_key(old.path)
        if kx < ky:
            yield se, None
            return
        lines.advance()
        if ky < kx:
            yield None, old   # gone: the scan's entry is compared with the next line
            continue
        yield se, old
        return


def _rest(lines: ParentLines) -> Iterator[tuple | Splice]:
    """After the scan's last entry: the run being kept, then the parent's entries left (gone)."""
    yield from _flushed(lines)
    while (old := lines.entry()) is not None:
        lines.advance()
        yield None, old


def scan_pairs(sources: list[Source], excluder: Excluder, warnings: list, ahead: Prefetch | None,
               lines: ParentLines) -> Iterator[tuple | Splice]:
    """``pairs(scan.scan(sources, ...), lines)``, the same items, with less work per unchanged entry
    where folders are read through their descriptors (``scan.BY_DESCRIPTOR``: POSIX): :class:`_Fused`.
    Windows scans as before (its entries carry attributes to look at)."""
    if sys.platform == "win32" or not BY_DESCRIPTOR:
        return pairs(scan(sources, excluder, warnings, ahead), lines)
    return _Fused(excluder, warnings, lines).run(sources, ahead)


class _Fused:
    """The scan (core/engine/scan.py: the same entries, ``lstat``s, excludes and order) and
    :func:`pairs` in one loop. A regular file's or folder's ``lstat`` is formatted straight into the
    line an unchanged entry has (:func:`expected`'s bytes, the folder's path encoded once for all its
    entries) and compared with the parent's; only an entry whose line is not kept becomes a
    :class:`ScanEntry` (``scan.entry_for``, as the scan makes it) and goes the way of :func:`pairs`.
    A scan records no attributes here (``winattrs.recorded`` is 0 off Windows), so the bytes are
    the same. Folders are read with ``scan.lstat_listing`` (one name looked up per ``lstat``)."""

    def __init__(self, excluder: Excluder, warnings: list, lines: ParentLines):
        self.excluder, self.warnings, self.lines = excluder, warnings, lines

    def run(self, sources: list[Source], ahead: Prefetch | None) -> Iterator[tuple | Splice]:
        ordered = sorted(sources, key=lambda s: s.name)
        if ahead is None:
            ahead = Prefetch([s.path for s in ordered])
        ahead.exclude(self.excluder.excluded, self.excluder.skip_dirs)
        try:
            for src in ordered:
                se = root_entry(src)
                yield from _merged(se, expected(se), self.lines)
                yield from self._walk(src)
        finally:
            ahead.stop()
        yield from _rest(self.lines)

    def _walk(self, src: Source) -> Iterator[tuple | Splice]:
        """Everything below ``src``, depth first, names sorted (``scan._walk``'s order)."""
        top, warnings, lines = src.name, self.warnings, self.lines
        excluded, skip, keep = self.excluder.excluded, self.excluder.skip_dirs, lines.keep
        by_name = self.excluder.name_match   # (the folders above an entry are not excluded: the walk is in them)
        stack = [("", src.path, iter(lstat_listing(src.path, warnings, top=True)))]
        while stack:
            rel, folder, entries = stack[-1]
            at = f"{top}/{rel}/" if rel else f"{top}/"
            pre = HEAD + encoded(at)
            for name, st in entries:
                mode = st.st_mode
                if _ISREG(mode):
                    if by_name(name) if by_name else excluded(f"{rel}/{name}" if rel else name, False):
                        continue
                    kept = keep(pre + _quoted(name)[1:-1].encode("ascii")
                                + _FILE % (st.st_mtime_ns, mode & 0o7777, st.st_size),
                                _REST % (st.st_ino, st.st_ctime_ns) if st.st_ino else b'"', at + name, st.st_size, FILE)
                    if kept:
                        if kept == BLOCK_DONE:
                            yield from _flushed(lines)
                        continue
                crel, abspath = f"{rel}/{name}" if rel else name, os.path.join(folder, name)
                if _ISDIR(mode):
                    if (by_name(name + "/") if by_name else excluded(crel, True)) or (st.st_dev, st.st_ino) in skip:
                        continue
                    stack.append((crel, abspath, iter(lstat_listing(abspath, warnings, expect=(st.st_dev, st.st_ino)))))
                    kept = keep(pre + _quoted(name)[1:-1].encode("ascii") + _DIR % (st.st_mtime_ns, mode & 0o7777)
                                + (_INO % (st.st_ino, st.st_ctime_ns) if st.st_ino else b"") + b"}\n", None,
                                at + name, 0, DIR)
                    if kept:
                        if kept == BLOCK_DONE:
                            yield from _flushed(lines)
                        break
                se = entry_for(top, crel, abspath, st, self.excluder, warnings)
                if se is not None:
                    yield from _merged(se, expected(se), lines)
                if stack[-1][2] is not entries:
                    break   # (into the folder just listed)
            else:
                stack.pop()


_ISREG, _ISDIR = stat.S_ISREG, stat.S_ISDIR
_REST = b'","ino":%d,"ctime_ns":%d'   # (a file's line after its hash: b'"' + _INO)


def _flushed(lines: ParentLines) -> Iterator[Splice]:
    sp = lines.flush()
    if sp is not None:
        yield sp
