"""A job's destination in config.json: an enrolled drive (and drives in rotation), a folder,
or a cloud or network location (``rclone:REMOTE:PATH``, issue #13)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from core.agent.config_check import _bad, _check_keys, _check_type

SET_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SET_ID = SET_ID


@dataclass
class Destination:
    """Where a job's set lives: an enrolled drive (+ optional folder on it), a plain path, or a
    cloud or network location (``remote``: ``rclone:REMOTE:PATH``, issue #13; the remote comes
    from the user's rclone configuration, its set is always encrypted).

    ``rotation`` (issue #14): more drives the job backs up to, whichever is connected, each
    ``{"drive_id", "set_id"?}`` — every drive holds its own set, bound like ``Job.set_id``.
    """

    drive_id: str | None = None
    folder: str | None = None
    path: str | None = None
    remote: str | None = None
    rotation: list[dict] = field(default_factory=list)

    @property
    def drive_ids(self) -> list[str]:
        """Every drive of the job: the first one, then the drives in rotation."""
        return ([self.drive_id] if self.drive_id else []) + [r["drive_id"] for r in self.rotation]

    def key(self) -> str:
        """Jobs with the same key share one runner (one writer per destination)."""
        if self.remote:
            return f"remote:{self.remote}"
        return f"drive:{self.drive_id}" if self.drive_id else f"path:{self.path}"

    def to_dict(self) -> dict:
        if self.drive_id:
            d: dict = {"drive_id": self.drive_id}
            if self.folder:
                d["folder"] = self.folder
            if self.rotation:
                d["rotation"] = [dict(r) for r in self.rotation]
            return d
        return {"remote": self.remote} if self.remote else {"path": self.path}

    @classmethod
    def from_dict(cls, data, where: str) -> "Destination":
        _check_type(data, dict, where, "an object with drive_id (and folder), path or remote")
        _check_keys(data, {"drive_id", "folder", "path", "rotation", "remote"}, where)
        if sum(1 for k in ("drive_id", "path", "remote") if data.get(k)) > 1:
            raise _bad(where, "give one of drive_id, path or remote, not more")
        if data.get("remote"):
            if data.get("folder") or data.get("rotation"):
                raise _bad(where, "a remote takes its folder in the spec (rclone:REMOTE:FOLDER); "
                                  "folder and rotation go with a drive_id")
            return cls(remote=remote_spec(data["remote"], f"{where}.remote"))
        if data.get("drive_id"):
            _check_type(data["drive_id"], str, f"{where}.drive_id", "a drive id (text)")
            folder = data.get("folder")
            if folder is not None:
                _check_type(folder, str, f"{where}.folder", "a folder name on the drive")
                parts = Path(folder).parts
                if Path(folder).is_absolute() or ".." in parts or re.match(r"^[A-Za-z]:", folder):
                    raise _bad(f"{where}.folder", "must be a relative folder on the drive, without '..'")
            return cls(drive_id=data["drive_id"], folder=folder or None,
                       rotation=_rotation(data.get("rotation", []), data["drive_id"], f"{where}.rotation"))
        if data.get("rotation"):
            raise _bad(f"{where}.rotation", "goes with a drive_id: more drives for a drive job")
        if data.get("path"):
            _check_type(data["path"], str, f"{where}.path", "a folder path")
            if not Path(data["path"]).is_absolute():
                raise _bad(f"{where}.path", "must be an absolute folder path")
            return cls(path=data["path"])
        raise _bad(where, "needs a drive_id, a path or a remote")


def remote_spec(value, where: str) -> str:
    """``value`` checked as ``rclone:REMOTE:PATH`` (core.engine.storage.parse_spec), canonical."""
    from core.engine.storage.rclone import parse_spec
    from core.errors import BadRemoteSpec

    _check_type(value, str, where, "a location like rclone:REMOTE:FOLDER")
    try:
        return str(parse_spec(value))
    except BadRemoteSpec as err:
        raise _bad(where, err.details.get("reason") or err.message) from None


def _rotation(data, first: str, where: str) -> list[dict]:
    """``destination.rotation``, checked: ``[{"drive_id", "set_id"?}]``, each drive once."""
    out: list[dict] = []
    for i, r in enumerate(_check_type(data, list, where, "a list of drives")):
        _check_type(r, dict, f"{where}[{i}]", "an object with drive_id (and set_id)")
        _check_keys(r, {"drive_id", "set_id"}, f"{where}[{i}]")
        drive_id = _check_type(r.get("drive_id"), str, f"{where}[{i}].drive_id", "a drive id (text)")
        if drive_id == first or any(o["drive_id"] == drive_id for o in out):
            raise _bad(f"{where}[{i}].drive_id", "names a drive the job already backs up to")
        set_id = r.get("set_id")
        if set_id is not None and not _SET_ID.match(_check_type(set_id, str, f"{where}[{i}].set_id", "a set id")):
            raise _bad(f"{where}[{i}].set_id", "must be a set id (a UUID, as in the set's plugback.json)")
        out.append({"drive_id": drive_id, **({"set_id": set_id} if set_id else {})})
    return out
