"""A failing file system: the real one, but the Nth write operation fails.

``FaultyFS(fail_at=N, error=...)`` counts every write operation the engine makes
through ``core.engine.fs.FileSystem``. At the Nth it raises ``error``: an ``errno``
(ENOSPC, EIO, EACCES...) becomes the real ``OSError`` passed through the
engine's own translation, and ``CRASH`` simulates the process dying there —
every later operation fails too, so no clean-up code can run.
"""

from __future__ import annotations

import threading

from core.engine.fs import FileSystem, translate

CRASH = "crash"


class Crash(BaseException):
    """The process 'died' here (BaseException: no `except Exception` catches it)."""


class FaultyFS(FileSystem):
    """The real file system whose write operation number ``fail_at`` (1-based) fails."""

    OPS = ("open_write", "write", "fsync", "close", "create", "write_fd", "finish_fd", "mkdir", "make_dir", "replace",
           "unlink", "rmdir", "remove_dir", "symlink", "set_times", "chmod", "fsync_dir", "flush_volume")

    def __init__(self, root=None, fail_at: int | None = None, error=CRASH):
        super().__init__(root)
        self.fail_at = fail_at
        self.error = error
        self.calls = 0
        self.crashed = False
        self.log: list[str] = []
        self._lock = threading.Lock()

    def _tick(self, op: str, path) -> None:
        with self._lock:
            if self.crashed:
                raise Crash(f"after crash: {op}")
            self.calls += 1
            self.log.append(op)
            if self.fail_at is None or self.calls != self.fail_at:
                return
            if self.error == CRASH:
                self.crashed = True
                raise Crash(f"crash at {op} #{self.calls}")
        if isinstance(self.error, int):
            raise translate(OSError(self.error, f"injected {op}"), path, self.root)
        raise self.error


def _wrap(name):
    base = getattr(FileSystem, name)

    def method(self, *args, **kwargs):
        path = args[0] if args else None
        self._tick(name, getattr(path, "name", path))
        return base(self, *args, **kwargs)

    method.__name__ = name
    return method


for _name in FaultyFS.OPS:
    setattr(FaultyFS, _name, _wrap(_name))
