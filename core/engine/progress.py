"""How the engine reports to whoever runs it: progress, warnings, cancel, time.

The engine never prints. It calls a progress callback (doing nothing by
default), collects per-file warnings (each with a code the window groups by),
checks a cancel token between files and reads time only from a clock that
tests replace with FakeClock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Callable

from core.errors import Cancelled


@dataclass
class Progress:
    """One progress report. ``phase`` is scan, copy, commit, verify, prune or restore.

    A backup scans and copies in one pass: ``*_done`` count every file handled
    (unchanged ones too), and the totals are the parent snapshot's until the scan
    has passed them, exact once the scan ended, 0 (not known yet) in a first backup.
    """

    phase: str
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    current: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """The default progress callback: ignores every report."""


class TextEnum(str, Enum):
    """An enum whose members are their string values: JSON, history and the window's JS read them.

    ``str`` hashing and formatting, so ``TextEnum`` members and the plain strings
    stored before the enums existed compare, hash and print alike.
    """

    __hash__ = str.__hash__

    def __str__(self) -> str:
        return self.value


class WarningCode(TextEnum):
    """The kinds of per-file problem a run reports (like borg's warning classes)."""

    UNREADABLE = "unreadable"                        # a file, folder or symlink could not be read: skipped
    KEPT_PREVIOUS = "kept_previous"                  # could not be read: the snapshot keeps the last version
    CHANGED_WHILE_READING = "changed_while_reading"  # copied, but copied again next run
    SPECIAL_FILE = "special_file"                    # a device or pipe: skipped
    LATEST_EDITED = "latest_edited"                  # a copy in Latest/ was edited by hand: old version lost
    LATEST_FOREIGN = "latest_foreign"                # a folder in Latest/ holds files Plugback did not put there
    SNAPSHOT_DAMAGED = "snapshot_damaged"            # the newest snapshot is damaged: everything copied again
    SYMLINK_NOT_RESTORED = "symlink_not_restored"    # restore could not make a symlink
    LOCKED = "locked"                                # open in another program (Windows): skipped or kept previous
    RENAMED = "renamed"                              # restored under another name: the target cannot hold it


@dataclass(frozen=True)
class RunWarning:
    """A per-file problem that did not stop the run; ``code`` says which kind."""

    code: WarningCode
    path: str
    message: str

    def to_dict(self) -> dict:
        return {"code": self.code.value, "path": self.path, "message": self.message}


class CancelToken:
    """Set from any thread; the engine checks it between files and raises Cancelled."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()


class Clock:
    """The engine's only source of time: wall time in UTC, a monotonic time, and waiting.

    Tests pass a FakeClock, so checkpoints and retries happen when the test says.
    """

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class FakeClock(Clock):
    """A clock that only moves when told to (for tests and table tests)."""

    current: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=timezone.utc))
    mono: float = 0.0

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        """Waiting on a fake clock is moving it: a retry loop ends at once."""
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)
        self.mono += seconds
