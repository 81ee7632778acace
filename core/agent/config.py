"""The per-user settings file (``config.json``) and the folders Plugback keeps state in.

``config.json`` holds jobs, enrolled drives and preferences. It is versioned,
validated on load (a :class:`~core.errors.ConfigError` names the bad field),
written atomically (temp file, fsync, ``os.replace``) and edited under a file
lock so the CLI and the agent never interleave writes. A broken file is moved
aside to ``config.json.broken-<time>`` and reported, never overwritten
silently.

Folders come from platformdirs; ``PLUGBACK_HOME`` overrides all of them
(tests, portable use).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from core.agent.config_check import _bad, _check_keys, _check_type
from core.agent.destination import SET_ID as _SET_ID
from core.agent.destination import Destination
from core.errors import ConfigError, NotFound, UsageError

CONFIG_VERSION = 1
APP_NAME = "Plugback"

VERIFY_POLICIES = ("after_backup", "none")
RETENTION_KEYS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly")
_JOB_NAME = re.compile(r"^[^\x00-\x1f/\\:*?\"<>|]{1,64}$")
#: The one rule for job names (config file, CLI, agent, window): they name a folder on the drive.
JOB_NAME_RULE = "a job name has 1-64 characters, none of / \\ : * ? \" < > |, and no space or dot at either end"


def job_name_problem(name) -> str | None:
    """Why ``name`` cannot name a job (the sentence the CLI and the window show), or None."""
    if isinstance(name, str) and _JOB_NAME.match(name) and name.strip(" .") == name:
        return None
    return f"The name “{name}” cannot be used: {JOB_NAME_RULE}."


@dataclass(frozen=True)
class Paths:
    """Where Plugback keeps its per-user state."""

    config_dir: Path
    data_dir: Path
    log_dir: Path
    runtime_dir: Path
    #: Where the start-at-login entry goes; None = the OS's own place (core.platform.autostarter).
    autostart_dir: Path | None = None

    @classmethod
    def default(cls) -> "Paths":
        """The folders for this user: ``$PLUGBACK_HOME`` if set, else platformdirs.

        ``PLUGBACK_HOME`` (tests, ``./dev start``, portable use) confines everything,
        the start-at-login entry included: it never lands in the real login items.
        """
        home = os.environ.get("PLUGBACK_HOME")
        if home:
            root = Path(home)
            return cls(root, root, root / "logs", root, root / "autostart")
        import platformdirs

        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        with warnings.catch_warnings():
            # Without XDG_RUNTIME_DIR platformdirs falls back to /tmp/runtime-<uid> and says so.
            warnings.simplefilter("ignore")
            runtime = Path(dirs.user_runtime_dir) if sys.platform != "win32" else Path(dirs.user_data_dir)
        return cls(Path(dirs.user_config_dir), Path(dirs.user_data_dir), Path(dirs.user_log_dir), runtime)

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.json"

    @property
    def history_file(self) -> Path:
        return self.data_dir / "history.sqlite3"

    @property
    def ipc_key_file(self) -> Path:
        return self.data_dir / "ipc.key"

    @property
    def notifications_log(self) -> Path:
        """Every notification the agent sent, one JSON line each (also read by tests)."""
        return self.log_dir / "notifications.log"

    @property
    def agent_log(self) -> Path:
        return self.log_dir / "agent.log"

    def ensure(self) -> None:
        """Create the state, log and runtime folders, each user-only (0700) on POSIX.

        They name the user's folders, jobs and drives (and hold ``ipc.key`` and the agent's
        socket). A folder that already exists is tightened to 0700 when it is this user's
        own; one of another user (a shared ``PLUGBACK_HOME``) is left alone, and the agent
        then listens elsewhere (``core.agent.ipc.channel_address``).
        """
        for d in (self.config_dir, self.data_dir, self.log_dir, self.runtime_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            if sys.platform == "win32":
                continue   # Windows: the folders are under the user's profile, private by its ACL
            st = d.stat()
            if st.st_uid == os.getuid() and st.st_mode & 0o077:
                try:
                    d.chmod(0o700)
                except OSError:   # a file system without permissions (portable, on FAT)
                    pass


@dataclass
class Triggers:
    """When a job runs by itself: on drive connect, on a schedule (see core/agent/schedule.py).

    ``schedule`` is always the canonical spec (``daily@09:30``): it is
    canonicalised here, on load and on every edit, so a spec typed as
    ``Daily@9:30`` reads back the same everywhere.
    """

    on_connect: bool = False
    schedule: str | None = None
    min_interval_minutes: int = 0
    #: Live mode (issue #12): back up changes continuously while the drive is connected (core/agent/live.py).
    live: bool = False

    def to_dict(self) -> dict:
        return {"on_connect": self.on_connect, "schedule": self.schedule,
                "min_interval_minutes": self.min_interval_minutes, "live": self.live}

    def to_window(self) -> dict:
        """The IPC shape (docs/ipc.md): the config keys plus ``schedule_fields`` and ``summary``,
        so the window shows and edits a schedule without knowing the grammar."""
        from core.agent.schedule import parse_spec

        fields = parse_spec(self.schedule).fields() if self.schedule else None
        return {**self.to_dict(), "schedule_fields": fields, "summary": self.describe()}

    def describe(self) -> str:
        """Plain words for ``job list`` and the window: "when the drive is connected and daily at 09:30"."""
        from core.agent.schedule import parse_spec

        parts = ["when the drive is connected"] if self.on_connect else []
        if self.live:
            parts = ["continuously while the drive is connected"]
        if self.schedule:
            parts.append(parse_spec(self.schedule).describe())
        return " and ".join(parts) or "only when started by hand"

    @classmethod
    def from_dict(cls, data, where: str) -> "Triggers":
        from core.agent.schedule import canonical

        _check_type(data, dict, where, "an object")
        _check_keys(data, {"on_connect", "schedule", "min_interval_minutes", "live"}, where)
        on_connect = _check_type(data.get("on_connect", False), bool, f"{where}.on_connect", "true or false")
        live = _check_type(data.get("live", False), bool, f"{where}.live", "true or false")
        spec = data.get("schedule")
        if spec is not None:
            _check_type(spec, str, f"{where}.schedule", "a schedule like 'hourly', '6h', 'daily@09:30'")
            try:
                spec = canonical(spec)
            except ValueError as err:
                raise _bad(f"{where}.schedule", str(err)) from None
        interval = _check_type(data.get("min_interval_minutes", 0), int, f"{where}.min_interval_minutes",
                               "a whole number of minutes")
        if interval < 0:
            raise _bad(f"{where}.min_interval_minutes", "must not be negative")
        return cls(on_connect=on_connect, schedule=spec or None, min_interval_minutes=interval, live=live)

    @classmethod
    def from_window(cls, data, where: str) -> "Triggers":
        """The inverse of :meth:`to_window`: ``schedule_fields`` (null = no schedule) replaces
        ``schedule``; ``summary`` is ignored (it is ours)."""
        from core.agent.schedule import from_fields

        _check_type(data, dict, where, "an object")
        data = {k: v for k, v in data.items() if k != "summary"}
        if "schedule_fields" in data:
            fields = data.pop("schedule_fields")
            try:
                data["schedule"] = from_fields(fields).canonical() if fields is not None else None
            except ValueError as err:
                raise _bad(f"{where}.schedule_fields", str(err)) from None
        return cls.from_dict(data, where)


@dataclass
class Job:
    """Sources + destination + triggers + policy (the glossary's 'job')."""

    name: str
    sources: list[str]
    destination: Destination
    triggers: Triggers = field(default_factory=Triggers)
    excludes: list[str] = field(default_factory=list)
    retention: dict = field(default_factory=dict)
    verify: str = "after_backup"
    encrypt: bool = False
    #: The set this job made or the user adopted (core.agent.adopt); None until its first run.
    set_id: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "sources": list(self.sources), "destination": self.destination.to_dict(),
                "triggers": self.triggers.to_dict(), "excludes": list(self.excludes),
                "retention": dict(self.retention), "verify": self.verify, "encrypt": self.encrypt,
                **({"set_id": self.set_id} if self.set_id else {})}

    def to_window(self) -> dict:
        """The IPC ``Job`` shape: :meth:`to_dict` with the triggers of :meth:`Triggers.to_window`."""
        return {**self.to_dict(), "triggers": self.triggers.to_window()}

    def on_drive(self, drive_id: str) -> "Job":
        """This job as it runs on one of its drives: that drive as the destination, its set's id
        (issue #14: a drive in rotation holds its own set). The job itself for its first drive."""
        entry = next((r for r in self.destination.rotation if r["drive_id"] == drive_id), None)
        if entry is None:
            return self
        return dataclasses.replace(self, destination=Destination(drive_id=drive_id, folder=self.destination.folder),
                                   set_id=entry.get("set_id"))

    @classmethod
    def from_window(cls, data, where: str = "job") -> "Job":
        """A job as the window sends it (:meth:`to_window`'s shape), validated like config.json.

        ``set_id`` is ignored: a set is bound only by its first run or by ``adopt_set``."""
        _check_type(data, dict, where, "an object")
        data = {k: v for k, v in data.items() if k != "set_id"}
        dest = data.get("destination")
        if isinstance(dest, dict) and isinstance(dest.get("rotation"), list):   # set ids are bound, never sent
            data["destination"] = {**dest, "rotation": [{k: v for k, v in r.items() if k != "set_id"}
                                                        if isinstance(r, dict) else r for r in dest["rotation"]]}
        triggers = Triggers.from_window(data.get("triggers", {}), f"{where}.triggers")
        return cls.from_dict({**data, "triggers": triggers.to_dict()}, where)

    @classmethod
    def from_dict(cls, data, where: str = "job") -> "Job":
        _check_type(data, dict, where, "an object")
        _check_keys(data, {"name", "sources", "destination", "triggers", "excludes", "retention",
                           "verify", "encrypt", "set_id"}, where)
        name = data.get("name")
        if job_name_problem(name):
            raise _bad(f"{where}.name", f"{JOB_NAME_RULE}, not {name!r}")
        where = f"jobs[{name}]" if where.startswith("jobs[") else where
        sources = _check_type(data.get("sources"), list, f"{where}.sources", "a list of folders")
        if not sources:
            raise _bad(f"{where}.sources", "needs at least one folder to back up")
        for i, s in enumerate(sources):
            _check_type(s, str, f"{where}.sources[{i}]", "a folder path")
            if not Path(s).is_absolute():
                raise _bad(f"{where}.sources[{i}]", f"must be an absolute folder path, not {s!r}")
        if "destination" not in data:
            raise _bad(f"{where}.destination", "is missing: give a drive_id, a path or a remote")
        dest = Destination.from_dict(data["destination"], f"{where}.destination")
        triggers = Triggers.from_dict(data.get("triggers", {}), f"{where}.triggers")
        excludes = _check_type(data.get("excludes", []), list, f"{where}.excludes", "a list of patterns")
        for i, p in enumerate(excludes):
            _check_type(p, str, f"{where}.excludes[{i}]", "a gitignore-style pattern")
        retention = _check_type(data.get("retention", {}), dict, f"{where}.retention", "an object")
        _check_keys(retention, set(RETENTION_KEYS), f"{where}.retention")
        for k, v in retention.items():
            if v is not None:
                _check_type(v, int, f"{where}.retention.{k}", "a whole number (-1: no limit) or null")
                if v < -1:
                    raise _bad(f"{where}.retention.{k}", "must be a whole number, or -1 for no limit")
        verify = data.get("verify", "after_backup")
        if verify not in VERIFY_POLICIES:
            raise _bad(f"{where}.verify", f"must be one of {', '.join(VERIFY_POLICIES)}")
        encrypt = _check_type(data.get("encrypt", False), bool, f"{where}.encrypt", "true or false")
        if dest.remote:   # a remote set is always encrypted; nothing is plugged in to trigger it
            encrypt = True
            if triggers.on_connect or triggers.live:
                raise _bad(f"{where}.triggers.{'live' if triggers.live else 'on_connect'}",
                           "goes with a drive; a cloud or network location backs up on a schedule or by hand")
        set_id = data.get("set_id")
        if set_id is not None and not _SET_ID.match(_check_type(set_id, str, f"{where}.set_id", "a set id")):
            raise _bad(f"{where}.set_id", "must be a set id (a UUID, as in the set's plugback.json)")
        return cls(name=name, sources=list(sources), destination=dest, triggers=triggers,
                   excludes=list(excludes), retention={k: v for k, v in retention.items() if v is not None},
                   verify=verify, encrypt=encrypt, set_id=set_id)


