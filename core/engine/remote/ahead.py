"""The key-less start of a backup into an existing remote set, beside its unlock (issue #13).

Opening an existing set runs the passphrase's scrypt (N = 2^17: ~0.4 s of one core, outside
the interpreter lock), then the backup takes the lock, lists the set and reads the parent
manifest: half a second or more in which the run had nothing to do. Part of its work needs no
key: the scan, and reading and hashing small files (an object's name is HMAC(naming key,
SHA-256 of its content), core/engine/crypto.py ``ObjectHasher``: only naming, encrypting and
packing need the keys). :class:`Ahead` does that part in one thread meanwhile, and stops when
the run starts (:meth:`Ahead.handover`), so the run's thread never shares the interpreter with
it (docs/performance.md, "Remote sets, fourth pass": two busy threads cost more than they
overlap). It reads the sources only; it never touches the remote, so the write order is the
run's (nothing is written before the unlock and the lock).

Bounded: at most ``entries`` scanned entries and AHEAD_BYTES of small files' content (coded, in
a local spool file: off the heap while scrypt holds its 128 MiB) are held, at most SMALL_AHEAD
files open. A file is read here as the run reads it (:class:`Hashed`): whole, once, and that
content is what the run encrypts, so what was hashed is what is stored
(coded here already, :class:`Coded`: the run's check opens the sealed stream and hashes it again,
so this coding is checked as the run's own would be). A read's error is kept and raised where the
run would have met it (sourceread's retries and warnings then apply, with the parent's entry
known). The parent is not known here, so an unchanged file may be read for nothing (at most
AHEAD_BYTES, while the machine would otherwise wait for scrypt).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable, Generator, Iterator, cast

from core.engine import crypto
from core.engine.fs import READS_AHEAD, long_path, read_ahead
from core.engine.lean_child import check_same
from core.engine.manifest import FILE
from core.engine.progress import RunWarning
from core.engine.remote.packs import PACK_BELOW
from core.engine.scan import Excluder, ScanEntry, Source, scan
from core.engine.source_open import open_source

AHEAD_BYTES = 32 << 20   # small files' content held for the run, at most
SMALL_AHEAD = 32         # small files opened, their reads started, before the one being read (Linux)
READ_BLOCK = 1 << 20


def read_content(path_or_fd: str | int, size: int, update: Callable[[bytes], object], ino: int = 0,
                 dev: int = 0) -> tuple[int, bytes | None]:
    """Read a file once (a path, or a descriptor this takes over), handing each block to
    ``update``: (its size, its content when that is under PACK_BELOW, else None). ``ino``, ``dev``:
    the scan's; another file reached by the name raises ``lean_child.Replaced``, nothing read."""
    total = 0
    kept: list[bytes] | None = []
    want = min(READ_BLOCK, max(size, 0) + 1)   # a small file in one read of its size, not a 1 MiB buffer
    fd = open_source(long_path(path_or_fd)) if isinstance(path_or_fd, str) else path_or_fd
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):   # (a FIFO or device swapped in since the scan)
            raise OSError(errno.EINVAL, "it is no longer a regular file (changed since the scan)")
        check_same(st, ino, dev, path_or_fd if isinstance(path_or_fd, str) else "")
        while block := f.read(want):
            want = READ_BLOCK
            update(block)
            total += len(block)
            if kept is not None:
                kept.append(block)
                if total >= PACK_BELOW:
                    kept = None
    return total, (b"".join(kept) if kept is not None else None)


@dataclass
class Coded:
    """Small content coded for its stream already (``crypto.code_whole``: zstd where it pays), as
    the run's seal would code it: the run seals ``payload`` (``crypto.seal_coded``) and checks the
    stream against the name of the bytes read, as it checks any small object."""

    coding: int
    payload: bytes


