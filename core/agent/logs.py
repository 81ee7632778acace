"""Plugback's own log files (``agent.log``, ``settings.log``): rotating, and readable by this user only.

A log names the user's folders, jobs and drives. ``RotatingFileHandler`` alone
makes files 0644 under the usual umask; :class:`PrivateLogHandler` creates each
file 0600 (the first one and every one after a rollover) and tightens files an
older version left readable. The folder they live in is made 0700 by
:meth:`core.agent.config.Paths.ensure` (docs/security.md, "Local files").
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
from pathlib import Path

#: The line format of every Plugback log file.
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class PrivateLogHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file only this user can read: created 0600, and so is each new file after a rollover."""

    def __init__(self, filename, *args, **kwargs):
        super().__init__(filename, *args, **kwargs)
        if sys.platform != "win32":
            for i in range(1, self.backupCount + 1):   # rolled-over files an older version left 0644
                with contextlib.suppress(OSError):
                    os.chmod(f"{self.baseFilename}.{i}", 0o600)

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if sys.platform != "win32":
            with contextlib.suppress(OSError):   # a file system without permissions (portable, on FAT)
                os.fchmod(fd, 0o600)   # a file an older version made readable
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


def private_log(path: Path, *, max_bytes: int, backups: int) -> PrivateLogHandler:
    """A :class:`PrivateLogHandler` at ``path`` with Plugback's line format, ready for ``addHandler``."""
    handler = PrivateLogHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler
