"""One writer per set on storage that has no exclusive create: restic-style lock blobs.

A holder writes ``locks/<random id>`` (host, machine, pid, purpose, time), then lists
``locks/`` again: if another live lock is there it withdraws its own and fails, so
two writers that start together both back off rather than both proceed (restic
does the same). A long run calls :meth:`RemoteLock.refresh` (a new lock blob with
the current time, then the old one deleted: names stay immutable).

A lock is stale when its time is older than ``stale_after``, since the remote
cannot tell whether a process on another computer lives; on this computer (the
same ``machine``) a lock whose process is gone is stale at once, and so is one of
this very process that no :class:`RemoteLock` here holds any more (a release that
failed when the connection dropped: the agent lives on and runs the next backup).
A lock blob that does not decode is stale too: puts are atomic, so it was never a writer's lock.
Stale locks are deleted with a log line, never silently.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
from datetime import datetime, timedelta, timezone

import psutil

from core.engine.lock import decode_holder, machine_id
from core.engine.progress import Clock
from core.engine.storage.base import Backend, read_all
from core.errors import BlobNotFound, DriveFileDamaged, SetLocked

log = logging.getLogger(__name__)
FOLDER = "locks"
STALE_AFTER = timedelta(minutes=30)
REFRESH_EVERY = timedelta(minutes=5)    # well inside STALE_AFTER, even with a slow remote
MAX_LOCK_BYTES = 4096
_held: set[str] = set()     # (where, name) of the lock blobs this process holds now
_held_mutex = threading.Lock()


class RemoteLock:
    """Context manager holding a set's lock on a backend. ``refresh_if_due()`` from a long run's loop."""

    def __init__(self, backend: Backend, clock: Clock | None = None, purpose: str = "backup", *,
                 stale_after: timedelta = STALE_AFTER, refresh_every: timedelta = REFRESH_EVERY,
                 machine: str | None = None, pid: int | None = None):
        self.backend = backend
        self.clock = clock or Clock()
        self.purpose = purpose
        self.stale_after, self.refresh_every = stale_after, refresh_every
        self.machine = machine or machine_id()
        self.pid = pid or os.getpid()
        self.name: str | None = None          # our lock blob while held
        self.blocked_by: dict | None = None   # the holder record that made the last acquire fail
        self._written: datetime | None = None

    def acquire(self) -> "RemoteLock":
        """Take the lock; :class:`SetLocked` naming the holder when another writer has it."""
        self._check_others()
        self._write()
        try:
            self._check_others()   # someone who started at the same moment: both withdraw
        except BaseException:
            self.release()
            raise
        return self

    def refresh(self) -> None:
        """Write a fresh lock blob (the current time), then delete the previous one."""
        old = self.name
        self._write()
        if old:
            _forget_held(self.backend.where, old)
            self.backend.delete(old)

    def refresh_if_due(self) -> None:
        if self._written is not None and self.clock.now() - self._written >= self.refresh_every:
            self.refresh()

    def release(self) -> None:
        name, self.name, self._written = self.name, None, None
        if name:
            _forget_held(self.backend.where, name)
            self.backend.delete(name)

    def __enter__(self) -> "RemoteLock":
        return self if self.name else self.acquire()   # (taken already: a caller that waited for it)

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.release()
            return
        try:
            self.release()
        except Exception as err:  # noqa: BLE001 - the run's own error is the one to report
            # (A dropped connection fails the release too; the lock blob is stale from now on.)
            log.warning("Could not remove the lock on %s: %s", self.backend.where, err)

    # --- helpers -------------------------------------------------------------------------
    def _write(self) -> None:
        now = self.clock.now()
        record = {"host": socket.gethostname(), "machine": self.machine, "pid": self.pid,
                  "purpose": self.purpose, "time": now.isoformat()}
        name = f"{FOLDER}/{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(8)}"
        with _held_mutex:
            _held.add(f"{self.backend.where}\0{name}")
        try:
            self.backend.put(name, json.dumps(record).encode())
        except BaseException:
            _forget_held(self.backend.where, name)
            raise
        self.name, self._written = name, now

    def _check_others(self) -> None:
        for info in self.backend.list(FOLDER):
            if info.name == self.name:
                continue
            holder = self._read(info.name)
            if holder is None:
                continue
            if self.is_stale(holder, info.name):
                log.warning("Breaking a stale lock on %s: %s (%s)", self.backend.where, info.name, _who(holder))
                self.backend.delete(info.name)
                continue
            self.blocked_by = holder
            raise SetLocked(holder=_who(holder))

    def _read(self, name: str) -> dict | None:
        """The holder record, {} when it does not decode, None when it is gone (released meanwhile)."""
        try:
            return decode_holder(read_all(self.backend, name, MAX_LOCK_BYTES))
        except BlobNotFound:
            return None
        except DriveFileDamaged:
            return {}

    def is_stale(self, holder: dict, name: str | None = None) -> bool:
        """Whether a lock record (of the blob ``name``) no longer keeps anyone out (see the module docstring)."""
        try:
            t = datetime.fromisoformat(holder["time"])
        except (KeyError, TypeError, ValueError):
            return True
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        if holder.get("machine") == self.machine and holder.get("pid") == self.pid and name is not None:
            with _held_mutex:
                if f"{self.backend.where}\0{name}" not in _held:
                    return True     # ours, from a run of this process that could not remove it
        if holder.get("machine") == self.machine and holder.get("pid") != self.pid:
            pid = holder.get("pid")
            if not (isinstance(pid, int) and psutil.pid_exists(pid)):
                return True
        # A time far in the future (a wrong clock) must not keep the set locked for ever either.
        return abs(self.clock.now() - t) > self.stale_after


def _forget_held(where: str, name: str) -> None:
    with _held_mutex:
        _held.discard(f"{where}\0{name}")


def _who(holder: dict) -> str:
    return (f"{holder.get('purpose', 'a run')} on {holder.get('host', 'an unknown computer')}, "
            f"pid {holder.get('pid', '?')}, since {holder.get('time', '?')}")
