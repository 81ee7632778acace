"""What the engine's lean worker processes share (core/engine/readpool.py, core/engine/sealpool.py).

A lean worker is ``python -S -c "from <module> import child; child()" FD ARGS…``: no site
packages but the ones named, no CLI, only its module and what it imports (this one imports
``errno``, ``os``, ``stat`` and ``sys`` alone), talking to its parent over one end of a socket pair.
"""

from __future__ import annotations

import errno
import os
import stat
import sys


class Replaced(OSError):
    """The file a source's name opened is not the one the scan saw: another file (another device
    and inode number) was reached by that name, e.g. through a folder on its way swapped for a
    symbolic link since the scan. Its bytes are never stored (core/engine/sourceread.py)."""


def check_same(st: os.stat_result, ino: int, dev: int, path: str = "") -> None:
    """Raise :class:`Replaced` unless ``st`` (an opened source's ``fstat``) is the file the scan
    recorded: inode number ``ino`` on device ``dev``. 0 means "not known" (Windows' scan records
    no inode; a device of 0 is checked by inode alone)."""
    if ino and (st.st_ino != ino or (dev and st.st_dev != dev)):
        raise Replaced(errno.ESTALE, "it is not the file the scan saw (replaced since, maybe through a "
                       "folder swapped for a link)", path)


def read_open_whole(fd: int, size: int, mtime_ns: int | None = None, ino: int = 0, dev: int = 0,
                    path: str = "") -> tuple[bytes, bool]:
    """A small file's bytes from ``fd`` (which this closes) in one read, more only if it returns
    short, ``size`` bytes at most; and whether it changed since it was scanned (its size or mtime
    differs: a file that grew shows in the fstat). ``ino``, ``dev``: the scan's, for
    :func:`check_same` (raises :class:`Replaced`, the bytes read are dropped)."""
    try:
        data = os.read(fd, size)
        if 0 < len(data) < size:
            parts, got = [data], len(data)
            while got < size and (more := os.read(fd, size - got)):
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    check_same(st, ino, dev, path)
    return data, is_changed(st, len(data), mtime_ns)


def is_changed(st: os.stat_result, size: int, mtime_ns: int | None) -> bool:
    """Whether a source read as ``size`` bytes, now ``st``, changed since it was scanned: its size or
    mtime differs, or it is no longer a regular file (a FIFO or device swapped in after the scan,
    opened without waiting: fs.SOURCE_FLAGS)."""
    return (st.st_size != size or (mtime_ns is not None and st.st_mtime_ns != mtime_ns)
            or not stat.S_ISREG(st.st_mode))


def start_lean(module: str, args: list[str], packages: tuple[str, ...] = ()):
    """Start ``module``'s ``child()`` in a lean process; (the process, the parent's connection).
    ``packages``: installed packages it imports (with ``-S`` only named folders are on its path)."""
    import socket
    import subprocess
    from multiprocessing.connection import Connection

    import core

    paths = [os.path.dirname(os.path.dirname(os.path.abspath(core.__file__)))]
    for name in packages:
        paths.append(os.path.dirname(os.path.dirname(os.path.abspath(str(__import__(name).__file__)))))
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
    mine, theirs = socket.socketpair()
    try:
        # (``-c`` puts the current folder first on the path: taken off, so that no ``core`` there is imported)
        proc = subprocess.Popen([sys.executable, "-S", "-c", f"import sys; del sys.path[0]; from {module} import child; child()",
                                 str(theirs.fileno()), *args], pass_fds=(theirs.fileno(),),
                                stdin=subprocess.DEVNULL, env=env)
    except BaseException:
        mine.close()
        raise
    finally:
        theirs.close()
    return proc, Connection(mine.detach())
