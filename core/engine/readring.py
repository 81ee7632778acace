"""A reader's small files read a group at a time, the group's reads submitted together (issue #11).

``readpool.Checker`` reads each file of ``Latest/`` on its own: checks, open, cache drop, one
``readv``. For a tiny file that ``readv`` is one block request, sent to the drive alone. Here the
small files of one folder (written one after another by the backup, so mostly side by side on
the drive) are taken :data:`GROUP` at a time: each is checked and opened exactly as
``Checker`` does (``lstat``, ``O_NOFOLLOW | O_NONBLOCK``, ``fstat``: ``_Folder.open_file``) and its
page cache dropped; only then are all their reads handed to the kernel in one system call
(:mod:`core.engine.uring`), which plugs them together: adjacent ones merge into one request,
and the device is told once for the group. Then each file's bytes are hashed and compared, as
``Checker._one`` does, with the same words for every problem.

Every byte still comes from the drive: each file's cache is dropped before any read of the group
is submitted. A file larger than :data:`LARGEST`, a split file, a quick verify's size check, and
every file where io_uring cannot be had, go through ``Checker._one`` unchanged.
"""

from __future__ import annotations

import ctypes
import hashlib
import os

from core.engine import readpool as rp
from core.engine.uring import Ring, open_ring

GROUP = 32           # files read together (one folder's, in the batch's order)
ROOM = 1 << 18       # bytes of one group's reads (each file's size + 1: a file grown since its fstat shows)
LARGEST = 64 << 10   # larger files are read alone (Checker._one): their reads are large already
_ABANDONED: list = []   # buffers of a ring that failed (kept: a read ended with the ring may not have been waited for)


class GroupReader:
    """One ring and its buffer, for one ``Checker`` (one thread)."""

    def __init__(self, ring: Ring):
        self.ring = ring
        self.room = bytearray(ROOM)
        self._pin = ctypes.c_char.from_buffer(self.room)
        self.base = ctypes.addressof(self._pin)
        self.view = memoryview(self.room)

    @classmethod
    def start(cls) -> "GroupReader | None":
        ring = open_ring(GROUP)
        return cls(ring) if ring is not None else None

    def check(self, checker: "rp.Checker", items: list[rp.Item]) -> list[rp.Problem]:
        """``Checker.check``: the problems of ``items``, (index, reason) in order."""
        problems: list[rp.Problem] = []
        group: list[tuple[int, rp.Item]] = []
        folder, room = "", 0
        for i, item in enumerate(items):
            mirror, parts, size, sha = item
            if parts or sha is None or size > LARGEST or self.ring.fd < 0:
                if group:
                    self._group(checker, group, problems)
                    group = []
                try:
                    checker._one(*item)
                except rp._Bad as bad:
                    problems.append((i, str(bad)))
                continue
            here = mirror.rpartition("/")[0]
            if group and (len(group) >= GROUP or here != folder or room + size + 1 > ROOM):
                self._group(checker, group, problems)
                group = []
            if not group:
                folder, room = here, 0
            group.append((i, item))
            room += size + 1
        if group:
            self._group(checker, group, problems)
        problems.sort()
        return problems

    def _group(self, checker: "rp.Checker", group: list[tuple[int, rp.Item]], problems: list[rp.Problem]) -> None:
        """The files of ``group`` (one folder's): all opened and dropped from the cache, then read together."""
        folder = group[0][1][0].rpartition("/")[0]
        if folder != checker.folder.name:
            checker.folder.enter(folder)
        opened: list[tuple[int, int, int, int, str, int]] = []   # (index, fd, stated, size, sha, its read or -1)
        reqs: list[tuple[int, int, int]] = []
        at = 0
        try:
            for i, (mirror, _parts, size, sha) in group:
                try:
                    fd, stated = checker.folder.open_file(mirror.rpartition("/")[2])
                except rp._Bad as bad:
                    problems.append((i, str(bad)))
                    continue
                fits = at + stated + 1 <= ROOM
                opened.append((i, fd, stated, size, sha or "", len(reqs) if fits else -1))
                rp.drop_cached(fd)   # (before any read of the group is submitted)
                if fits:
                    reqs.append((fd, self.base + at, stated + 1))
                    at += stated + 1
            results = self._read(reqs)
            for i, fd, stated, size, sha, k in opened:
                why = self._hashed(checker, fd, stated, size, sha, reqs[k][1] - self.base if k >= 0 else -1,
                                   results[k] if k >= 0 and results is not None else None)
                if why is not None:
                    problems.append((i, why))
        finally:
            for _i, fd, *_ in opened:
                os.close(fd)

    def _read(self, reqs: list[tuple[int, int, int]]) -> list[int] | None:
        """The reads' results; None if the ring failed (each file is then read alone)."""
        if not reqs:
            return []
        try:
            return self.ring.read(reqs)
        except OSError:
            _ABANDONED.append(self.room)
            return None
        except BaseException:
            # (a KeyboardInterrupt or another exception between two waits: reads may still be in
            # flight into this buffer; it is kept for the life of the process, the ring ended)
            _ABANDONED.append(self.room)
            self.ring.close()
            raise

    def _hashed(self, checker: "rp.Checker", fd: int, stated: int, size: int, sha: str, at: int,
                got: int | None) -> str | None:
        """What is wrong with the file read into ``room[at:]`` (``got``: its read's result; None: read it now)."""
        digest = hashlib.sha256()
        try:
            if got is None:   # read alone (no room, or no ring): its cache was dropped already
                got = rp._read(fd, digest, checker.buf, stated, drop=False)
            elif got < 0:
                raise OSError(-got, os.strerror(-got))
            else:
                digest.update(self.view[at:at + got])
                if got > stated:   # it grew since its fstat: the rest, as Checker._one would read it
                    os.lseek(fd, got, os.SEEK_SET)
                    got += rp._read(fd, digest, checker.buf, -1, drop=False)
        except OSError as err:
            return str(rp._unreadable(err))
        return rp.verdict(got, size, digest, sha)

    def close(self) -> None:
        self.ring.close()