@dataclass
class Prefs:
    """User preferences (DESIGN §3, §8)."""

    start_at_login: bool = True
    notifications: bool = True
    battery_threshold: int = 20          # scheduled runs wait on battery below this percent
    monthly_integrity_check: bool = True
    connect_delay_seconds: int = 2       # cancellable pause before an automatic backup on connect
    # the change journal's safety net (issue #12): a full scan at least every N days, and every N runs (0: off)
    full_scan_days: int = 7
    full_scan_runs: int = 0
    live_quiet_seconds: int = 30         # live mode: back up this long after the last change
    remind_after_days: int = 7           # remind when no backup of a job succeeded for this long; 0 = never
    # issue #13: the monthly check also downloads cloud and network backups (off: a metered or paid download
    # is the user's choice; they still get the quick check of listings and manifests)
    read_back_remote: bool = False

    def to_dict(self) -> dict:
        return {"start_at_login": self.start_at_login, "notifications": self.notifications,
                "battery_threshold": self.battery_threshold,
                "monthly_integrity_check": self.monthly_integrity_check,
                "connect_delay_seconds": self.connect_delay_seconds, "full_scan_days": self.full_scan_days,
                "full_scan_runs": self.full_scan_runs, "live_quiet_seconds": self.live_quiet_seconds,
                "remind_after_days": self.remind_after_days, "read_back_remote": self.read_back_remote}

    @classmethod
    def from_dict(cls, data, where: str = "prefs") -> "Prefs":
        _check_type(data, dict, where, "an object")
        _check_keys(data, set(cls().to_dict()), where)
        out = cls()
        for key in ("start_at_login", "notifications", "monthly_integrity_check", "read_back_remote"):
            if key in data:
                setattr(out, key, _check_type(data[key], bool, f"{where}.{key}", "true or false"))
        if "battery_threshold" in data:
            v = _check_type(data["battery_threshold"], int, f"{where}.battery_threshold", "a percentage")
            if not 0 <= v <= 100:
                raise _bad(f"{where}.battery_threshold", "must be between 0 and 100")
            out.battery_threshold = v
        if "connect_delay_seconds" in data:
            v = _check_type(data["connect_delay_seconds"], int, f"{where}.connect_delay_seconds",
                            "a whole number of seconds")
            if not 0 <= v <= 600:
                raise _bad(f"{where}.connect_delay_seconds", "must be between 0 and 600")
            out.connect_delay_seconds = v
        if "remind_after_days" in data:
            v = _check_type(data["remind_after_days"], int, f"{where}.remind_after_days", "a number of days")
            if not 0 <= v <= 365:
                raise _bad(f"{where}.remind_after_days", "must be between 0 (never) and 365 days")
            out.remind_after_days = v
        for key, (what, low, high) in _PREF_RANGES.items():
            if key in data:
                v = _check_type(data[key], int, f"{where}.{key}", what)
                if not low <= v <= high:
                    raise _bad(f"{where}.{key}", f"must be between {low} and {high}")
                setattr(out, key, v)
        return out


