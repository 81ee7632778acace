"""Which files a "keep both" restore saves under another name, so the window can name them (issue #15).

The engine's RestoreResult counts them (``kept_both``) but does not name them yet.
Until it does, the agent looks before the restore: every chosen file whose
destination already exists will be written next to it under the name the engine
picks (``core.engine.restore._kept_name``: "name (restored).ext", then
"(restored 2)"...), and after the restore each predicted name is kept only if
it is really there now. At most :data:`LIMIT` files are named; the count stays
the engine's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

log = logging.getLogger("plugback.browse")
LIMIT = 200


def would_collide(bset, where, options) -> list[dict]:
    """``[{path, to, as}]``: the chosen files already at their destination, and the name each will get."""
    try:
        from core.engine.restore import _kept_name, select
    except ImportError:   # the engine changed how it names them: the result then gives the count only
        log.warning("cannot name the files a restore keeps under another name")
        return []
    snapshot = bset.resolve_id(options.snapshot)
    out = []
    for e in select(bset.manifest(snapshot).entries, options.paths):
        if e.type == "d":
            continue
        top, _, rest = e.path.partition("/")
        root = where.get(top) if isinstance(where, Mapping) else os.path.join(str(where), top)
        if root is None:
            continue
        dest = os.path.join(root, *rest.split("/")) if rest else root
        if os.path.lexists(dest) and not os.path.isdir(dest):
            out.append({"path": e.path, "to": dest, "as": _kept_name(dest)})
            if len(out) >= LIMIT:
                break
    return out


def renamed_after(collide: list[dict]) -> list[dict]:
    """The predicted renames that happened: ``[{path, to, as}]`` (``as`` exists now)."""
    return [c for c in collide if os.path.lexists(c["as"])]
