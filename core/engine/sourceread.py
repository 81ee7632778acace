"""Reading one source file for a backup, when it may be locked or briefly unreadable.

On Windows a program can open a file without sharing it (Outlook's .pst, a
database, a VM disk): opening it raises ``PermissionError`` with ``winerror``
32 (ERROR_SHARING_VIOLATION), and reading a range another program locked
raises winerror 33 (ERROR_LOCK_VIOLATION). Such a lock often lasts a moment (a
save in progress), so the read is tried again with a growing wait; a file still
locked then is reported with its own warning (``locked``, naming the file) and
the run goes on: the snapshot keeps the previous version when there is one,
else the file is left out until the next run. Other read errors get the
shorter, older retry. All waits are on the run's clock (tests pass FakeClock).
"""

from __future__ import annotations

from core.engine.lean_child import Replaced
from core.engine.progress import Clock, RunWarning, WarningCode
from core.engine.winattrs import is_locked
from core.errors import PlugbackError, refused_symlink

#: Waits between tries of a locked file (about 4 s in all, per locked file; workers wait in parallel).
LOCKED_DELAYS = (0.25, 0.5, 1.0, 2.0)
SOURCE_RETRIES = 3          # a briefly unreadable file is tried this often
SOURCE_RETRY_DELAY = 0.2


def read_with_retries(store, se, e, prev, clock: Clock, warnings: list[RunWarning], fd: int = -1):
    """``store.copy_in(se)``'s content, or None when ``se`` could not be read.

    ``e`` is the new entry (its hash cleared, or the previous version's fields set,
    when the file is not read); ``prev`` the parent snapshot's entry or None. ``fd``: ``se``
    opened ahead (core/engine/source_ahead.py), for the first try (which closes it).
    A source replaced by a symlink since the scan is never followed (the open refuses it:
    ELOOP) nor tried again: it is reported, as a file that could not be read. So is a file that
    is not the one the scan saw (``lean_child.Replaced``: another inode, reached through a folder
    swapped for a link since the scan): what was read of it is dropped, never stored.
    """
    tries = 0
    while True:
        try:
            if fd >= 0:
                fd, first = -1, fd
                return store.copy_in(se, fd=first)
            return store.copy_in(se)
        except PlugbackError:
            raise
        except FileNotFoundError:
            # Deleted since the scan: it leaves the snapshot, and Latest/ as well.
            if prev is not None:
                store.displace(prev)
            e.sha256 = None
            return None
        except OSError as err:
            delays = LOCKED_DELAYS if is_locked(err) else (SOURCE_RETRY_DELAY,) * (SOURCE_RETRIES - 1)
            if tries < len(delays) and not refused_symlink(err) and not isinstance(err, Replaced):
                clock.sleep(delays[tries])
                tries += 1
                continue
            warnings.append(_give_up(err, se, e, prev))
            return None


def _give_up(err: OSError, se, e, prev) -> RunWarning:
    locked = is_locked(err)
    why = ("is open in another program that does not let others read it" if locked
           else "became a symbolic link after it was scanned (not followed)" if refused_symlink(err)
           else "is not the file that was scanned (replaced since, or a folder on its way became a link: "
                "not followed)" if isinstance(err, Replaced)
           else f"could not be read ({err.strerror or err})")
    if prev is not None:
        # Keep the version the last snapshot had; it is still in the set.
        e.sha256, e.size, e.mtime_ns, e.parts, e.obj = prev.sha256, prev.size, prev.mtime_ns, prev.parts, prev.obj
        e.ino = e.ctime_ns = 0
        e.stored = prev.stored
        code = WarningCode.LOCKED if locked else WarningCode.KEPT_PREVIOUS
        return RunWarning(code, se.abspath, f"{why}; the snapshot keeps its previous version")
    e.sha256 = None
    code = WarningCode.LOCKED if locked else WarningCode.UNREADABLE
    return RunWarning(code, se.abspath, f"{why}, skipped" + ("; close it and back up again" if locked else ""))
