"""Windows behaviour simulated on Linux, for the engine's Windows-only paths (issue #16).

* :func:`locked_error` is the ``PermissionError`` Windows raises for a file another
  program opened without sharing (``winerror`` 32) or a locked range (33).
* :class:`LockedSources` makes the backup's read of chosen source files fail with it
  on the Nth to Mth open (the real read happens otherwise), whichever of the store's two
  reads the file takes (``read_source``, or ``read_whole`` for an encrypted set's small
  files); :func:`failing_reads` makes every read fail.
* :func:`windows_readonly_semantics` makes ``os.replace`` and ``os.unlink`` refuse a
  read-only target, as Windows does for ``FILE_ATTRIBUTE_READONLY`` (on Linux, and as
  root, both succeed).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from contextlib import contextmanager


def locked_error(path, winerror: int = 32) -> PermissionError:
    err = PermissionError(errno.EACCES, "The process cannot access the file because it is being used by "
                          "another process", str(path))
    err.winerror = winerror   # what Windows sets; POSIX exceptions have no such attribute
    return err


class LockedSources:
    """Wraps the backup's two ways of reading a source file, ``core.engine.store.read_source`` (plain
    sets, big files) and ``read_whole`` (an encrypted set's files under ``store.WHOLE_BYTES``): opens
    number ``first``..``last`` (1-based, per path, whichever read it is) of each path in ``paths``
    raise :func:`locked_error`; ``last=None``: every open from ``first``. ``reads`` counts which
    function each path's opens went through, so a test can tell the fault met the path it meant."""

    def __init__(self, monkeypatch, paths, first: int = 1, last: int | None = None, winerror: int = 32):
        from core.engine import store

        self.paths = {str(p) for p in paths}
        self.first, self.last, self.winerror = first, last, winerror
        self.opens: dict[str, int] = {}
        self.reads: dict[str, int] = {}
        self._lock = threading.Lock()
        for name in ("read_source", "read_whole"):
            monkeypatch.setattr(store, name, self._wrapped(name, getattr(store, name)))

    def _wrapped(self, name: str, real):
        def read(path, *args, **kwargs):
            if path in self.paths:
                with self._lock:
                    n = self.opens[path] = self.opens.get(path, 0) + 1
                    self.reads[name] = self.reads.get(name, 0) + 1
                if n >= self.first and (self.last is None or n <= self.last):
                    raise locked_error(path, self.winerror)
            return real(path, *args, **kwargs)

        return read


def failing_reads(monkeypatch, error: BaseException) -> None:
    """Every source read raises ``error``, through ``read_source`` and ``read_whole`` alike."""
    from core.engine import store

    def fail(path, *args, **kwargs):
        raise error

    monkeypatch.setattr(store, "read_source", fail)
    monkeypatch.setattr(store, "read_whole", fail)


def _readonly(path) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return not stat.S_ISLNK(st.st_mode) and not st.st_mode & stat.S_IWUSR


@contextmanager
def windows_readonly_semantics(monkeypatch):
    """``os.replace``/``os.unlink`` refuse read-only targets (PermissionError, winerror 5) meanwhile.

    Yields a list of the refused paths, so a test can tell the refusal really happened.
    """
    real_replace, real_unlink = os.replace, os.unlink
    refused: list[str] = []

    def refuse(path):
        refused.append(str(path))
        err = PermissionError(errno.EACCES, "Access is denied", str(path))
        err.winerror = 5
        raise err

    def replace(src, dst, **kwargs):
        if _readonly(dst):
            refuse(dst)
        return real_replace(src, dst, **kwargs)

    def unlink(path, **kwargs):
        if _readonly(path):
            refuse(path)
        return real_unlink(path, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    try:
        yield refused
    finally:
        monkeypatch.setattr(os, "replace", real_replace)
        monkeypatch.setattr(os, "unlink", real_unlink)


WIN_PREFIX = "\\\\?\\"
MAX_PATH = 260


class WindowsPathLimit:
    """What :func:`windows_path_limit` saw: the long paths refused, and the prefixed ones used."""

    def __init__(self):
        self.refused: list[str] = []
        self.prefixed = 0


@contextmanager
def windows_path_limit():
    """Windows' MAX_PATH on Linux, meanwhile: a path of 260 characters or more fails with ENOENT
    (what Windows says without long-path support) unless it has the ``\\\\?\\`` prefix, which
    ``core.engine.fs.long_path`` then gives (it decides as on Windows in every engine module).

    The prefixed form is ``\\\\?\\`` + the POSIX path with ``\\`` for ``/`` (what ntpath's
    normalising makes of it); the wrapped calls turn it back. Yields a WindowsPathLimit.
    """
    import builtins
    import functools

    import pytest

    import core.engine as engine
    from core.engine import fs

    seen = WindowsPathLimit()
    monkeypatch = pytest.MonkeyPatch()   # its own: undone when the block ends, not at the test's end
    lifted = threading.local()   # inside realpath of a prefixed path: no limit

    def real(path):
        if isinstance(path, int) or isinstance(path, bytes):
            return path
        p = os.fspath(path)
        if p.startswith(WIN_PREFIX):
            seen.prefixed += 1
            return p[len(WIN_PREFIX):].replace("\\", "/")
        if len(p) >= MAX_PATH and not getattr(lifted, "on", False):
            seen.refused.append(p)
            raise FileNotFoundError(errno.ENOENT, "The system cannot find the path specified", p)
        return p

    def wrap(fn, *positions):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            if kwargs.get("dir_fd") is None:   # relative to a folder descriptor: no length limit
                args = tuple(real(a) if i in positions else a for i, a in enumerate(args))
            return fn(*args, **kwargs)
        return call

    for name, positions in (("open", (0,)), ("stat", (0,)), ("lstat", (0,)), ("mkdir", (0,)),
                            ("replace", (0, 1)), ("rename", (0, 1)), ("unlink", (0,)), ("remove", (0,)),
                            ("rmdir", (0,)), ("scandir", (0,)), ("listdir", (0,)), ("utime", (0,)),
                            ("chmod", (0,)), ("symlink", (1,)), ("readlink", (0,))):
        monkeypatch.setattr(os, name, wrap(getattr(os, name), *positions))
    monkeypatch.setattr(builtins, "open", wrap(builtins.open, 0))
    real_realpath = os.path.realpath

    def realpath(path, **kwargs):
        """Windows' realpath answers a prefixed question in the prefixed form (here: with '/')."""
        p = os.fspath(path)
        if not p.startswith(WIN_PREFIX):
            return real_realpath(p, **kwargs)
        lifted.on = True
        try:
            return WIN_PREFIX + real_realpath(real(p), **kwargs)
        finally:
            lifted.on = False

    monkeypatch.setattr(os.path, "realpath", realpath)
    windows_long_path = functools.partial(fs.long_path, windows=True)
    for module in vars(engine).values():
        if getattr(module, "long_path", None) is fs.long_path and module is not fs:
            monkeypatch.setattr(module, "long_path", windows_long_path)
    monkeypatch.setattr(fs, "long_path", windows_long_path)
    try:
        yield seen
    finally:
        monkeypatch.undo()
