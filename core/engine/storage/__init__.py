"""Storage backends (issue #13): immutable named blobs on a local folder or an rclone remote.

:mod:`.base` states what every backend promises; :mod:`.local` and :mod:`.rclone`
are the backends; :mod:`.wrappers` adds retries and rate limits around any of them;
:mod:`.lock` is the set lock for storage without exclusive create. See
docs/architecture.md, "Storage backends (issue #13)".
"""

from __future__ import annotations

from pathlib import Path

from core.engine.progress import Clock
from core.engine.storage.base import Backend, BlobInfo, Source, check_name, is_valid_name, read_all
from core.engine.storage.local import LocalBackend
from core.engine.storage.rclone import RcloneBackend, RemoteSpec, is_remote_spec, parse_spec
from core.engine.storage.wrappers import RateLimited, Retrying

__all__ = ["Backend", "BlobInfo", "LocalBackend", "RateLimited", "RcloneBackend", "RemoteSpec", "Retrying",
           "Source", "check_name", "is_remote_spec", "is_valid_name", "open_backend", "parse_spec", "read_all"]


def open_backend(target: str | Path, clock: Clock | None = None) -> Backend:
    """The backend for a SET argument: ``rclone:REMOTE:PATH`` (with retries) or a folder."""
    if isinstance(target, str) and is_remote_spec(target):
        return Retrying(RcloneBackend(parse_spec(target)), clock)
    return LocalBackend(Path(target))