class Spooled:
    """Coded content :class:`Ahead` put in its spool (a local file, unlinked at once) instead of
    holding it: the bytes read ahead stay off the heap while the passphrase's scrypt holds its
    128 MiB (a backup's peak memory: docs/performance.md, "#13: the parent manifest ahead, ...")."""

    __slots__ = ("_spool", "coding", "offset", "length")

    def __init__(self, spool, coding: int, offset: int, length: int):
        self._spool, self.coding, self.offset, self.length = spool, coding, offset, length

    def coded(self) -> Coded:
        """The coded content, read back from the spool (in the run's thread, once the thread stopped)."""
        self._spool.seek(self.offset)
        payload = self._spool.read(self.length)
        if len(payload) != self.length:
            raise OSError(f"the read-ahead's spool ended early ({len(payload)} of {self.length} bytes)")
        return Coded(self.coding, payload)


@dataclass
class Early:
    """A small file read ahead: its plain SHA-256, size and content (None: it grew past
    PACK_BELOW; :class:`Coded` when coded ahead, :class:`Spooled` when that waits in the spool),
    or the error its read raised."""

    sha256: "hashlib._Hash | None" = None
    size: int = 0
    content: "bytes | Coded | Spooled | None" = None
    error: OSError | None = None


class _Found:
    """A scanned entry held for the run; a small file's ``early`` read, once done."""

    __slots__ = ("se", "early", "fd")

    def __init__(self, se: ScanEntry):
        self.se = se
        self.early: Early | None = None
        self.fd: int | None = None