def edited_prefs(prefs: Prefs, changes) -> Prefs:
    """``prefs`` with ``changes`` (the window's or the agent's edit), checked by :meth:`Prefs.from_dict`.

    A bad value raises ConfigError whose ``field`` is the preference's key and whose message is
    about that value alone ("Must be between 1 and 365."), for the window to show by the field.
    """
    try:
        return Prefs.from_dict({**prefs.to_dict(), **changes})
    except ConfigError as err:
        field, reason = err.details["field"].removeprefix("prefs."), err.details["reason"]
        raise ConfigError(f"{reason[:1].upper()}{reason[1:]}.", field=field, reason=reason) from None


#: The change journal's whole-number preferences (issue #12): (what the error calls it, lowest, highest).
_PREF_RANGES = {"full_scan_days": ("a number of days", 1, 365), "full_scan_runs": ("a number of runs", 0, 10000),
                "live_quiet_seconds": ("a whole number of seconds", 1, 3600)}


_DRIVE_KEY = re.compile(r"^[\x21-\x7e]{1,80}$")


def _declined(data) -> list[dict]:
    """``declined_drives``, checked: each ``{"key": printable id, "name": text}``."""
    out = []
    for i, d in enumerate(_check_type(data, list, "declined_drives", "a list")):
        where = f"declined_drives[{i}]"
        _check_type(d, dict, where, "an object with key and name")
        _check_keys(d, {"key", "name"}, where)
        key = _check_type(d.get("key"), str, f"{where}.key", "a file-system UUID or serial")
        if not _DRIVE_KEY.match(key):
            raise _bad(f"{where}.key", "must be a file-system UUID or serial (printable, no spaces)")
        out.append({"key": key, "name": _check_type(d.get("name", ""), str, f"{where}.name", "text")})
    return out


