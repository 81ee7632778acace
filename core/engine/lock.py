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

A restore takes the same lock (purpose "restore"): it only reads the set, but
a backup moves content from ``Latest/`` into ``objects/`` and a prune deletes
objects, so a reader needs writers kept out, and two restores gain nothing by
sharing one drive. Callers that should wait for a holder instead of failing
pass ``wait`` to :meth:`SetLock.acquire`; a set nobody on this computer can
write (a read-only drive) is restored without a lock (``required=False``).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import secrets
import stat
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from core.engine import safeio
from core.engine.atomic import replace_file
from core.engine.fs import FileSystem, host_name, translate
from core.engine.progress import CancelToken
from core.errors import PlugbackError, SetLocked

log = logging.getLogger(__name__)
STALE_AFTER = timedelta(hours=6)
MAX_LOCK_BYTES = 4 * safeio.KIB
WAIT_POLL = 0.25          # seconds between looks at a held lock while waiting for it
# Errors creating the lock file that mean "nobody here can write this set" (see ``required``).
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)

# Tokens of the locks this process holds right now. A lock file naming this process
# with a token not in here was lost by it (the drive was pulled before release could
# delete it): without this, a long-running agent would lock itself out of that set
# until it restarts, because its own pid is alive.
_held_tokens: set[str] = set()
_held_mutex = threading.Lock()


class SetLock:
    """Context manager holding a set's lock. ``refresh()`` keeps a long run's lock fresh."""

    def __init__(self, path: Path, clock, purpose: str = "backup", machine: str | None = None, *,
                 required: bool = True):
        self.path = Path(path)
        self.clock = clock
        self.purpose = purpose
        self.machine = machine or machine_id()
        # False (restores): a lock file that cannot be created because the set is read-only here
        # (EROFS, EACCES, EPERM) is no reason to refuse; the run goes on without it (``held`` False).
        self.required = required
        self.held = False
        self.token = secrets.token_hex(8)

    def _record(self) -> bytes:
        return json.dumps({"host": host_name(), "machine": self.machine, "pid": os.getpid(),
                           "purpose": self.purpose, "time": self.clock.now().isoformat(),
                           "token": self.token}).encode()

    def acquire(self, wait: float = 0, cancel: CancelToken | None = None,
                on_wait: Callable[[dict], None] | None = None) -> "SetLock":
        """Take the lock; SetLocked when another live holder has it.

        ``wait`` > 0: while a live holder has it, look again every WAIT_POLL seconds
        for up to ``wait`` seconds (``cancel`` stops the wait with Cancelled), calling
        ``on_wait(holder record)`` first and whenever the holder changes.
        """
        deadline = self.clock.monotonic() + wait
        seen = None
        while True:
            try:
                return self._try_acquire()
            except SetLocked as err:
                holder = err.details.get("record") or {}
                if self.clock.monotonic() >= deadline:
                    raise
            if cancel is not None:
                cancel.check()
            who = (holder.get("pid"), holder.get("host"), holder.get("token"), holder.get("purpose"))
            if on_wait is not None and who != seen:
                on_wait(holder)
            seen = who
            self.clock.sleep(min(WAIT_POLL, max(0.0, deadline - self.clock.monotonic())))

    def _try_acquire(self) -> "SetLock":
        # Known as held before the file exists: a thread of this process that reads the
        # file a moment later must not take it for a lost (stale) lock of ours.
        with _held_mutex:
            _held_tokens.add(self.token)
        try:
            self._acquire()
        except BaseException:
            self._forget_token()
            raise
        if not self.held:   # not required and read-only: nothing to keep known
            self._forget_token()
        return self

    def _forget_token(self) -> None:
        with _held_mutex:
            _held_tokens.discard(self.token)

    def holder(self) -> dict | None:
        """The record of the live process holding this lock now (``{}`` when it cannot be read yet);
        None when it is free or stale. Test with ``is None``."""
        if not os.path.lexists(self.path):
            return None
        record = self._read()
        return None if self._stale(record) else record

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
                    except OSError as err:   # a folder in its place, or a read-only set
                        if not self.required and (err.errno in _READ_ONLY or os.path.isdir(self.path)):
                            # A stale lock nobody here can remove (or no lock at all) keeps no reader out.
                            log.info("%s without a lock: %s cannot be removed (%s)", self.purpose, self.path, err)
                            return self
                        raise translate(err, self.path, self.path.parent) from err
                    continue
                raise locked_error(holder) from None
            except OSError as err:
                if not self.required and err.errno in _READ_ONLY:
                    log.info("%s without a lock: %s cannot be created (%s)", self.purpose, self.path, err)
                    return self
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
        here = holder["machine"] == self.machine if "machine" in holder else holder["host"] == host_name()
        if here:
            pid = holder.get("pid")
            if pid == os.getpid() and "token" in holder:
                with _held_mutex:
                    return holder["token"] not in _held_tokens
            import psutil  # (only when a lock is found held: not on every run's start)

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
        raw = f"node:{node:012x}" if not node & (1 << 40) else f"host:{host_name()}"   # bit 40: random
    return hashlib.sha256(b"plugback-lock\0" + raw.encode()).hexdigest()[:32]


def _os_machine_id() -> str | None:
    try:
        if sys.platform == "win32":
            import winreg

            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography") as key:
                return str(winreg.QueryValueEx(key, "MachineGuid")[0]).strip() or None
        if sys.platform == "darwin":
            import subprocess  # (here only: its import is a few ms of every backup elsewhere)

            try:
                out = subprocess.run(["/usr/sbin/ioreg", "-rd1", "-c", "IOPlatformExpertDevice"],
                                     capture_output=True, text=True, timeout=10).stdout
            except subprocess.SubprocessError:
                return None
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
    except OSError:
        return None
    return None


def locked_error(holder: dict) -> SetLocked:
    """The SetLocked a caller gets for ``holder``; a restore holding it is named as one."""
    if holder.get("purpose") == "restore":
        return SetLocked(f"A restore is reading this backup set right now ({_describe(holder)}). Wait for it "
                         "to finish, or stop it, then try again.", holder=_describe(holder), record=holder)
    return SetLocked(holder=_describe(holder), record=holder)


def _describe(holder: dict) -> str:
    if not holder:
        return "unknown process"
    return f"{holder.get('purpose', 'backup')} by process {holder.get('pid')} on {holder.get('host')} since {holder.get('time')}"