class Ahead:
    """The scan of ``sources`` and the reads of their small files, started in a thread at once;
    ``version``: the set's encryption format, whose coding (zstd where it pays, from format 2) is
    done here too (it needs no key), so the run's thread only seals."""

    def __init__(self, sources: list[Source], excluder: Excluder, warnings: list[RunWarning], entries: int,
                 version: int = 1):
        self.sources = sources
        self._version = version
        self._scan = cast(Generator[ScanEntry, None, None], scan(sources, excluder, warnings))
        self._entries = entries
        self._found: deque[_Found] = deque()
        self._opened: deque[_Found] = deque()       # small files opened, not read yet (in order)
        self._stop = threading.Event()
        self._failed: BaseException | None = None
        self._spool = tempfile.TemporaryFile(prefix="plugback-ahead-")   # coded content, read back by the run
        self._spooled = 0
        self._thread = threading.Thread(target=self._work, name="plugback-ahead", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            held = 0
            for se in self._scan:
                found = _Found(se)
                self._found.append(found)
                if se.type == FILE and se.size < PACK_BELOW and held + se.size <= AHEAD_BYTES:
                    held += se.size
                    self._open(found)
                    if len(self._opened) > (SMALL_AHEAD if READS_AHEAD else 0):
                        self._read(self._opened.popleft())
                if self._stop.is_set() or len(self._found) >= self._entries:
                    break
            while self._opened and not self._stop.is_set():
                self._read(self._opened.popleft())
        except BaseException as err:  # noqa: BLE001 - raised in the run's thread, where the scan would have
            self._failed = err

    def _open(self, found: _Found) -> None:
        try:
            found.fd = open_source(long_path(found.se.abspath))
        except OSError as err:
            found.early = Early(error=err)
            return
        if READS_AHEAD:
            read_ahead(found.fd)
        self._opened.append(found)

    def _read(self, found: _Found) -> None:
        fd, found.fd = found.fd, None
        assert fd is not None
        sha = hashlib.sha256()
        try:
            size, content = read_content(fd, found.se.size, sha.update, found.se.ino, found.se.dev)
        except OSError as err:
            found.early = Early(error=err)
            return
        spooled = None
        if content is not None:
            coding, payload = crypto.code_whole(content, self._version)
            self._spool.write(payload)
            spooled = Spooled(self._spool, coding, self._spooled, len(payload))
            self._spooled += len(payload)
        found.early = Early(sha, size, spooled)

    def handover(self) -> Iterator[tuple[ScanEntry, Early | None]]:
        """Stop the thread (after the file it is reading) and go on in the caller's: the entries
        found so far with their early reads, then the rest of the scan."""
        self._halt()
        while self._found:
            found = self._found.popleft()
            yield found.se, found.early
        if self._failed is not None:
            raise self._failed
        for se in self._scan:
            yield se, None

    def _halt(self) -> None:
        self._stop.set()
        self._thread.join()
        if not self._spool.closed:
            self._spool.flush()
        while self._opened:
            found = self._opened.popleft()
            if found.fd is not None:
                os.close(found.fd)
                found.fd = None

    def close(self) -> None:
        """Stop the thread and let go of everything held (the scan's own threads too)."""
        self._halt()
        self._found.clear()
        self._scan.close()
        self._spool.close()


class Hashed:
    """What sourceread's retry loop asks of a store, for the run: read a file once, hashing it and
    naming its content (nothing written)."""

    def __init__(self, keys: crypto.SetKeys):
        self.keys = keys

    def copy_in(self, se: ScanEntry, fd: int | None = None) -> tuple[crypto.ObjectHasher, int, bytes | None]:
        """(hasher, size, the content when it is under PACK_BELOW: it is not read again); ``fd``:
        the file opened already (this takes it over)."""
        hasher = self.keys.object_hasher()
        size, content = read_content(se.abspath if fd is None else fd, se.size, hasher.update, se.ino, se.dev)
        return hasher, size, content

    def displace(self, old) -> None:
        """(A file deleted since the scan simply leaves the snapshot: nothing to move on a remote.)"""


class Opened:
    """:class:`Hashed` for a file opened ahead by the run: the first try reads that descriptor, a
    retry opens the file again."""

    def __init__(self, hashed: Hashed, fd: int):
        self._hashed = hashed
        self._fd: int | None = fd

    def copy_in(self, se: ScanEntry) -> tuple[crypto.ObjectHasher, int, bytes | None]:
        fd, self._fd = self._fd, None
        return self._hashed.copy_in(se, fd)

    def displace(self, old) -> None:
        self._hashed.displace(old)


class EarlyRead:
    """:class:`Hashed` for a small file :class:`Ahead`
    read before the keys were there: the first try hands over that read (or raises its error),
    a retry reads the file again."""

    def __init__(self, hashed: Hashed, early: Early):
        self._hashed = hashed
        self._early: Early | None = early

    def copy_in(self, se: ScanEntry) -> tuple["_Named | crypto.ObjectHasher", int, bytes | Coded | None]:
        early, self._early = self._early, None
        if early is None:
            return self._hashed.copy_in(se)
        if early.error is not None:
            raise early.error
        assert early.sha256 is not None
        content = early.content.coded() if isinstance(early.content, Spooled) else early.content
        return _Named(self._hashed.keys, early.sha256.hexdigest()), early.size, content

    def displace(self, old) -> None:
        self._hashed.displace(old)


class _Named:
    """What :class:`crypto.ObjectHasher` says of content hashed before the keys were there: its
    keyed name is HMAC(naming key, its SHA-256), the same name."""

    def __init__(self, keys: crypto.SetKeys, sha256_hex: str):
        self._keys, self._sha256 = keys, sha256_hex

    def sha256_hexdigest(self) -> str:
        return self._sha256

    def hexdigest(self) -> str:
        return self._keys.object_name(self._sha256)


def reopen(path: str, ino: int = 0, dev: int = 0) -> int:
    """``path`` opened again for big content's second read (remote/backup.py: sealed as it is
    sent), as the first read opened it: never through a symlink (ELOOP), and only the file the
    scan saw (``lean_child.Replaced`` when a folder on its way was swapped for a link since)."""
    fd = open_source(path)
    try:
        check_same(os.fstat(fd), ino, dev, path)
    except BaseException:
        os.close(fd)
        raise
    return fd
