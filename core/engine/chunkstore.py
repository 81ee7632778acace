"""Format 2, write side: a big file's old version leaves ``Latest/`` as chunks (core/engine/chunks.py).

Write order (the crash-safety proof; tests/core/engine/test_chunks.py crashes at each step):

1. The copy in ``Latest/`` is read and cut. Each chunk that is neither in ``objects/`` (a
   regular file of its size) nor among ``keep`` (the chunks of the file that takes its place
   in ``Latest/``) is written to ``tmp/`` and renamed into ``objects/``.
2. The volume is flushed; the chunks written are read back (page cache dropped) and checked
   against their names (one more write on a mismatch, then DamagedSet: the drive is failing).
3. The chunk list is written through ``tmp/``, fsynced, renamed, its folder fsynced, and read back.

Only after that may the copy in ``Latest/`` be removed or replaced (core/engine/store.py). A
crash anywhere before leaves it where the newest snapshot put it, and what was written is
unreferenced (prune removes it). Every chunk of the copy that ``keep`` does not hold is in
``objects/`` afterwards, even when its list existed already: older lists that name this place
in ``Latest/`` for their chunks (their ``latest``) stay whole when the copy goes.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Callable

from core.engine import chunks
from core.engine.atomic import tmp_name, write_atomic
from core.engine.fs import long_path
from core.engine.manifest import Entry
from core.engine.repo import BackupSet
from core.errors import DamagedSet

READ_BACK_TRIES = 2


def digests(bset: BackupSet, paths: list[Path]) -> set[str]:
    """The SHA-256 of each chunk of the file at ``paths`` (e.g. a new copy in ``tmp/``)."""
    return {c for c, _ in chunks.cut(chunks.file_blocks(paths, bset.root))}


def big_enough(size: int) -> bool:
    """Whether content of ``size`` bytes leaves ``Latest/`` as chunks (in a format-2 set)."""
    return chunks.CHUNK_FROM <= size <= chunks.CHUNK_UPTO


class ChunkWriter:
    """Stores old versions as chunks in ``bset``; ``make_dir`` makes (and proves) an ``objects/xx/``."""

    def __init__(self, bset: BackupSet, make_dir: Callable[[Path], None]):
        self.bset = bset
        self.fs = bset.fs
        self.layout = bset.layout
        self.make_dir = make_dir

    def store(self, old: Entry, paths: list[Path], keep: set[str], latest: str | None) -> bool:
        """Put the content of ``paths`` (``old``'s copy in ``Latest/``) into ``objects/`` as chunks,
        except those in ``keep``, which the file at ``latest`` (its mirror path) will hold.

        True once ``old``'s content is kept (its chunk list in place and durable; then the copy may
        go); False when the copy does not hold it and nothing does (edited outside Plugback). Either
        way every chunk of the copy not in ``keep`` is in ``objects/``, whatever the copy holds.
        """
        whole = hashlib.sha256()
        listed: list[tuple[str, int]] = []
        written: list[str] = []
        lean: set[str] = set()   # chunks only in the file at ``latest``
        for c, data in chunks.cut(chunks.file_blocks(paths, self.bset.root)):
            whole.update(data)
            listed.append((c, len(data)))
            obj = self.layout.object(c)
            if _size(obj) == len(data):
                continue
            if c in keep:
                lean.add(c)
                continue
            self.write_chunk(obj, data)
            written.append(c)
        self.fs.flush_volume(self.layout.root)   # 2: every chunk durable before the list names it
        self._read_back(written, paths)
        if whole.hexdigest() != old.sha256 or sum(n for _, n in listed) != old.size:
            # Not ``old``'s bytes: an interrupted run moved them already and put a newer copy
            # here (its chunks are safe now too), or someone edited the copy.
            return self.layout.object(old.sha256 or "").exists() or self._current_list(old.sha256 or "") is not None
        if self.layout.object(old.sha256 or "").exists():
            return True   # whole in objects/ too (a format-1 object): no list needed
        cl = chunks.ChunkList(old.sha256 or "", old.size, tuple(listed), latest if lean else None, frozenset(lean))
        # A valid list there already (an interrupted run's, or this content's earlier time in Latest/)
        # stays: each chunk it names is in objects/ or in its own ``latest`` file.
        if self._current_list(cl.sha256) is None:
            path = chunks.list_path(self.bset, cl.sha256)
            self.make_dir(path.parent)
            write_atomic(self.fs, self.layout.tmp, path, chunks.encode(cl))   # 3: durable
            if chunks.load(self.bset, cl.sha256) != cl:
                raise DamagedSet(what=f"{chunks.label(self.bset, path)}: it reads back wrong after writing")
        return True

    def spill(self, paths: list[Path]) -> str:
        """Write every chunk of the file at ``paths`` that ``objects/`` lacks (made durable); the
        file's SHA-256. Before a big file in ``Latest/`` goes without a known successor (the newest
        manifest is damaged), so that no list naming its place loses a chunk."""
        whole = hashlib.sha256()
        for c, data in chunks.cut(chunks.file_blocks(paths, self.bset.root)):
            whole.update(data)
            obj = self.layout.object(c)
            if _size(obj) != len(data):
                self.write_chunk(obj, data)
        self.fs.flush_volume(self.layout.root)
        return whole.hexdigest()

    def _current_list(self, name: str) -> chunks.ChunkList | None:
        try:
            return chunks.load(self.bset, name)
        except DamagedSet:
            return None   # replaced by a good one

    def write_chunk(self, obj: Path, data: bytes) -> None:
        """One chunk into ``objects/`` through ``tmp/`` (made durable by the volume flush after)."""
        self.make_dir(obj.parent)
        tmp = tmp_name(self.layout.tmp, ".chunk")
        f = self.fs.open_write(tmp)
        try:
            self.fs.write(f, data)
        finally:
            self.fs.close(f)
        self.fs.replace(tmp, obj)

    def _read_back(self, written: list[str], paths: list[Path]) -> None:
        """Each chunk written, read from the drive (cache dropped) and checked; a bad one is written
        once more (its bytes cut from ``paths`` again), then DamagedSet."""
        for attempt in range(READ_BACK_TRIES):
            bad = {c for c in written if not self.reads_back(c)}
            if not bad:
                return
            if attempt == READ_BACK_TRIES - 1:
                c = sorted(bad)[0]
                raise DamagedSet(what=f"{chunks.label(self.bset, self.layout.object(c))}: it reads back wrong "
                                 "after writing (the drive may be failing)")
            for c, data in chunks.cut(chunks.file_blocks(paths, self.bset.root)):
                if c in bad:
                    self.write_chunk(self.layout.object(c), data)
                    bad.discard(c)
            self.fs.flush_volume(self.layout.root)

    def reads_back(self, c: str) -> bool:
        try:
            data = b"".join(chunks.file_blocks([self.layout.object(c)], self.bset.root, drop=True))
        except (OSError, DamagedSet):
            return False
        return hashlib.sha256(data).hexdigest() == c


def _size(p: Path) -> int | None:
    """A regular file's size (never through a symlink); None for anything else."""
    try:
        st = os.lstat(long_path(p))
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None
