"""The versions of one file across a set's snapshots, for the Restore page (IPC ``versions``, issue #15).

The engine finds them (``core.engine.versions``: distinct contents, oldest first,
one manifest streamed at a time); this answers them newest first, each named by
the first snapshot holding it, which is the one the window restores it from. The
set opens as every browse command opens it (``core.agent.browse``): a job here,
or a set found on a drive, encrypted ones through the agent's unlocked-keys cache.
"""

from __future__ import annotations

from datetime import datetime, timezone


def file_versions(agent, which: dict, path: str) -> list[dict]:
    """``[{snapshot, time, size, sha256, mtime}]`` of ``path`` (as ``ls`` names it), newest first.

    ``which`` is ``{job}`` or ``{set}``; ``time`` is the snapshot's time, ``mtime`` the file's
    modified time (ISO, UTC). A folder is refused (UsageError), a path in no snapshot is NotFound.
    """
    # browse owns how a request opens its set (checks, unlocking); its private name is the one way in.
    from core.agent.browse import browsing
    from core.engine.versions import versions

    with browsing(agent, which) as src:
        found = versions(src.bset, path)
    return [{"snapshot": v.snapshot_id, "time": v.time, "size": v.size, "sha256": v.sha256,
             "mtime": datetime.fromtimestamp(v.mtime_ns / 1e9, timezone.utc).isoformat()}
            for v in reversed(found)]
