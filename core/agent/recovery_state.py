"""Which encrypted sets' recovery keys were shown, and which the user said were kept (issue #15).

A new encrypted set's recovery key is shown once after its first backup; until the user
confirms "I have kept the recovery key", the window reminds them. The record is a small
JSON file in the data folder, ``recovery-keys.json``: ``{"shown": [set ids],
"confirmed": [set ids]}``. It holds no secret, only set ids. It is written atomically;
a missing or unreadable file means nothing was shown yet (the worst case is one more
reminder, never a lost key).
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from core.engine.atomic import replace_file
from core.errors import BadRequest

FILE_NAME = "recovery-keys.json"
_SET_ID = re.compile(r"^[0-9a-zA-Z_-]{1,64}$")


def check_set_id(value) -> str:
    """A set id as a set's ``plugback.json`` writes it; anything else is a bad request."""
    if not isinstance(value, str) or not _SET_ID.match(value):
        raise BadRequest(reason="'set_id' must be a backup set's id")
    return value


class RecoveryKeyState:
    """The shown / confirmed record in ``<data dir>/recovery-keys.json``; safe across the agent's threads."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / FILE_NAME
        self._lock = threading.Lock()

    def _read(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"shown": [], "confirmed": []}
        if not isinstance(data, dict):
            return {"shown": [], "confirmed": []}
        return {key: [s for s in data.get(key, []) if isinstance(s, str)]
                if isinstance(data.get(key), list) else [] for key in ("shown", "confirmed")}

    def shown(self) -> set[str]:
        """Sets whose key the window has shown at least once."""
        return set(self._read()["shown"])

    def confirmed(self) -> set[str]:
        """Sets whose key the user said was kept."""
        return set(self._read()["confirmed"])

    def record(self, set_id: str, *, confirmed: bool) -> None:
        """The key of ``set_id`` was shown (and, with ``confirmed``, kept)."""
        with self._lock:
            data = self._read()
            keys = ("shown", "confirmed") if confirmed else ("shown",)
            for key in keys:
                if set_id not in data[key]:
                    data[key].append(set_id)
            replace_file(self.path, json.dumps(data, indent=1).encode("utf-8"), mode=0o600)


def reminders(state: RecoveryKeyState, jobs) -> list[dict]:
    """``[{job, set_id, shown}]``: the encrypted jobs whose set exists and whose key was not confirmed."""
    confirmed, shown = state.confirmed(), state.shown()
    return [{"job": job.name, "set_id": job.set_id, "shown": job.set_id in shown}
            for job in jobs if job.encrypt and job.set_id and job.set_id not in confirmed]
