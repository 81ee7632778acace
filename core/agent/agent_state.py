"""The agent's plain records: its options, a pending connect, and what the tray shows.

Kept apart from :mod:`core.agent.agent` (the behaviour) so that module stays one concern.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import psutil

from core.agent.rolling import DELAY as ROLLING_DELAY
from core.agent.rolling import FLOOR


@dataclass
class PendingConnect:
    """Automatic backups waiting out the short, cancellable delay after a drive appeared."""

    drive_id: str
    jobs: list[str]
    starts_at: datetime
    timer: threading.Timer | None = None
    held: bool = False   # waits for the Restore page to close (core.agent.restore_first), no timer


@dataclass
class AgentOptions:
    """Knobs the tests and ``__main__`` set."""

    poll_interval: float = 2.0
    schedule_check_seconds: int = 60
    # psutil.sensors_battery: None, or a reading with ``power_plugged`` and ``percent``
    battery: Callable[[], Any] = psutil.sensors_battery
    settings_command: list[str] | None = None
    rolling_floor: int = FLOOR     # the least a rolling-check slice reads (core/agent/rolling_state.py)
    rolling_delay: float = ROLLING_DELAY   # seconds from "safe to unplug" to the slice (core/agent/rolling.py)


@dataclass
class DriveState:
    """An enrolled drive as the menu sees it (``mount`` None = not connected)."""

    drive_id: str
    label: str
    mount: str | None


@dataclass
class TrayState:
    """What the icon and its menu show; built fresh each time (tray/menu.py reads it)."""

    now: datetime
    jobs: list[dict]
    drives: list[DriveState]
    running: list[dict]            # [{"job", "percent", "phase"}]
    pending: list[PendingConnect]
    paused: bool
    paused_until: datetime | None
    problem: str | None
    backend: str = ""
    busy_drives: set = field(default_factory=set)
    offers: list = field(default_factory=list)       # core.agent.offers.Offer: drives Plugback could use
    reminders: list = field(default_factory=list)    # core.agent.rotation.Reminder: jobs not backed up for long
