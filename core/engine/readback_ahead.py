"""What a backup run copied, held for its read-back in blocks, each readable once a flush has made
its files durable (issue #11: the read-back overlapped with the pass).

The read-back (step 6 of core/engine/backup.py's write order) reads every copied byte from the
drive with its cache dropped. A file is worth reading back only once it is durable: before that,
dropping its cache cannot work (its pages are dirty) and a crash could still lose it. Every
checkpoint of the pass flushes the volume; everything the run copied before that flush is
durable after it. So the run's record of what it copied (``readback.record`` lines, one per
copied file, in the order the pass emits them) is kept here in blocks: a checkpoint ends the
block being filled (:meth:`Written.cut`) *before* its flush, and after the flush lets the
read-back have every block up to that point (:meth:`Written.release`). The read-back's thread
takes them with :meth:`Written.blocks` while the pass goes on; the commit's own flush releases
the rest (:meth:`Written.close_input`).

A line is added only after its file was placed (the pass emits an entry once its copy
finished), so a block cut before a flush holds only files that flush made durable. Memory
stays flat: the blocks are compressed one by one into a local temporary file (unlinked at
once, as the run's other spools), and at most one block's lines wait in memory on each side.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import deque
from typing import Callable, Iterator

from core.engine import deflate
from core.errors import Cancelled

BLOCK_BYTES = 64 << 10   # bytes of lines collected before they are compressed as one block
_FLUSH = b"flush"        # (what Written._next returns, this very object, when the reader is to flush)


class Written:
    """The record of every file the run copied, as blocks compressed one by one in a local file.

    Thread-safe: the pass adds lines; a checkpoint (in whichever thread copied last) calls
    :meth:`cut` before its flush and :meth:`release` after it; the read-back's thread reads with
    :meth:`blocks`, which waits for blocks that may be read, and ends after the last one.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._released = clock()   # when blocks were last released
        self._file = tempfile.TemporaryFile(prefix="plugback-written-", buffering=0)
        self._cond = threading.Condition(threading.Lock())
        self._lines: list[bytes] = []
        self._size = 0
        self._end = 0   # bytes in the file
        self._blocks: deque[tuple[int, int]] = deque()   # (offset, length) of the finished blocks not yet read
        self._made = 0   # blocks finished
        self._taken = 0  # blocks read
        self._free = 0   # blocks that may be read (their files are durable)
        self._last = False
        self._stopped = False
        self.count = 0   # lines added

    def add(self, line: bytes) -> None:
        """One copied file's line (without a newline)."""
        with self._cond:
            self._lines.append(line)
            self._size += len(line)
            self.count += 1
            if self._size >= BLOCK_BYTES:
                self._finish_block()

    def _finish_block(self) -> None:
        """The lines collected, compressed and written as one block (the caller holds the lock)."""
        if not self._lines:
            return
        z = deflate.compressobj(1, deflate.MAX_WBITS)
        data = z.compress(b"\n".join(self._lines)) + z.flush()
        self._file.seek(self._end)
        view = memoryview(data)
        while view:
            view = view[self._file.write(view) or 0:]
        self._blocks.append((self._end, len(data)))
        self._end += len(data)
        self._made += 1
        self._lines, self._size = [], 0

    def cut(self) -> int:
        """End the block being filled: every line added so far is in a finished block. Returns how
        many blocks are finished; call it before a flush, and :meth:`release` that after it."""
        with self._cond:
            self._finish_block()
            return self._made

    def release(self, blocks: int) -> None:
        """The files of the first ``blocks`` blocks are durable (a flush followed the :meth:`cut`
        that returned ``blocks``): the read-back may have them."""
        with self._cond:
            if blocks > self._free:
                self._free = blocks
                self._cond.notify_all()
            self._released = self._clock()

    def close_input(self) -> None:
        """No line comes any more, and every file is durable (the commit's flush): all may be read."""
        with self._cond:
            self._finish_block()
            self._free, self._last = self._made, True
            self._cond.notify_all()

    def total(self) -> int | None:
        """How many lines there are, once no more can come (after :meth:`close_input`); else None."""
        with self._cond:
            return self.count if self._last else None

    def stop(self) -> None:
        """End :meth:`blocks` (it raises Cancelled) at its next block, or at once if it waits."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def blocks(self, flush: Callable[[], None] | None = None, every: float = 1.0) -> Iterator[list[bytes]]:
        """Every line in the order added, a block at a time, each once it may be read (waiting for
        it): once only.

        ``flush``: when the reader has read every block released and lines wait that are not, and
        ``every`` seconds (by the clock) passed since the last release, it cuts, calls ``flush``
        (which makes what was placed durable: the volume's flush) and releases them itself, rather
        than wait for the run's next checkpoint."""
        while True:
            with self._cond:
                data = self._next(flush is not None, every)
            if data is None:
                return
            if data is _FLUSH:
                assert flush is not None
                blocks = self.cut()
                flush()
                self.release(blocks)
                continue
            yield deflate.decompressobj(deflate.MAX_WBITS).decompress(data).split(b"\n")

    def _next(self, flushing: bool, every: float) -> bytes | None:
        """The next block's bytes, :data:`_FLUSH`, or None after the last (the caller holds the lock)."""
        while True:
            if self._stopped:
                raise Cancelled()
            if self._taken < self._free:
                offset, length = self._blocks.popleft()
                self._taken += 1
                self._file.seek(offset)
                return self._read(length)
            if self._last:
                return None
            if flushing and (self._lines or self._made > self._free):   # (lines wait for a flush)
                due = self._released + every - self._clock()
                if due <= 0:
                    return _FLUSH
                self._cond.wait(due)
            else:
                self._cond.wait()

    def _read(self, length: int) -> bytes:
        parts, left = [], length
        while left:
            chunk = self._file.read(left)
            if not chunk:
                raise OSError("the read-back's local record ended early")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        self._file.close()
