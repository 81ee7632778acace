"""The backup sets found on connected drives and in folders the user opens (issue #15, "restore anywhere").

A fresh Plugback with an old drive plugged in has no job, yet the drive holds
``Plugback/<computer>/<job>/`` sets worth restoring. This module finds them for
the window's Restore page (IPC ``sets``) and ``plugback sets``.

Everything on a drive is untrusted input (docs/security.md): the folders
are listed with ``os.scandir`` without following symlinks, at most
:data:`MAX_FOLDERS` entries per folder and :data:`MAX_SETS` sets in all; a set
is only looked at after :meth:`SetLayout.check_contained` proved every folder
from the drive's mount (or the opened folder) down to it is real, and its
``plugback.json`` is read by the engine's checked reader (safeio + decode_meta,
through :func:`core.agent.adopt.read_facts`). Nothing is decrypted here.
A set that cannot be read is reported as a problem, never raised.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.agent import remote_sets
from core.engine.layout import DRIVE_DIR, SetLayout
from core.errors import PlugbackError

log = logging.getLogger("plugback.sets")

MAX_SETS = 200
MAX_FOLDERS = 500   # entries looked at in one folder (computers on a drive, jobs of a computer)


@dataclass(frozen=True)
class FoundSet:
    """One set found on a drive or in a folder: what the Restore page and ``plugback sets`` show.

    ``computer`` and ``job`` come from plugback.json for a plain set, and from the
    folder names (``Plugback/<computer>/<job>``) for an encrypted one, which keeps
    no names in the clear (``named_by`` says which).
    """

    path: str
    set_id: str
    encrypted: bool
    computer: str
    job: str
    named_by: str             # "set" (plugback.json) or "folders"
    snapshots: int
    newest: str | None
    newest_time: str | None
    newest_files: int | None
    drive_id: str | None = None
    drive_label: str | None = None
    where: str = ""           # the drive's mount point or the opened folder
    used_by: list[str] = field(default_factory=list)   # jobs here bound to this set

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Found:
    """The result of a search: the sets, and what could not be read (plain words)."""

    sets: list[FoundSet] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)
    truncated: bool = False

    def to_dict(self) -> dict:
        return {"sets": [s.to_dict() for s in self.sets], "problems": list(self.problems),
                "truncated": self.truncated}


def _real_folders(folder: Path) -> list[Path]:
    """The real (not symlinked) sub-folders of ``folder``, sorted, at most MAX_FOLDERS looked at."""
    out = []
    try:
        with os.scandir(folder) as it:
            for n, entry in enumerate(it):
                if n >= MAX_FOLDERS:
                    break
                try:
                    if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                        out.append(Path(entry.path))
                except OSError:
                    continue
    except OSError as err:
        log.info("cannot list %s: %s", folder, err)
    return sorted(out)


def _look(root: Path, boundary: Path, found: Found, origin: dict) -> None:
    """Add the set at ``root`` (proven inside ``boundary``) to ``found``, or a problem."""
    from core.agent.adopt import read_facts

    if len(found.sets) >= MAX_SETS:
        found.truncated = True
        return
    try:
        SetLayout(root).check_contained(boundary)
        facts = read_facts(root)
    except PlugbackError as err:
        found.problems.append({"path": str(root), "message": err.message})
        return
    except OSError as err:
        found.problems.append({"path": str(root), "message": f"it cannot be read ({err.strerror or err})"})
        return
    named = not facts.encrypted and bool(facts.host)
    found.sets.append(FoundSet(
        path=str(root), set_id=facts.set_id, encrypted=facts.encrypted,
        computer=facts.host if named and facts.host else root.parent.name, job=(facts.job or root.name) if named else root.name,
        named_by="set" if named else "folders", snapshots=facts.snapshots, newest=facts.newest,
        newest_time=facts.newest_time, newest_files=facts.newest_files, **origin))


def _is_set(folder: Path) -> bool:
    try:
        return SetLayout(folder).meta.is_file()
    except OSError:
        return False


def scan_plugback_folder(top: Path, boundary: Path, found: Found, origin: dict) -> None:
    """The sets at ``top/<computer>/<job>`` (``top`` is a drive's ``Plugback`` folder)."""
    for computer in _real_folders(top):
        for job in _real_folders(computer):
            if _is_set(job):
                _look(job, boundary, found, origin)


def scan_drive(mount: Path, found: Found, *, drive_id: str | None = None, label: str | None = None) -> None:
    """The sets under ``<mount>/Plugback``."""
    top = Path(mount) / DRIVE_DIR
    if top.is_dir() and not top.is_symlink():
        scan_plugback_folder(top, Path(mount), found, {"drive_id": drive_id, "drive_label": label,
                                                      "where": str(mount)})


def scan_folder(folder: Path, found: Found) -> None:
    """A folder the user opened: a set itself, a drive (holding ``Plugback/``), or a ``Plugback`` folder."""
    folder = Path(os.path.abspath(os.path.expanduser(str(folder))))
    origin = {"where": str(folder)}
    if not folder.is_dir():
        found.problems.append({"path": str(folder), "message": "there is no folder there"})
        return
    before = len(found.sets) + len(found.problems)
    if _is_set(folder):
        _look(folder, folder, found, origin)
    elif (folder / DRIVE_DIR).is_dir():
        scan_drive(folder, found)
    else:
        scan_plugback_folder(folder, folder, found, origin)
    if len(found.sets) + len(found.problems) == before:
        found.problems.append({"path": str(folder), "message": "no Plugback backup was found in this folder"})


def find_sets(volumes, folders=(), jobs=()) -> Found:
    """Every set on ``volumes`` (``core.agent.drives.Volume``) and in ``folders``, each once.

    ``jobs``: this computer's jobs; a set bound to one names it in ``used_by``. A folder may be
    ``rclone:REMOTE:PATH`` (core/agent/remote_sets.py).
    """
    found = Found()
    for v in volumes:
        scan_drive(Path(v.mount), found, drive_id=v.drive_id, label=v.label)
    for folder in folders:
        if remote_sets.is_remote_spec(folder):   # a cloud or network location (issue #13)
            remote_sets.scan_remote(folder, found)
        else:
            scan_folder(Path(folder), found)
    return _mark_used(_unique(found), jobs)


def _unique(found: Found) -> Found:
    seen, sets = set(), []
    for s in found.sets:
        key = s.path if remote_sets.is_remote_spec(s.path) else os.path.realpath(s.path)
        if key not in seen:
            seen.add(key)
            sets.append(s)
    found.sets = sets
    return found


def _mark_used(found: Found, jobs) -> Found:
    from core.agent.adopt import same_set

    for s in found.sets:
        s.used_by.extend(j.name for j in jobs if same_set(j.set_id, s.set_id))
    found.sets.sort(key=lambda s: (s.computer.casefold(), s.job.casefold(), s.path))
    return found


def boundary_of(path: Path, volumes) -> Path:
    """The folder ``path`` is proven inside when the window names a set to browse:
    the mount point of the volume holding it, else ``path`` itself."""
    real = os.path.realpath(path)
    for v in sorted(volumes, key=lambda v: len(str(v.mount)), reverse=True):
        mount = os.path.realpath(v.mount)
        if real == mount or real.startswith(mount.rstrip(os.sep) + os.sep):
            return Path(v.mount)
    return Path(path)
