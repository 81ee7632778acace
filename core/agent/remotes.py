"""What the window asks about cloud and network locations (issue #13): the user's rclone remotes
(IPC ``remotes``) and "Test connection" (IPC ``remote_test``).

Plugback keeps no credentials: the remotes are the user's rclone configuration
(``RCLONE_CONFIG`` honoured as rclone does). Every trouble is a reply the window
shows as it is, never a traceback: rclone missing (what to install, where),
too old, an unknown remote, a refused login, an unreachable server.
"""

from __future__ import annotations

import subprocess

from core.errors import PlugbackError, RcloneFailed, UsageError

LIST_TIMEOUT = 30   # seconds for 'rclone listremotes' (it only reads the configuration)


def list_remotes() -> dict:
    """``{remotes: [names], error: null}``, or no remotes and ``error``: ``{code, message}``
    (rclone missing or too old, its configuration unreadable)."""
    from core.engine.storage.rclone_rcd import check_version, find_rclone

    try:
        exe = find_rclone()
        check_version(exe)
        try:
            done = subprocess.run([exe, "listremotes"], capture_output=True, text=True, timeout=LIST_TIMEOUT,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as err:
            raise RcloneFailed(reason=f"'rclone listremotes' failed: {err}") from err
        if done.returncode != 0:
            raise RcloneFailed(reason=(done.stderr.strip().splitlines() or ["no message"])[-1])
    except PlugbackError as err:
        return {"remotes": [], "error": {"code": err.code, "message": err.message}}
    names = [line.strip().removesuffix(":") for line in done.stdout.splitlines() if line.strip()]
    return {"remotes": sorted(n for n in names if n), "error": None}


def test_connection(spec: str) -> dict:
    """Open ``spec`` (``rclone:REMOTE:PATH``) and list its folder, as a backup would first.

    ``{ok: true, set: bool, message}`` (``set``: a Plugback set is there already), or
    ``{ok: false, code, message}`` with the error's one-line message; an unreachable remote
    fails at once ("Can't reach REMOTE: ...", no rclone retries)."""
    from core.agent.remote_jobs import open_backend
    from core.engine.remote.rset import RemoteSet

    backend = None
    try:
        backend = open_backend(spec, interactive=True, attempts=1)   # (no retries: say what happened)
        found = RemoteSet.exists(backend)
        # Reads the folder (a new one is fine: the backup makes it); one that holds other files is not.
        if not found and next(iter(backend.list("")), None) is not None:
            raise UsageError(f"{spec} is not empty and not a Plugback backup set. Choose an empty or new "
                             "folder, so nothing else is mixed into the backup.")
    except PlugbackError as err:
        return {"ok": False, "code": err.code, "message": err.message}
    finally:
        if backend is not None:
            backend.close()
    said = "it holds a Plugback backup, which the job will use" if found else "backups will be kept there"
    return {"ok": True, "set": found, "message": f"Connected to {spec}: {said}."}
