"""A backup's read-back (core/engine/readback.py, step 6 of core/engine/backup.py's write order)
started in a thread as soon as the snapshot is committed, beside the run's last steps.

After the commit point the run still rewrites or patches ``Latest.sha256`` (fsynced), records
the snapshot locally and removes the journal: on a day of changes ~0.03–0.05 s of small writes
and their waits on the drive, which the read-back (a read of every copied byte from the drive,
its cache dropped) used to wait behind (issue #11, docs/performance.md "#11: the day of changes,
fourth pass"). Neither needs the other: the read-back only reads what the flush before the
commit made durable, and writes nothing; a repair of what read back wrong still runs after the
last step, in the run's own thread, as before.

If those last steps fail, the read-back is stopped at its next batch (its work would be for a
run that failed) and waited for, so nothing of the run is left running once the set's lock is
released.
"""

from __future__ import annotations

import threading

from core.engine import readback
from core.engine.progress import Progress
from core.errors import Cancelled


class ReadBack:
    """``readback.read_back(run)`` in a thread: :meth:`result` waits for its answer (or its error)."""

    def __init__(self, run):
        self._run = run
        self._stopped = threading.Event()
        self._damaged: list | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="plugback-read-back", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            self._damaged = readback.read_back(_View(self._run, self._stopped))
        except BaseException as err:   # noqa: BLE001 - handed to the run's thread by result(), raised there
            self._error = err

    def result(self) -> list:
        """What read back wrong (as ``readback.read_back`` says); its error, raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._damaged is not None
        return self._damaged

    def stop(self) -> None:
        """Stop it at its next batch and wait for it (the run failed after the commit)."""
        self._stopped.set()
        self._thread.join()


class _View:
    """The run as the read-back sees it: its own, except that its progress reports stop the
    read-back once :meth:`ReadBack.stop` was called."""

    def __init__(self, run, stopped: threading.Event):
        self._run, self._stopped = run, stopped

    def __getattr__(self, name: str):
        return getattr(self._run, name)

    def progress(self, report: Progress) -> None:
        if self._stopped.is_set():
            raise Cancelled()
        self._run.progress(report)
