"""The pass's checkpoints (step 3 of core/engine/backup.py's write order) made in a thread of their
own, so the pass copies on while the volume is flushed (issue #11).

A checkpoint makes what the run placed so far durable and says so: the volume's flush
(``syncfs``), then the journal's checkpoint line for the records counted *before* that flush, then
the read-back's release of the blocks cut before it (core/engine/readback_ahead.py), then the
lock's refresh. The pass used to do all of it in its own thread: on the standard set its first
checkpoint waited ~0.5–0.9 s for the flush of 256 MiB of small copies, with the pass's one core idle.

Here the pass only counts the journal's records and cuts the read-back's block (both cheap, in its
own thread, in that order, before the flush can start), and :meth:`Checkpoints.request` hands
(count, blocks) to this thread, which does the rest in the same order as before. So every guarantee
stays what it was: a journal checkpoint line names only records counted before a flush that ended
before the line was written; the read-back gets only blocks cut before such a flush. A request made
while one is in flight waits for the next turn, and a newer one supersedes it: the thread makes
the largest count and blocks asked for so far (two threads' requests may arrive out of order; every
count and cut was made before its request, so before the flush that follows). Nothing is written to the drive here but
what the pass's checkpoint wrote.

An error in the thread (a pulled drive, a full one) is raised in the pass at its next request, or
by :meth:`finish`, which the run calls before its commit (and, quietly, before it checkpoints a
failed run itself) and which waits for every request made: the commit's own flush and the
journal's removal never run beside a checkpoint.
"""

from __future__ import annotations

import threading
from typing import Callable


class Checkpoints:
    """The thread that makes the pass's checkpoints: ``make(count, blocks)`` in turn, the newest
    request first superseding any not yet begun. Started at the first request."""

    def __init__(self, make: Callable[[int, int], None]):
        self._make = make
        self._cond = threading.Condition(threading.Lock())
        self._wanted: tuple[int, int] | None = None
        self._high = (0, 0)   # the largest count and blocks asked for
        self._error: BaseException | None = None
        self._done = False
        self._thread: threading.Thread | None = None
        self.made = 0   # checkpoints made (tests, bench/full_timeline.py)

    def request(self, count: int, blocks: int) -> None:
        """A checkpoint of the journal's first ``count`` records and the read-back's first
        ``blocks`` blocks (counted and cut before this call); raises the error of an earlier one."""
        with self._cond:
            if self._error is not None:
                raise self._error
            if self._done:
                raise RuntimeError("checkpoint requested after finish()")
            # (two threads' requests may arrive out of order: never a smaller checkpoint than one
            # asked for; every count and cut here was made before this call, so before the flush)
            self._high = (max(self._high[0], count), max(self._high[1], blocks))
            self._wanted = self._high
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="plugback-checkpoints", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._wanted is None and not self._done:
                    self._cond.wait()
                if self._wanted is None:
                    return
                wanted, self._wanted = self._wanted, None
            try:
                self._make(*wanted)
            except BaseException as err:   # noqa: BLE001 - raised in the pass (request, finish)
                with self._cond:
                    self._error = err
                    self._wanted = None
                return
            with self._cond:
                self.made += 1

    def finish(self, quietly: bool = False, committing: bool = False) -> None:
        """Wait for every checkpoint requested; raise the first error (not if ``quietly``). No
        request is taken after it. ``committing``: one not yet begun is dropped (the commit's own
        flush makes the same files durable, and its journal is removed after the commit; a commit
        that fails checkpoints the run itself), the one in flight is waited for."""
        with self._cond:
            if committing:
                self._wanted = None
            self._done = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        if self._error is not None and not quietly:
            raise self._error
