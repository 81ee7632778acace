"""Membership sets that stay small at millions of members, for a backup run's bookkeeping.

A Python ``set`` of a million strings costs well over 100 MB; a run only needs to
ask "was this name / this object seen?". :class:`CompactSet` keeps 64-bit keys in
one flat array (open addressing, at most half full: about 16 bytes a member);
two different values share a key with a probability near 2**-64 per pair, which
for its uses below only ever costs a needless ``~1`` name suffix or a needless
rewrite of an object, never wrong data.
"""

from __future__ import annotations

import threading
from array import array

from core.engine.fs import VolumeInfo
from core.engine.names import escape_component

_MASK = (1 << 64) - 1


def key64(value: str) -> int:
    """A 64-bit key for ``value`` (stable within this process; never 0, the empty-slot mark)."""
    return (hash(value) & _MASK) or 1


class CompactSet:
    """A set of 64-bit keys (thread-safe). ``add`` / ``in`` take strings or ints (keys)."""

    def __init__(self, expected: int = 0):
        size = 64
        while size < 2 * expected:
            size *= 2
        self._slots = array("Q", bytes(8 * size))
        self._count = 0
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._slots = array("Q", bytes(8 * 64))
            self._count = 0

    def __len__(self) -> int:
        return self._count

    @staticmethod
    def _key(value) -> int:
        return value if isinstance(value, int) else key64(value)

    def _find(self, k: int) -> int:
        slots, mask = self._slots, len(self._slots) - 1
        i = k & mask
        while True:
            v = slots[i]
            if v == 0 or v == k:
                return i
            i = (i + 1) & mask

    def add(self, value) -> None:
        k = self._key(value)
        with self._lock:
            i = self._find(k)
            if self._slots[i] == k:
                return
            self._slots[i] = k
            self._count += 1
            if 2 * self._count > len(self._slots):
                self._grow()

    def update(self, values) -> None:
        for v in values:
            self.add(v)

    def __contains__(self, value) -> bool:
        k = self._key(value)
        with self._lock:
            return self._slots[self._find(k)] == k

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", bytes(16 * len(old)))
        for v in old:
            if v:
                self._slots[self._find(v)] = v


class StreamNamer:
    """Mirror names for new entries, like ``names.MirrorNamer``, in one streaming pass.

    ``reserve`` (before the pass) records the names the parent snapshot's copies
    have in ``Latest/``: all of them where two different names can end up as one
    (escaping, case-insensitive volumes), otherwise only the escaped ones (only
    those can equal another entry's name). Names handed out are remembered the
    same way. A new name therefore never lands on a copy the parent snapshot
    placed, even one that this run removes later in its pass. Where only escaped
    names are remembered, a changed name (``x~1``) is also checked with ``taken(path
    in Latest/)``: it could be the name of an unescaped copy.
    """

    def __init__(self, volume: VolumeInfo, taken=lambda mirror_path: False):
        self.volume = volume
        self.taken = taken
        # Can two different source names get one name in Latest/? Then every name counts.
        self.every_name = volume.case_insensitive or volume.windows_names or volume.ascii_only
        self._used = CompactSet()

    def _key(self, parent_mirror: str, name: str) -> int:
        if self.volume.case_insensitive:
            name = name.casefold()
            parent_mirror = parent_mirror.casefold()
        return key64(parent_mirror + "/" + name)

    def reserve(self, mirror_path: str, path: str) -> None:
        """A copy the parent snapshot has at ``mirror_path`` (for the entry ``path``)."""
        if self.every_name or mirror_path != path:
            parent, _, name = mirror_path.rpartition("/")
            self._used.add(self._key(parent, name))

    def name_for(self, parent_mirror: str, name: str) -> str:
        """A name for the new child ``name`` of the folder whose copy is ``parent_mirror``."""
        base = escape_component(name, self.volume)
        candidate, n = base, 1
        while (len(self._used) and self._key(parent_mirror, candidate) in self._used) or (
                candidate != name and not self.every_name
                and self.taken((parent_mirror + "/" if parent_mirror else "") + candidate)):
            stem, dot, ext = base.rpartition(".")
            candidate = f"{stem}~{n}.{ext}" if dot and stem else f"{base}~{n}"
            n += 1
        if self.every_name or candidate != name:
            self._used.add(self._key(parent_mirror, candidate))
        return candidate
