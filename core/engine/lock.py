"""One writer per set: a lock file holding host, machine, pid and time.

The lock is created with O_EXCL, so two writers can never both hold it. A lock
is stale when its process is gone from this computer, or when it has not been
refreshed for STALE_AFTER (a writer on another computer that crashed); a stale
lock is broken with a log line, never silently.

"This computer" is the ``machine`` field, not the host name: two computers
called "laptop" would otherwise each take the other's live lock for a dead
process of their own and break it. It is a hash of the OS's machine id
(:func:`machine_id`); a lock written without one (older Plugback) falls back
to comparing host names.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import secrets
import socket
import stat
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil

from core.engine import safeio
from core.engine.atomic import replace_file
from core.engine.fs import FileSystem, translate
from core.errors import PlugbackError, SetLocked

log = logging.getLogger(__name__)
STALE_AFTER = timedelta(hours=6)
MAX_LOCK_BYTES = 4 * safeio.KIB

# Tokens of the locks this process holds right now. A lock file naming this process
# with a token not in here was lost by it (the drive was pulled before release could
# delete it): without this, a long-running agent would lock itself out of that set
# until it restarts, because its own pid is alive.
_held_tokens: set[str] = set()
_held_mutex = threading.Lock()


class SetLock:
    """Context manager holding a set's lock. ``refresh()`` keeps a long run's lock fresh."""

    def __init__(self, path: Path, clock, purpose: str = "backup", machine: str | None = None):
        self.path = Path(path)
        self.clock = clock
        self.purpose = purpose
        self.machine = machine or machine_id()
        self.held = False
        self.token = secrets.token_hex(8)

    def _record(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "machine": self.machine, "pid": os.getpid(),
                           "purpose": self.purpose, "time": self.clock.now().isoformat(),
                           "token": self.token}).encode()

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
                    except OSError as err:   # a folder in its place: not a lock Plugback made
                        raise translate(err, self.path, self.path.parent) from err
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
        """The holder's record, checked; {} when it cannot be read or is not a lock record."""
        try:
            return decode_holder(safeio.read_bytes(self.path, MAX_LOCK_BYTES))
        except (OSError, PlugbackError):
            return {}

    def _stale(self, holder: dict) -> bool:
        if not holder:
            # Unreadable: a writer may be between create and write; only old files are stale.
            # (lstat: whatever is there, a FIFO or a symlink, is judged by its own age.)
            try:
                age = self.clock.now().timestamp() - os.lstat(self.path).st_mtime
            except OSError:
                return True
            return age > 60
        here = holder["machine"] == self.machine if "machine" in holder else holder["host"] == socket.gethostname()
        if here:
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


def decode_holder(raw: bytes) -> dict:
    """A lock file's record with only fields of the right type; {} if it is not a lock record."""
    try:
        d = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(d, dict) or not isinstance(d.get("host"), str):
        return {}
    out = {"host": d["host"][:256]}
    for key, kind in (("machine", str), ("pid", int), ("purpose", str), ("time", str), ("token", str)):
        v = d.get(key)
        if (kind is int and isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1 << 32
                or kind is str and isinstance(v, str) and len(v) <= 256):
            out[key] = v
    return out


@functools.lru_cache(maxsize=1)
def machine_id() -> str:
    """This computer's id in lock records: a hash of the OS's machine id (never the id itself).

    Linux: /etc/machine-id; Windows: the MachineGuid registry value; macOS: the
    IOPlatformUUID. Where none can be read, the network card's address
    (``uuid.getnode``), and as a last resort the host name, which makes two
    computers of the same name look alike again (the behaviour before this field).
    """
    raw = _os_machine_id()
    if not raw:
        node = uuid.getnode()
        raw = f"node:{node:012x}" if not node & (1 << 40) else f"host:{socket.gethostname()}"   # bit 40: random
    return hashlib.sha256(b"plugback-lock\0" + raw.encode()).hexdigest()[:32]


def _os_machine_id() -> str | None:
    try:
        if sys.platform == "win32":
            import winreg

            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography") as key:
                return str(winreg.QueryValueEx(key, "MachineGuid")[0]).strip() or None
        if sys.platform == "darwin":
            out = subprocess.run(["/usr/sbin/ioreg", "-rd1", "-c", "IOPlatformExpertDevice"],
                                 capture_output=True, text=True, timeout=10).stdout
            for line in out.splitlines():
                if "IOPlatformUUID" in line:
                    return line.split("=")[-1].strip().strip('"') or None
            return None
        for name in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
            if os.path.exists(name) and stat.S_ISREG(os.stat(name).st_mode):
                with open(name, encoding="ascii", errors="replace") as f:
                    text = f.read(256).strip()
                if text:
                    return text
    except (OSError, subprocess.SubprocessError):
        return None
    return None


def _describe(holder: dict) -> str:
    if not holder:
        return "unknown process"
    return f"{holder.get('purpose', 'backup')} by process {holder.get('pid')} on {holder.get('host')} since {holder.get('time')}"
