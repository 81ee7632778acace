"""One JobRunner thread per destination: a queue of job names, run one at a time.

Jobs writing to the same drive or folder queue behind each other (one writer
per destination); different destinations run in parallel. The thread sleeps
on a condition while idle, so an idle agent costs nothing here.

A restore from the destination is a task of its runner too (kind ``restore``,
issue #14 "restore first"): it goes ahead of the queued runs, waits only for
the one running, and everything queued after it waits for it. Restore tasks
carry their own work, are not jobs (``queue`` and "Stop backup" leave them
alone) and are stopped with :meth:`JobRunner.stop_restore`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable, NamedTuple

from core.agent.history import RunKind, Trigger
from core.engine.progress import CancelToken, Progress
from core.errors import DriveGone

log = logging.getLogger("plugback.runner")


class RunCancel(CancelToken):
    """The cancel token of one run; it also knows when the drive was pulled.

    The watcher calls :meth:`drive_removed` when the destination's mount
    vanishes, so the engine stops at its next check with DriveGone even if
    its writes have not failed yet (a lazily unmounted drive still accepts
    writes to already-open files).
    """

    def __init__(self) -> None:
        super().__init__()
        self.drive_gone = False

    def drive_removed(self) -> None:
        self.drive_gone = True
        self.cancel()

    def check(self) -> None:
        if self.drive_gone:
            raise DriveGone()
        super().check()


#: The kind of a restore task (a runner's own kind; history records only backups and checks).
RESTORE = "restore"
#: What a restore task runs on the runner's thread: ``work(cancel, progress)``.
Work = Callable[[RunCancel, Callable[[Progress], None]], None]


class Task(NamedTuple):
    """One queued run: the job's name, backup, check or restore, and what asked for it.

    ``work`` (restores only) is run instead of the runner's ``execute``."""

    name: str
    kind: RunKind | str   # RESTORE for a restore
    trigger: Trigger
    work: Work | None = None


class JobRunner:
    """Runs ``execute(task, cancel, progress)`` for queued tasks, one at a time."""

    def __init__(self, key: str, execute: Callable[[Task, RunCancel, Callable[[Progress], None]], None],
                 on_change: Callable[[], None] = lambda: None):
        self.key = key
        self.execute = execute
        self.on_change = on_change
        self.tasks: deque[Task] = deque()
        self.current: str | None = None
        self.kind: RunKind | str | None = None
        self.progress: Progress | None = None
        self.cancel: RunCancel | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self.thread = threading.Thread(target=self._loop, name=f"runner-{key}", daemon=True)
        self.thread.start()

    def enqueue(self, name: str, kind: RunKind = RunKind.BACKUP, trigger: Trigger = Trigger.MANUAL) -> bool:
        """Queue ``name`` (a backup, or a ``verify``) unless it is queued or running; True if queued now."""
        kind, trigger = RunKind(kind), Trigger(trigger)
        with self._cond:
            if (name == self.current and kind == self.kind) or self._stopping \
                    or any(t.name == name and t.kind == kind for t in self.tasks):
                return False
            self.tasks.append(Task(name, kind, trigger))
            self._cond.notify()
        self.on_change()
        return True

    def enqueue_restore(self, name: str, work: Work) -> None:
        """Queue a restore ahead of every queued run (behind the one running, if any)."""
        with self._cond:
            self.tasks.appendleft(Task(name, RESTORE, Trigger.MANUAL, work))
            self._cond.notify()
        self.on_change()

    def stop(self, name: str | None = None) -> bool:
        """Cancel ``name`` (running or queued), or every run when None; restores are left alone.
        True if anything stopped."""
        stopped = False
        with self._cond:
            for task in list(self.tasks):
                if task.kind != RESTORE and (name is None or task.name == name):
                    self.tasks.remove(task)
                    stopped = True
            if self.cancel is not None and self.kind != RESTORE and (name is None or self.current == name):
                self.cancel.cancel()
                stopped = True
        if stopped:
            self.on_change()
        return stopped

    def stop_restore(self, name: str) -> str | None:
        """Stop the restore task ``name``: "dropped" (it was queued), "cancelled" (running), or None."""
        with self._cond:
            for task in list(self.tasks):
                if task.kind == RESTORE and task.name == name:
                    self.tasks.remove(task)
                    return "dropped"
            if self.cancel is not None and self.kind == RESTORE and self.current == name:
                self.cancel.cancel()
                return "cancelled"
        return None

    def drive_removed(self) -> None:
        """The destination drive vanished: end the running task as 'drive removed', drop the queued runs.

        Queued restores stay: they run, find the drive gone and say so in their result."""
        with self._cond:
            kept = [t for t in self.tasks if t.kind == RESTORE]
            self.tasks.clear()
            self.tasks.extend(kept)
            if self.cancel is not None:
                self.cancel.drive_removed()

    @property
    def queue(self) -> list[str]:
        """Names of the queued jobs (backups and checks; not restores), in order."""
        return [t.name for t in list(self.tasks) if t.kind != RESTORE]

    def busy(self) -> bool:
        """Whether a task runs or waits here."""
        with self._cond:
            return self.current is not None or bool(self.tasks)

    def shutdown(self, cancel: bool = True, timeout: float | None = None) -> None:
        """Stop the thread: cancel the running job (or let it finish) and wait for it."""
        with self._cond:
            self._stopping = True
            self.tasks.clear()
            if cancel and self.cancel is not None:
                self.cancel.cancel()
            self._cond.notify()
        self.thread.join(timeout)

    def _set_progress(self, p: Progress) -> None:
        self.progress = p
        self.on_change()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self.tasks and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                task = self.tasks.popleft()
                self.current, self.kind = task.name, task.kind
                self.cancel = RunCancel()
                self.progress = None
                name, cancel = task.name, self.cancel
            self.on_change()
            try:
                if task.work is not None:
                    task.work(cancel, self._set_progress)
                else:
                    self.execute(task, cancel, self._set_progress)
            except Exception:   # noqa: BLE001 - a bug in one run must not kill the runner
                log.exception("run of %s failed unexpectedly", name)
            finally:
                with self._cond:
                    self.current, self.kind, self.cancel, self.progress = None, None, None, None
                self.on_change()
