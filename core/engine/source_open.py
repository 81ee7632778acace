"""The one way a backup opens a source file: never waited on, never through a symbolic link.

A regular file found by the scan may have been replaced before it is read. One replaced by a
FIFO (or a device) is opened without waiting (``O_NONBLOCK``: no effect on a regular file), and
the reader's ``fstat`` then calls the file changed (``lean_child.is_changed``). One replaced by
a symlink is not opened at all (``O_NOFOLLOW``: ELOOP), so a link's target is never stored under
the file's name; ``core/engine/sourceread.py`` reports it ("became a symbolic link after it was
scanned") and the snapshot keeps the previous version.

Windows has no ``O_NOFOLLOW``: there :func:`open_source` is ``winopen.open_no_follow``
(``CreateFileW`` with ``FILE_FLAG_OPEN_REPARSE_POINT``; a symlink or junction raises ELOOP as
on POSIX). On Linux and macOS it is today's ``os.open`` and nothing more: this is every backup's
hot path. Only ``os`` and ``sys`` are imported here (``winopen`` and ``ctypes`` on Windows only),
so the lean seal workers (core/engine/sealpool.py) open sources through it too.
"""

from __future__ import annotations

import os
import sys

#: ``os.open``'s flags for a source file (POSIX; Windows opens through ``winopen``).
SOURCE_FLAGS = (os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
                | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))

if sys.platform == "win32":
    from core.engine import winopen

    def open_source(path: str) -> int:
        """A read descriptor of the source file ``path`` (in ``fs.long_path`` form), never
        following a symbolic link or junction (``OSError`` ELOOP: ``core.errors.refused_symlink``)."""
        return winopen.open_no_follow(path)
else:
    def open_source(path: str) -> int:
        """A read descriptor of the source file ``path``, opened without waiting and never through
        a symbolic link (``OSError`` ELOOP, or FreeBSD's EMLINK: ``core.errors.refused_symlink``)."""
        return os.open(path, SOURCE_FLAGS)
