"""The one module that knows where things live on a Plugback drive and in a set.

Nobody else joins strings into ``objects/ab/...``: callers ask this module.
See docs/format.md for the format these paths make up.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path
from typing import Iterator

from core.engine.fs import long_path, translate
from core.errors import UnsafeSet

DRIVE_DIR = "Plugback"
DRIVE_FILE = "drive.json"
DRIVE_FORMAT = "plugback-drive"
SET_FILE = "plugback.json"
SET_FORMAT = "plugback-set"
FORMAT_VERSION = 1          # drive.json
SET_VERSION = 2             # plugback.json: 2 adds chunked old versions (core/engine/chunks.py)
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


def check_relative(rel: str, under: str) -> None:
    """Refuse (UnsafeSet) a '/'-separated path from a manifest that is not plainly below ``under``.

    The write side's own check, whatever the manifest decoder let through: a ``..``,
    an absolute path or a drive letter joined to ``Latest/`` would steer a backup's
    renames and deletes anywhere the user can write (issue #10).
    """
    wrapped = f"/{rel}/"   # a part that is empty, "." or "..": "//", "/./" or "/../" (one scan each, per file)
    if ("//" in wrapped or "/./" in wrapped or "/../" in wrapped or "\x00" in rel
            or (os.sep != "/" and os.sep in rel) or (sys.platform == "win32" and ":" in rel)):
        raise UnsafeSet(path=f"{under}/{rel}", reason="comes from a snapshot list and points outside "
                        f"{under}/, so it was not touched")


def _is_link(st: os.stat_result) -> bool:
    # Windows: junctions and mount points are reparse points that lstat does not call links.
    return stat.S_ISLNK(st.st_mode) or bool(getattr(st, "st_file_attributes", 0) & 0x400)


def _lstat(path: Path | str, root: Path) -> os.stat_result | None:
    try:
        return os.lstat(long_path(path))   # (Windows: a long path unprefixed would look missing)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise translate(err, path, root) from err


def _link_error(path: Path, where: str) -> UnsafeSet:
    try:
        to = f" to {os.readlink(path)}"
    except OSError:
        to = ""
    return UnsafeSet(path=str(path), reason=f"is a symbolic link{to} {where}, where Plugback only "
                     "makes real folders and files")


def check_chain(top: Path, path: Path) -> None:
    """Every existing folder from ``top`` (trusted, e.g. a drive's mount point) down to ``path`` is a
    real folder on ``top``'s device, not a symlink: what is made below ``path`` stays on that drive."""
    top, path = Path(os.path.abspath(top)), Path(os.path.abspath(path))
    if top != path and top not in path.parents:
        raise UnsafeSet(path=str(path), reason=f"is not inside {top}, the drive it belongs on")
    dev = os.stat(top).st_dev     # followed: the boundary is the caller's own choice
    d = top
    for name in path.relative_to(top).parts:
        d = d / name
        st = _lstat(d, top)
        if st is None:
            return    # the rest is made new, below real folders
        if _is_link(st):
            raise _link_error(d, f"on the way from {top} to the backup set")
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeSet(path=str(d), reason="is a file where a folder of the backup set belongs")
        if st.st_dev != dev:
            raise UnsafeSet(path=str(d), reason=f"is on another drive than {top}")


class SetLayout:
    """Paths inside one backup set rooted at ``root``.

    Paths into ``Latest/`` taken from a manifest are checked to stay below it;
    :meth:`check_contained` proves on disk, before a run writes, that nothing in
    or above the set is a symlink (issue #10: the drive is untrusted input).
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self._latest_prefix = f"{self.root / LATEST_DIR}{os.sep}"
        self._objects_prefix = f"{self.root / OBJECTS_DIR}{os.sep}"
        # Mirror paths of folders in Latest/ proven real this run (one lstat per folder, not per file).
        self._real_dirs: set[str] = set()

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
        return Path(f"{self._objects_prefix}{name[:2]}{os.sep}{name}")

    def object_part(self, name: str, index: int) -> Path:
        """Part ``index`` of an object stored split (file larger than the destination allows)."""
        return self.object(name).with_name(f"{name}.{index:03d}")

    def latest_file(self, mirror_path: str, *, writing: bool = False) -> Path:
        """A file's plain copy in ``Latest/``; ``mirror_path`` uses '/' separators.

        Always refused when it would lead out of ``Latest/``; ``writing``: also proven
        on disk that no folder between ``Latest/`` and it is a symlink.
        """
        return Path(self.latest_name(mirror_path, writing=writing))

    def latest_name(self, mirror_path: str, *, writing: bool = False) -> str:
        """:meth:`latest_file` as a plain string, for the per-file paths of a run (building a
        ``Path`` for each file cost more than the file's own copy); the same checks."""
        check_relative(mirror_path, LATEST_DIR)
        if writing:
            self._check_latest_folders(mirror_path.rpartition("/")[0])
        return self._latest_prefix + (mirror_path if os.sep == "/" else mirror_path.replace("/", os.sep))

    def build_latest_in(self, folder: str | None) -> None:
        """From now on every ``Latest/`` path this layout builds leads below ``folder`` instead (a first
        backup builds its ``Latest/`` whole in ``tmp/``: core/engine/fresh_latest.py); None: ``Latest/``."""
        self._latest_prefix = f"{folder if folder is not None else self.root / LATEST_DIR}{os.sep}"
        self._real_dirs.clear()

    @property
    def latest_written(self) -> str:
        """Where the ``Latest/`` paths this layout builds lead now (see :meth:`build_latest_in`)."""
        return self._latest_prefix[:-1]

    def latest_part(self, mirror_path: str, index: int, *, writing: bool = False) -> Path:
        """Part ``index`` of a split file in ``Latest/`` (``name.001``...)."""
        p = self.latest_file(mirror_path, writing=writing)
        return p.with_name(f"{p.name}.{index:03d}")

    def _check_latest_folders(self, folder: str) -> None:
        if not folder or folder in self._real_dirs:
            return   # a cached folder was proven with all of its parents
        done = ""
        for name in folder.split("/"):
            done = f"{done}/{name}" if done else name
            if done in self._real_dirs:
                continue
            d = self._latest_prefix + (done if os.sep == "/" else done.replace("/", os.sep))   # (str: per file)
            st = _lstat(d, self.root)
            if st is None or not stat.S_ISDIR(st.st_mode) and not _is_link(st):
                return   # missing (made new by the run) or a file in the way (the operation fails)
            if _is_link(st):
                raise _link_error(Path(d), "inside Latest/")
            self._real_dirs.add(done)

    def forget_folders(self) -> None:
        """Folders in Latest/ were removed: prove them again before writing below them."""
        self._real_dirs.clear()

    def check_not_link(self, path: Path) -> None:
        """``path`` (a folder or file of the set, e.g. ``objects/ab``) is not a symlink (missing is fine)."""
        st = _lstat(path, self.root)
        if st is not None and _is_link(st):
            raise _link_error(path, "in the backup set")

    def check_contained(self, boundary: Path | None = None) -> None:
        """Before a run writes: refuse (UnsafeSet) a set whose writes could land outside it.

        From ``boundary`` (the drive's mount point; default the set folder itself) down
        to the set every folder is real and on the same device; the set's own folders
        (``Latest``, ``objects``, ``objects/xx``, ``snapshots``, ``tmp``) are not
        symlinks; the set's real path is inside the boundary's. The set's files (lock,
        journal, ``plugback.json``, ``Latest.sha256``) may be anything: they are only ever
        created exclusively, replaced by rename or unlinked, never written through, and
        their readers (core/engine/safeio.py) refuse symlinks.
        """
        self._real_dirs.clear()
        top = Path(os.path.abspath(boundary if boundary is not None else self.root))
        check_chain(top, self.root)
        real_top, real_root = os.path.realpath(top), os.path.realpath(self.root)
        if os.path.commonpath([real_top, real_root]) != real_top:
            raise UnsafeSet(path=str(self.root), reason=f"really is at {real_root}, outside {real_top}")
        for p in (self.latest, self.objects, self.snapshots, self.tmp):
            self.check_not_link(p)
        if os.path.isdir(self.objects):
            with os.scandir(self.objects) as it:
                for entry in it:
                    if entry.is_symlink():
                        raise _link_error(Path(entry.path), "in the backup set")

    def manifest_ids(self) -> list[str]:
        """Snapshot ids with a committed manifest, oldest first."""
        if not self.snapshots.is_dir():
            return []
        ids = [p.name[: -len(MANIFEST_SUFFIX)] for p in self.snapshots.iterdir()
               if p.name.endswith(MANIFEST_SUFFIX)]
        return sorted(i for i in ids if _SNAPSHOT_ID.match(i))

    def object_names(self) -> list[str]:
        """Every whole object name present (parts of split objects count once), sorted."""
        return list(self.iter_object_names())

    def iter_object_names(self) -> Iterator[str]:
        """:meth:`object_names` one at a time, sorted, holding one ``objects/xx/`` folder's names at once."""
        last = None
        for name, _ in self.iter_object_files():
            if name != last:
                yield name
                last = name

    def iter_object_files(self) -> Iterator[tuple[str, Path]]:
        """(object name, file) for every object file and part, sorted, one ``objects/xx/`` folder at a time."""
        if not self.objects.is_dir():
            return
        for sub in sorted(self.objects.iterdir()):
            if not sub.is_dir():
                continue
            named = ((p.name.split(".", 1)[0], p) for p in sub.iterdir())
            yield from sorted((name, p) for name, p in named if _OBJECT_NAME.match(name))
