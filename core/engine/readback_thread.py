"""A backup's read-back (core/engine/readback.py, step 6 of core/engine/backup.py's write order) in
a thread of the run: in a plain set on Linux from the pass's first checkpoint on, else from the
commit on, beside the run's last steps.

**During the pass** (issue #11, docs/performance.md "#11: the full backup's read-back overlapped
with the copy"): each checkpoint flushes the volume; the files copied before that flush are
durable, and the checkpoint hands their records to this thread (core/engine/readback_ahead.py),
which reads them back while the pass copies on. After the commit only what was copied since the
last checkpoint is left to read. It reports no progress then (the pass does); it keeps what
read back wrong for the repair after the last step, as before.

**After the commit** the run still rewrites or patches ``Latest.sha256`` (fsynced), records the
snapshot locally and removes the journal; the read-back goes on beside those steps (it only reads
what a flush made durable, and writes nothing), now reporting its progress. A repair of what read
back wrong runs after the last step, in the run's own thread.

If the run fails, is cancelled, or its last steps fail, the read-back is stopped at its next batch
(or at once while it waits for the next checkpoint) and waited for, so nothing of the run is left
running, and no descriptor of it open, once the set's lock is released.
"""

from __future__ import annotations

import threading
from typing import Callable

from core.engine import readback
from core.engine.progress import Progress
from core.engine.readback_ahead import Written
from core.errors import Cancelled

FLUSH_EVERY = 1.0   # seconds between the flushes the read-back asks for while it waits (ReadBack's flush)


class ReadBack:
    """``readback.read_back`` of everything in ``written`` in a thread: :meth:`result` waits for its
    answer (or its error) once :meth:`committed` was called."""

    def __init__(self, run, ahead: bool = False):
        """``ahead``: the run's checkpoints :meth:`release` copies to it during the pass, and it
        flushes the volume itself when it has caught up (no sooner than the first checkpoint: a run
        shorter than that reads back from its commit on, with no flush of its own, as before)."""
        written: Written | None = run.written
        assert written is not None   # (a run that reads back keeps its record of copies)
        self._run, self._written = run, written
        self._flush: Callable[[], None] | None = (lambda: run.fs.flush_volume(run.layout.root)) if ahead else None
        self._committed = False
        self._stopped = threading.Event()
        self._damaged: list | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="plugback-read-back", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            blocks = self._written.blocks(self._flush, FLUSH_EVERY)
            self._damaged = readback.read_back(self._run, readback.decoded(blocks), self._seen, self._written.total)
            self._seen(self._written.count, self._run.stats["copied_bytes"] - self._run.stats["checked_bytes"], "")
        except BaseException as err:   # noqa: BLE001 - handed to the run's thread by result(), raised there
            self._error = err

    def _seen(self, files: int, size: int, path: str) -> None:
        """After each batch: progress once the snapshot is committed (before, the pass reports)."""
        if self._stopped.is_set():
            raise Cancelled()
        if self._committed:   # (the copies read back early, copy_ahead.py, count as done)
            s = self._run.stats
            files, size = files + s["checked_files"], size + s["checked_bytes"]
            self._run.progress(Progress("verify", files, s["copied_files"], size, s["copied_bytes"], path))

    def release(self, blocks: int) -> None:
        """A checkpoint's flush made the copies of ``written``'s first ``blocks`` blocks durable."""
        self._written.release(blocks)

    def committed(self) -> None:
        """The snapshot is committed (its flush made every copy durable): read the rest, report."""
        self._committed = True
        self._written.close_input()

    def wait(self) -> None:
        """Wait until it has read everything (after :meth:`committed`); its answer stays for :meth:`result`."""
        self._thread.join()

    def result(self) -> list:
        """What read back wrong (as ``readback.read_back`` says); its error, raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._damaged is not None
        return self._damaged

    def stop(self) -> None:
        """Stop it at its next batch (at once if it waits for a checkpoint) and wait for it."""
        self._stopped.set()
        self._written.stop()
        self._thread.join()
