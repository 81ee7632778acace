"""Reading and writing ``config.json``: validated load, atomic write, and edits under a file lock.

A broken file is moved aside to ``config.json.broken-<time>`` and reported,
never overwritten silently. The settings themselves are in :mod:`core.agent.config`.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from core.agent.config import Config
from core.engine.atomic import replace_file
from core.errors import ConfigError


def read_config(path: Path) -> Config:
    """Load and validate ``path``; a missing file is an empty config.

    Raises ConfigError (naming the bad field and the file) for a file that is
    not valid JSON or does not validate. Never changes the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(field="(file)", reason=f"not valid JSON (line {err.lineno}: {err.msg})",
                          path=str(path)) from None
    try:
        return Config.from_dict(data)
    except ConfigError as err:
        raise ConfigError(field=err.details["field"], reason=err.details["reason"], path=str(path)) from None


def move_aside(path: Path, clock_now: datetime | None = None) -> Path:
    """Keep a broken settings file as ``config.json.broken-<time>``; returns the new name."""
    now = clock_now or datetime.now(timezone.utc)
    target = path.with_name(f"{path.name}.broken-{now.strftime('%Y%m%dT%H%M%SZ')}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.broken-{now.strftime('%Y%m%dT%H%M%SZ')}-{n}")
    os.replace(path, target)
    return target


def load_or_recover(path: Path) -> tuple[Config, Path | None, ConfigError | None]:
    """Load ``path``; a broken file is moved aside and an empty config returned.

    Returns ``(config, moved_to, error)``; ``moved_to`` and ``error`` are None
    when the file was fine. A file from a newer Plugback is not broken: its
    ConfigError is raised, and the file is left alone.
    """
    try:
        return read_config(path), None, None
    except ConfigError as err:
        if err.details.get("field") == "version" and "newer" in err.details.get("reason", ""):
            raise
        return Config(), move_aside(Path(path)), err


def write_config(path: Path, config: Config) -> None:
    """Write atomically (core.engine.atomic.replace_file: temp file, fsync, replace, fsync the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config.to_dict(), indent=2, ensure_ascii=False) + "\n"
    replace_file(path, text.encode("utf-8"), mode=0o600)


@contextmanager
def locked(path: Path):
    """Hold an exclusive lock on ``<config>.lock`` (the CLI and the agent both edit the file)."""
    lock_path = Path(path).with_name(Path(path).name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as f:
        if sys.platform == "win32":
            import msvcrt

            f.seek(0)
            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def update_config(path: Path, change, *, fallback: Config | None = None) -> tuple[Config, Path | None]:
    """Read-modify-write under the lock: ``change(config)`` edits a fresh copy in place.

    A file that no longer validates is never overwritten silently: without
    ``fallback`` its ConfigError is raised; with one (the agent's last good
    settings) it is moved aside, ``change`` applies to the fallback and the
    aside name is returned so the caller can report it.
    """
    with locked(path):
        moved = None
        try:
            config = read_config(path)
        except ConfigError:
            if fallback is None:
                raise
            moved = move_aside(Path(path))
            config = fallback.copy()
        change(config)
        # Validate what we are about to write: the same rules as on load.
        Config.from_dict(config.to_dict())
        write_config(path, config)
        return config, moved


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of the settings file, to notice edits by others; None if missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)
