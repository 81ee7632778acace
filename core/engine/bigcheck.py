"""A big file's copy read back from the drive as soon as it is written, beside the copy of the
files after it (issue #11: the standard set's full backup).

A backup reads back every byte it wrote (core/engine/readback.py) after its commit, when the
volume has been flushed once: the cached pages are then clean and can be dropped, so the
read really comes from the drive. On the standard set that read-back took ~3 s of a ~12 s
full backup, ~1.3 s of it waiting for its ten big files (637 MB) while the pass's own thread
sat idle. Big files (:data:`EARLY_BYTES` or more) are copied in worker threads while the
pass's thread copies the small ones, so a worker has the time to check its file at once:

1. while it writes, every :data:`WRITEBACK_EVERY` bytes it asks the OS to start writing the
   file's dirty pages to the drive (``posix_fadvise(DONTNEED)`` starts writeback without
   waiting, and drops the pages already written): the drive writes while the source is read;
2. once written, :func:`read_back_now` makes the copy durable (``fdatasync``: little is left to
   write by then), drops its cached pages, and reads and hashes it from the drive: the same
   proof the read-back after the commit gives (the same descriptor checks: a regular file,
   never through a symlink), of the same file (``tmp/`` is renamed into ``Latest/``: the same
   inode, the same bytes).

A copy proven so is marked (``Copied.checked``) and the run leaves it out of the read-back
after the commit (core/engine/backup.py). Anything else — a wrong hash or size, an error,
a system where cached pages cannot be dropped (not Linux: :data:`fs.READS_AHEAD`) — leaves it
unmarked, and the read-back after the commit checks it (and repairs it) as before: this only
moves work earlier, it never skips a check. Nothing here writes to the drive; a failed
``fdatasync`` shows again in the commit's flush, which fails the run as before.
"""

from __future__ import annotations

import hashlib
import os

from core.engine import safeio
from core.engine.fs import READS_AHEAD, blocks, drop_cache, read_ahead, read_buffer
from core.errors import PlugbackError

EARLY_BYTES = 1 << 20        # files this big are checked at once (backup.INLINE_BYTES: copied in workers)
WRITEBACK_EVERY = 8 << 20    # bytes written between two requests to start writing them to the drive
ENABLED = READS_AHEAD        # Linux: cached pages can be dropped, so a read comes from the drive
CHECKED = 2                  # a run's copy placed and already read back (truthy, and not True)
_datasync = getattr(os, "fdatasync", os.fsync)   # (macOS has no fdatasync; this runs on Linux only)


def start_writeback(fd: int) -> None:
    """Ask the OS to start writing ``fd``'s dirty pages to the drive, without waiting (and to drop
    its pages already written). Linux only (:data:`ENABLED`); never fails."""
    drop_cache(fd)


class WritingBack:
    """A sink that writes to ``out`` (a store's part writer, whose open descriptor is ``out.fd()``)
    and starts the drive's writeback every :data:`WRITEBACK_EVERY` bytes (small files: never)."""

    def __init__(self, out):
        self.out = out
        self._since = 0

    def write(self, data) -> int:
        n = self.out.write(data)
        self._since += n
        if self._since >= WRITEBACK_EVERY:
            self._since = 0
            fd = self.out.fd()
            if fd is not None:
                start_writeback(fd)
        return n

    def close(self) -> None:
        """(The part writer is closed by its owner.)"""


def read_back_now(paths: list[str], size: int, sha256: str) -> bool:
    """Whether the copy just written at ``paths`` (in ``tmp/``, in order) reads back from the drive
    as ``size`` bytes hashing to ``sha256``: each part made durable, its cached pages dropped,
    then read and hashed. False on any doubt (the read-back after the commit then checks it)."""
    if not ENABLED or not paths:
        return False
    digest, got = hashlib.sha256(), 0
    buf = read_buffer()   # (this thread's: the copy that just used it has finished)
    try:
        for p in paths:
            fd = safeio.open_regular(p)
            try:
                _datasync(fd)
                drop_cache(fd)
                read_ahead(fd)
                for block in blocks(fd, buf):
                    digest.update(block)
                    got += len(block)
            finally:
                os.close(fd)
    except (OSError, PlugbackError):
        return False
    return got == size and digest.hexdigest() == sha256
