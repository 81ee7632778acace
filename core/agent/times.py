"""Times in the agent's own state files (journal, rolling checks): ISO text with a zone.

Those files are local but may be damaged: :func:`read_time` refuses anything but
ISO text carrying its time zone (ValueError), and the readers treat that as a
file to start over, never as a trusted value.
"""

from __future__ import annotations

from datetime import datetime


def iso(t: datetime | None) -> str | None:
    """``t`` as ISO text (None stays None)."""
    return t.isoformat() if t else None


def read_time(value) -> datetime | None:
    """An aware datetime from ISO text (None stays None); ValueError for anything else."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("a time must be ISO text")
    t = datetime.fromisoformat(value)
    if t.tzinfo is None:
        raise ValueError("a time must carry its time zone")
    return t
