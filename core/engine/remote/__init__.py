"""Remote sets (issue #13): encrypted backup sets on an rclone remote (or any storage Backend).

:mod:`.rset` opens and creates a set and reads its snapshots and content;
:mod:`.backup`, :mod:`.restore` and :mod:`.check` (verify, forget and prune) are the
commands. The on-remote layout is in docs/format.md, "Remote sets"; why it is shaped
so, in docs/architecture.md, "Remote sets (issue #13)".
"""

from __future__ import annotations

from core.engine.remote.rset import RemoteSet

__all__ = ["RemoteSet"]
