"""One writer per set: a lock file holding host, pid and time.

The lock is created with O_EXCL, so two writers can never both hold it. A lock
is stale when its process is gone from this host, or when it has not been
refreshed for STALE_AFTER (a writer on another computer that crashed); a stale
lock is broken with a log line, never silently.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil

from core.engine.atomic import replace_file
from core.engine.fs import FileSystem, translate
from core.errors import SetLocked

log = logging.getLogger(__name__)
STALE_AFTER = timedelta(hours=6)

# Tokens of the locks this process holds right now. A lock file naming this process
# with a token not in here was lost by it (the drive was pulled before release could
# delete it): without this, a long-running agent would lock itself out of that set
# until it restarts, because its own pid is alive.
_held_tokens: set[str] = set()
_held_mutex = threading.Lock()


class SetLock:
    """Context manager holding a set's lock. ``refresh()`` keeps a long run's lock fresh."""

    def __init__(self, path: Path, clock, purpose: str = "backup"):
        self.path = Path(path)
        self.clock = clock
        self.purpose = purpose
        self.held = False
        self.token = secrets.token_hex(8)

    def _record(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "purpose": self.purpose,
                           "time": self.clock.now().isoformat(), "token": self.token}).encode()

    def acquire(self) -> "SetLock":
        # Known as held before the file exists: a thread of this process that reads the
        # file a moment later must not take it for a lost (stale) lock of ours.
        with _held_mutex:
            _held_tokens.add(self.token)
        try:
            return self._acquire()
        except BaseException:
            with _held_mutex:
                _held_tokens.discard(self.token)
            raise

    def _acquire(self) -> "SetLock":
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._read()
                if self._stale(holder):
                    log.warning("Breaking stale lock on %s held by %s", self.path, holder)
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                raise SetLocked(holder=_describe(holder)) from None
            except OSError as err:
                raise translate(err, self.path, self.path.parent) from err
            try:
                os.write(fd, self._record())
            except OSError as err:
                raise translate(err, self.path, self.path.parent) from err
            finally:
                os.close(fd)
            self.held = True
            return self
        raise SetLocked(holder="another process")

    def refresh(self) -> None:
        """Rewrite the lock's time, so other computers do not take a long run's lock for stale."""
        if self.held:
            # The set's FileSystem maps errors: a pulled drive is DriveGone, not FileNotFoundError.
            replace_file(self.path, self._record(), fs=FileSystem(self.path.parent), durable=False)

    def release(self) -> None:
        if self.held:
            self.held = False
            with _held_mutex:
                _held_tokens.discard(self.token)
            try:
                os.unlink(self.path)
            except OSError:
                pass  # drive gone: the lock is stale by pid next time

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _stale(self, holder: dict) -> bool:
        if not holder:
            # Unreadable: a writer may be between create and write; only old files are stale.
            try:
                age = self.clock.now().timestamp() - self.path.stat().st_mtime
            except OSError:
                return True
            return age > 60
        if holder.get("host") == socket.gethostname():
            pid = holder.get("pid")
            if pid == os.getpid() and "token" in holder:
                with _held_mutex:
                    return holder["token"] not in _held_tokens
            return not (isinstance(pid, int) and psutil.pid_exists(pid))
        try:
            t = datetime.fromisoformat(holder["time"])
        except (KeyError, ValueError):
            return True
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        return self.clock.now() - t > STALE_AFTER

    def __enter__(self) -> "SetLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(holder: dict) -> str:
    if not holder:
        return "unknown process"
    return f"{holder.get('purpose', 'backup')} by process {holder.get('pid')} on {holder.get('host')} since {holder.get('time')}"
