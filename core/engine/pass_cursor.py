"""Where a rolling verification pass stands (core/engine/scrub.py): a small value with no imports,
so the agent can keep and check it without loading the engine."""

from __future__ import annotations

from dataclasses import dataclass

#: A pass's phases, in order: objects by name, Latest/ files by path, the structure check.
PHASES = ("objects", "latest", "check", "done")
MAX_KEY = 65536     # an object name or a manifest path (paths are at most 16,384 characters)


@dataclass(frozen=True)
class Cursor:
    """A pass's phase and the last item done in it ("" = none yet)."""

    phase: str = "objects"
    key: str = ""

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def next_phase(self) -> "Cursor":
        return Cursor(PHASES[PHASES.index(self.phase) + 1])

    def to_dict(self) -> dict:
        return {"phase": self.phase, "key": self.key}

    @classmethod
    def from_dict(cls, d) -> "Cursor":
        """A cursor from stored state, checked (ValueError when it is not one)."""
        if not isinstance(d, dict) or d.get("phase") not in PHASES or not isinstance(d.get("key"), str) \
                or len(d["key"]) > MAX_KEY:
            raise ValueError("not a rolling-check cursor")
        return cls(d["phase"], d["key"])
