"""How the engine reports to whoever runs it: progress, warnings, cancel, time.

The engine never prints. It calls a progress callback (doing nothing by
default), collects per-file warnings, checks a cancel token between files and
reads time from a clock that tests can replace.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable

from core.errors import Cancelled


@dataclass
class Progress:
    """One progress report. ``phase`` is scan, copy, commit, verify, prune or restore."""

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


@dataclass(frozen=True)
class RunWarning:
    """A per-file problem that did not stop the run (file skipped, unreadable)."""

    path: str
    message: str

    def to_dict(self) -> dict:
        return {"path": self.path, "message": self.message}


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
    """Wall time in UTC. Tests pass a FakeClock instead."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class FakeClock(Clock):
    """A clock that only moves when told to (for tests and table tests)."""

    current: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=timezone.utc))
    mono: float = 0.0

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.current += timedelta(seconds=seconds)
        self.mono += seconds
