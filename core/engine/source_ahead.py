"""The small source files a backup's pass will copy, opened a little ahead of their copy.

The pass (core/engine/backup.py) copies small files one after the other in its own thread. It
looks :data:`PREFETCH` entries ahead: each small file it will copy is opened then and its read
started (``store.prefetch_source``: ``posix_fadvise`` WILLNEED), so the drive works on several
at once. The descriptor is kept for the copy, which reads from it (``store.copy_in``'s ``fd``)
instead of opening the file again: one ``open`` and one ``close`` a file fewer than opening
twice (issue #11: a small file's backup cost ~21 system calls against ``cp -a``'s ~10).

Safe as the copy's own open was: the file is opened without following a symlink and without
waiting (a FIFO swapped in is not waited on); the copy's ``fstat`` on the same descriptor still
tells a file that changed (or is no longer a regular file) since the scan. A descriptor the
copy did not take (the file turned out not to need a copy, or its copy went to a worker) is
closed once the pass has moved past its entry; :meth:`OpenAhead.close` closes the rest (a
run that fails or is cancelled leaves none open). At most :data:`PREFETCH` are open at once.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Callable, Iterable, Iterator

from core.engine import store
from core.engine.splice import Splice

PREFETCH = 64        # entries the pass looks ahead, to start reading the files it will copy
SPLICES_AHEAD = 2    # ... of which runs of kept lines at most (each holds up to a piece of text)


class OpenAhead:
    """Descriptors of the files ahead, by source path. ``wanted(item)``: the path of the small
    file an item of the pass will copy, or None."""

    def __init__(self, wanted: Callable[[object], str | None]):
        self._wanted = wanted
        self._fds: dict[str, int] = {}

    def scanning(self, entries: Iterable) -> Iterator:
        """``entries``, :data:`PREFETCH` ahead (runs of kept lines, a Splice each, held back
        :data:`SPLICES_AHEAD` at most); each file wanted is opened as it enters the look-ahead,
        and its descriptor, if the copy did not take it, closed when the pass asks for the entry
        after it."""
        ahead: deque = deque()
        splices = 0
        for item in entries:
            ahead.append(item)
            path = self._wanted(item)
            if path is not None:
                fd = store.prefetch_source(path)
                if fd >= 0:
                    self._fds[path] = fd
            splices += type(item) is Splice
            while len(ahead) > PREFETCH or splices > SPLICES_AHEAD:
                out = ahead.popleft()
                splices -= type(out) is Splice
                yield out
                self._drop(out)
        while ahead:
            out = ahead.popleft()
            yield out
            self._drop(out)

    def take(self, path: str) -> int:
        """The descriptor ``path`` was opened with ahead (now the caller's to close), or -1."""
        return self._fds.pop(path, -1)

    def _drop(self, item) -> None:
        if self._fds and type(item) is tuple and item[0] is not None:
            fd = self._fds.pop(item[0].abspath, -1)
            if fd >= 0:
                os.close(fd)

    def close(self) -> None:
        """Close every descriptor still held (the pass ended, or failed)."""
        while self._fds:
            try:
                fd = self._fds.popitem()[1]
            except KeyError:   # (the copy took the last one meanwhile)
                return
            os.close(fd)
