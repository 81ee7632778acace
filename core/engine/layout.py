"""The one module that knows where things live on a Plugback drive and in a set.

Nobody else joins strings into ``objects/ab/...``: callers ask this module.
See docs/format.md for the format these paths make up.
"""

from __future__ import annotations

import re
from pathlib import Path

DRIVE_DIR = "Plugback"
DRIVE_FILE = "drive.json"
DRIVE_FORMAT = "plugback-drive"
SET_FILE = "plugback.json"
SET_FORMAT = "plugback-set"
FORMAT_VERSION = 1
LATEST_DIR = "Latest"
LATEST_SUMS = "Latest.sha256"
SNAPSHOTS_DIR = "snapshots"
OBJECTS_DIR = "objects"
TMP_DIR = "tmp"
LOCK_FILE = "lock"
JOURNAL_FILE = "journal.json"
MANIFEST_SUFFIX = ".json.gz"

_SNAPSHOT_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{4,}$")
_OBJECT_NAME = re.compile(r"^[0-9a-f]{64}$")


def drive_dir(mount: Path) -> Path:
    """``<mount>/Plugback``: everything Plugback keeps on a drive."""
    return Path(mount) / DRIVE_DIR


def drive_file(mount: Path) -> Path:
    """``<mount>/Plugback/drive.json``: its presence makes a volume a Plugback drive."""
    return drive_dir(mount) / DRIVE_FILE


def drive_set_path(mount: Path, host: str, job: str) -> Path:
    """Where a job's set lives on a drive: ``<mount>/Plugback/<computer>/<job>``."""
    return drive_dir(mount) / safe_component(host) / safe_component(job)


def safe_component(name: str) -> str:
    """A host or job name made safe as one folder name on any file system."""
    cleaned = re.sub(r'[<>:"/\\|?*\x00-\x1f]', "_", name).strip(" .")
    return cleaned or "_"


class SetLayout:
    """Paths inside one backup set rooted at ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def meta(self) -> Path:
        return self.root / SET_FILE

    @property
    def latest(self) -> Path:
        return self.root / LATEST_DIR

    @property
    def latest_sums(self) -> Path:
        return self.root / LATEST_SUMS

    @property
    def snapshots(self) -> Path:
        return self.root / SNAPSHOTS_DIR

    @property
    def objects(self) -> Path:
        return self.root / OBJECTS_DIR

    @property
    def tmp(self) -> Path:
        return self.root / TMP_DIR

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def journal(self) -> Path:
        """The in-flight run's record of Latest/ changes (see core/engine/backup.py)."""
        return self.root / JOURNAL_FILE

    def manifest(self, snapshot_id: str) -> Path:
        if not _SNAPSHOT_ID.match(snapshot_id):
            raise ValueError(f"not a snapshot id: {snapshot_id!r}")
        return self.snapshots / (snapshot_id + MANIFEST_SUFFIX)

    def object(self, name: str) -> Path:
        """``objects/<2 hex>/<64 hex>``; ``name`` is a SHA-256 (or keyed) hex digest."""
        if not _OBJECT_NAME.match(name):
            raise ValueError(f"not an object name: {name!r}")
        return self.objects / name[:2] / name

    def object_part(self, name: str, index: int) -> Path:
        """Part ``index`` of an object stored split (file larger than the destination allows)."""
        return self.object(name).with_name(f"{name}.{index:03d}")

    def latest_file(self, mirror_path: str) -> Path:
        """A file's plain copy in ``Latest/``; ``mirror_path`` uses '/' separators."""
        return self.latest.joinpath(*mirror_path.split("/"))

    def latest_part(self, mirror_path: str, index: int) -> Path:
        """Part ``index`` of a split file in ``Latest/`` (``name.001``...)."""
        p = self.latest_file(mirror_path)
        return p.with_name(f"{p.name}.{index:03d}")

    def manifest_ids(self) -> list[str]:
        """Snapshot ids with a committed manifest, oldest first."""
        if not self.snapshots.is_dir():
            return []
        ids = [p.name[: -len(MANIFEST_SUFFIX)] for p in self.snapshots.iterdir()
               if p.name.endswith(MANIFEST_SUFFIX)]
        return sorted(i for i in ids if _SNAPSHOT_ID.match(i))

    def object_names(self) -> list[str]:
        """Every whole object name present (parts of split objects count once)."""
        names = set()
        if not self.objects.is_dir():
            return []
        for sub in self.objects.iterdir():
            if not sub.is_dir():
                continue
            for p in sub.iterdir():
                base = p.name.split(".", 1)[0]
                if _OBJECT_NAME.match(base):
                    names.add(base)
        return sorted(names)
