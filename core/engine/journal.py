"""The in-flight run's journal: what a run already placed, so an interrupted run resumes.

JSON lines in ``<set>/journal.json``: a header naming the planned snapshot and
its parent, one line per file placed, and checkpoint lines. A checkpoint is
written only after the volume was flushed, and says how many entry lines
before it are durable; only those are trusted on resume. Losing the journal
costs a re-copy, never correctness: content is always checked by its size and
the source's unchanged stat before it is reused.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from core.engine.fs import FileSystem


class Journal:
    """Appends lines for the running backup (thread-safe)."""

    def __init__(self, fs: FileSystem, path: Path, snapshot_id: str, parent: str | None,
                 carried: dict[str, dict]):
        self.fs = fs
        self.path = path
        self._lock = threading.Lock()
        self._count = 0
        self._pending: list[dict] = []
        self._f = fs.open_write(path) if not path.exists() else None
        if self._f is None:
            fs.unlink(path)
            self._f = fs.open_write(path)
        self._line({"snapshot": snapshot_id, "parent": parent})
        for info in carried.values():
            self.record(info)
        self.checkpoint()

    def _line(self, obj: dict) -> None:
        self.fs.write(self._f, (json.dumps(obj, separators=(",", ":")) + "\n").encode())

    def record(self, info: dict) -> None:
        """A file was placed (its content is on the drive, maybe not yet durable).

        Lines are kept in memory until the next checkpoint: only checkpointed
        lines are ever trusted, so writing them earlier would only cost time.
        """
        with self._lock:
            self._pending.append(info)
            self._count += 1

    def pending(self) -> int:
        with self._lock:
            return self._count

    def checkpoint(self, count: int | None = None) -> None:
        """The first ``count`` entries are durable (the caller flushed the volume after counting)."""
        with self._lock:
            pending, self._pending = self._pending, []
            self.fs.write(self._f, b"".join((json.dumps(o, separators=(",", ":")) + "\n").encode()
                                            for o in pending + [{"checkpoint": self._count if count is None else count}]))
            self.fs.fsync(self._f)

    def close(self) -> None:
        if self._f is not None:
            self.fs.close(self._f)
            self._f = None

    def remove(self) -> None:
        self.close()
        self.fs.unlink(self.path)


def load(path: Path) -> tuple[dict | None, dict[str, dict]]:
    """(header, trusted entries by set path) of an interrupted run's journal; (None, {}) if none."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None, {}
    lines = []
    for line in raw.split(b"\n"):
        try:
            lines.append(json.loads(line))
        except ValueError:
            break  # a torn last line: everything after it is untrusted anyway
    if not lines or "snapshot" not in lines[0]:
        return None, {}
    header, body = lines[0], lines[1:]
    trusted_count = 0
    for obj in body:
        if "checkpoint" in obj:
            trusted_count = obj["checkpoint"]
    entries = [o for o in body if "checkpoint" not in o][:trusted_count]
    return header, {e["p"]: e for e in entries}