@dataclass
class Config:
    """The whole settings file."""

    jobs: list[Job] = field(default_factory=list)
    drives: list[dict] = field(default_factory=list)   # [{"drive_id", "label"}]
    prefs: Prefs = field(default_factory=Prefs)
    #: Drives the user answered "Not this drive" (core.agent.offers): [{"key", "name"}], key = fs UUID/serial.
    declined_drives: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"version": CONFIG_VERSION, "jobs": [j.to_dict() for j in self.jobs],
                "drives": [dict(d) for d in self.drives], "prefs": self.prefs.to_dict(),
                **({"declined_drives": [dict(d) for d in self.declined_drives]} if self.declined_drives else {})}

    @classmethod
    def from_dict(cls, data) -> "Config":
        """Validate ``data``; raises ConfigError naming the first bad field."""
        _check_type(data, dict, "(top level)", "a JSON object")
        _check_keys(data, {"version", "jobs", "drives", "prefs", "declined_drives"}, "")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise _bad("version", "is missing or not a number")
        if version > CONFIG_VERSION:
            raise _bad("version", f"is {version}, written by a newer Plugback; update Plugback")
        jobs: list[Job] = []
        for i, j in enumerate(_check_type(data.get("jobs", []), list, "jobs", "a list")):
            label = j.get("name") if isinstance(j, dict) and isinstance(j.get("name"), str) else i
            job = Job.from_dict(j, f"jobs[{label}]")
            if any(o.name.casefold() == job.name.casefold() for o in jobs):
                raise _bad(f"jobs[{job.name}].name", "is used by two jobs; names must be unique")
            jobs.append(job)
        drives = []
        for i, d in enumerate(_check_type(data.get("drives", []), list, "drives", "a list")):
            _check_type(d, dict, f"drives[{i}]", "an object with drive_id and label")
            _check_keys(d, {"drive_id", "label"}, f"drives[{i}]")
            _check_type(d.get("drive_id"), str, f"drives[{i}].drive_id", "a drive id")
            _check_type(d.get("label", ""), str, f"drives[{i}].label", "text")
            drives.append({"drive_id": d["drive_id"], "label": d.get("label", "")})
        prefs = Prefs.from_dict(data.get("prefs", {}))
        return cls(jobs=jobs, drives=drives, prefs=prefs, declined_drives=_declined(data.get("declined_drives", [])))

    # -- lookups -------------------------------------------------------------

    def job(self, name: str) -> Job | None:
        return next((j for j in self.jobs if j.name.casefold() == name.casefold()), None)

    def drive(self, ref: str) -> dict | None:
        """An enrolled drive by drive_id or label (labels are matched case-insensitively)."""
        for d in self.drives:
            if d["drive_id"] == ref:
                return d
        matches = [d for d in self.drives if d.get("label", "").casefold() == ref.casefold()]
        return matches[0] if len(matches) == 1 else None

    def declined_keys(self) -> frozenset[str]:
        """The identities of the drives the user said "Not this drive" to."""
        return frozenset(d["key"] for d in self.declined_drives)

    def decline_drive(self, key: str, name: str) -> None:
        """Remember "Not this drive" for the drive whose file-system UUID (or serial) is ``key``."""
        if key not in self.declined_keys():
            self.declined_drives.append({"key": key, "name": name})

    def drive_label(self, drive_id: str) -> str:
        d = next((d for d in self.drives if d["drive_id"] == drive_id), None)
        return (d or {}).get("label") or drive_id[:8]

    def to_window(self) -> dict:
        """The ``config_get`` reply: :meth:`to_dict` with jobs in their IPC shape (:meth:`Job.to_window`)."""
        return {**self.to_dict(), "jobs": [j.to_window() for j in self.jobs]}

    def copy(self) -> "Config":
        return copy.deepcopy(self)

    # -- edits: the one place each domain change is checked (the CLI and the agent both call these) --

    def save_job(self, job: Job, original: str | None = None) -> None:
        """Add ``job``, or replace the job called ``original`` with it (a rename keeps its place)."""
        old = self.job(original) if original else None
        if original and old is None:
            raise NotFound(what="job", name=original)
        clash = self.job(job.name)
        if clash is not None and clash is not old:
            raise UsageError(f"A job named '{clash.name}' exists. Pick another name, or remove that job first.")
        if old is not None:
            # An edit keeps the binding (a run checks it against the set); with drives in rotation
            # each set id stays with its drive, whichever drive comes first now.
            bound = {r["drive_id"]: r.get("set_id") for r in old.destination.rotation}
            if old.destination.drive_id:
                bound[old.destination.drive_id] = old.set_id
            if job.set_id is None:
                job.set_id = bound.get(job.destination.drive_id or "", old.set_id)
            for r in job.destination.rotation:
                if "set_id" not in r and bound.get(r["drive_id"]):
                    r["set_id"] = bound[r["drive_id"]]
            self.jobs[self.jobs.index(old)] = job
        else:
            self.jobs.append(job)

    def remove_job(self, name: str) -> Job:
        """Remove the job called ``name`` (its backups stay); returns it."""
        job = self.job(name)
        if job is None:
            raise NotFound(what="job", name=name)
        self.jobs.remove(job)
        return job

    def enroll_drive(self, drive_id: str, label: str) -> None:
        """Remember a prepared drive (a drive enrolled again only gets the new label)."""
        existing = next((d for d in self.drives if d["drive_id"] == drive_id), None)
        if existing is not None:
            existing["label"] = label
        else:
            self.drives.append({"drive_id": drive_id, "label": label})

    def forget_drive(self, ref: str) -> dict:
        """Stop using the drive ``ref`` (drive_id or label); refused while jobs back up to it. Returns it."""
        drive = self.drive(ref)
        if drive is None:
            raise NotFound(what="enrolled drive", name=ref)
        users = [j.name for j in self.jobs if drive["drive_id"] in j.destination.drive_ids]
        if users:
            raise UsageError(f"Jobs still back up to '{drive.get('label') or ref}': {', '.join(users)}. "
                             "Remove them first.")
        self.drives.remove(drive)
        return drive
