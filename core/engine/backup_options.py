"""What a backup is asked to do and what it reports: the options, the result, the source check
(core/engine/backup.py runs it; these are apart so that module stays one concern)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Sequence

from core.engine.changes import ChangeHint
from core.engine.fs import WORKERS
from core.engine.prefetch import Prefetch
from core.engine.progress import CancelToken, Clock, ProgressCallback, RunWarning, TextEnum, no_progress
from core.engine.scan import ScanEntry, is_inside, plan_sources
from core.errors import UsageError


class BackupStatus(TextEnum):
    """How a backup ended: ``warnings`` = some files skipped, ``damaged`` = read-back failed."""

    OK = "ok"
    WARNINGS = "warnings"
    DAMAGED = "damaged"


@dataclass(frozen=True)
class BackupOptions:
    """How to run one backup; the defaults are an everyday run.

    ``host`` defaults to the set's recorded host, then this computer's name.
    ``boundary``: a trusted folder above the set (the drive's mount point) from which
    down no symlink may lead; default the set folder itself. The
    hooks (``progress``, ``cancel``, ``clock``) do nothing / never cancel / read
    the real time unless given.
    """

    excludes: Sequence[str] = ()
    rehash: bool = False
    job: str = ""
    host: str | None = None
    verify: bool = True
    boundary: Path | None = None
    workers: int = WORKERS
    progress: ProgressCallback = no_progress
    cancel: CancelToken = field(default_factory=CancelToken)
    clock: Clock = field(default_factory=Clock)
    #: Folders that changed since the parent snapshot (the agent's change journal); None: full scan.
    changes: ChangeHint | None = None
    #: A folder on this computer (never the drive) for the record of the manifests it wrote (trust.py).
    cache: Path | None = None
    #: The sources' folders already being read ahead (core/engine/prefetch.py: ``plugback backup``
    #: starts it before loading the engine); the run stops it. None: a full scan starts its own.
    prefetch: Prefetch | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "excludes", tuple(self.excludes))


@dataclass
class BackupResult:
    """What a run did; ``damaged`` names files that read back wrong; ``scan``: "full", or
    "journal" when the change hint was used (core/engine/changes.py)."""

    set_path: str
    snapshot_id: str
    status: BackupStatus
    files_scanned: int = 0
    bytes_scanned: int = 0
    files_copied: int = 0
    bytes_copied: int = 0
    warnings: list[RunWarning] = field(default_factory=list)
    damaged: list[tuple[str, str]] = field(default_factory=list)
    started: datetime | None = None
    ended: datetime | None = None
    scan: str = "full"

    def to_dict(self) -> dict:
        return {"set": self.set_path, "snapshot_id": self.snapshot_id, "status": self.status.value, "scan": self.scan,
                "files_scanned": self.files_scanned, "bytes_scanned": self.bytes_scanned,
                "files_copied": self.files_copied, "bytes_copied": self.bytes_copied,
                "warnings": [w.to_dict() for w in self.warnings],
                "damaged": [{"path": p, "reason": r} for p, r in self.damaged],
                "started": self.started.isoformat() if self.started else None,
                "ended": self.ended.isoformat() if self.ended else None}


def check_sources(sources, set_path) -> list[str]:
    """``sources`` as absolute paths, checked: each exists and none lies inside the set.

    :func:`backup` checks again; callers that create a set call this first, so a
    typo in a source never leaves an empty new set behind.
    """
    if not sources:
        raise UsageError("Give at least one folder to back up.")
    paths = [os.path.abspath(os.path.expanduser(str(s))) for s in sources]
    plan_sources(paths)
    root = os.path.abspath(set_path)
    for s in paths:
        if is_inside(s, root):
            raise UsageError(f"The folder {s} lies inside the backup set {root}. Back up a folder "
                             "outside the set.")
    return paths


def same_stat(old, se: ScanEntry) -> bool:
    """The file is unchanged since ``old`` was recorded (size, mtime, inode and ctime all equal)."""
    return (old.size == se.size and old.mtime_ns == se.mtime_ns and old.ino == se.ino
            and old.ctime_ns == se.ctime_ns)
