"""A remote set the user types on the Restore page (issue #13): "Look for backups in a folder…"
with ``rclone:REMOTE:PATH``, for sets no job here uses.

Checked before anything runs: the spec's form (``parse_spec``), then REMOTE among the user's
remotes (``rclone listremotes``; rclone missing or too old is said as such), then the set is
opened through the agent's rclone (the window runs none) with the window's fail-fast
(``open_backend(interactive=True)``). Listing it needs no key: plugback.json (read by the
engine's checked reader) gives the set id and the snapshot names their count; it is unlocked
afterwards like any remote set (IPC ``unlock`` with ``{set: spec}``).
"""

from __future__ import annotations

from core.errors import PlugbackError, UnknownRemote

PREFIX = "rclone:"


def is_remote_spec(path: object) -> bool:
    return isinstance(path, str) and path.startswith(PREFIX)


def checked_spec(spec: str) -> str:
    """``spec`` in its canonical form, its remote one of the user's; else the error to show."""
    from core.agent.remotes import list_remotes
    from core.engine.storage import parse_spec

    parsed = parse_spec(spec)
    remotes = list_remotes()
    if remotes["error"]:   # rclone missing or too old, its configuration unreadable: said by list_remotes
        raise PlugbackError(remotes["error"]["message"])
    if parsed.remote not in remotes["remotes"]:
        raise UnknownRemote(remote=parsed.remote)
    return str(parsed)


def scan_remote(spec: str, found) -> None:
    """Add the set at ``spec`` to ``found`` (core.agent.sets.Found), or a problem in plain words."""
    from core.agent.remote_jobs import open_backend
    from core.agent.sets import MAX_SETS, FoundSet
    from core.engine.remote.rset import RemoteSet, listed_snapshot_ids

    if len(found.sets) >= MAX_SETS:
        found.truncated = True
        return
    try:
        spec = checked_spec(spec)
        backend = open_backend(spec, interactive=True)
        try:
            set_id = _set_id(RemoteSet, backend)
            ids = listed_snapshot_ids(backend)
        finally:
            backend.close()
    except PlugbackError as err:
        found.problems.append({"path": spec, "message": err.message.rstrip(".")})
        return
    remote, _, folder = spec.removeprefix(PREFIX).partition(":")
    found.sets.append(FoundSet(
        path=spec, set_id=set_id, encrypted=True, computer=f"on {remote}",
        job=folder.rstrip("/").rpartition("/")[2] or remote, named_by="folders", snapshots=len(ids),
        newest=ids[-1] if ids else None, newest_time=None, newest_files=None, where=spec))


class _Listed(Exception):
    """Raised by the unlocker :func:`_set_id` gives: plugback.json was read and checked; no key is made."""

    def __init__(self, set_id: str):
        super().__init__(set_id)
        self.set_id = set_id


def _set_id(remote_set, backend) -> str:
    """The set id in ``backend``'s plugback.json, read and checked by ``RemoteSet.open`` (NotASet when
    there is none), which is stopped before anything is unlocked."""
    def listed(enc: dict, set_id: str):
        raise _Listed(set_id)

    try:
        remote_set.open(backend, listed)
    except _Listed as seen:
        return seen.set_id
    raise AssertionError("not reached: the unlocker is always asked")
