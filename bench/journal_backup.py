"""One plugback backup run in-process, for bench/journal.py (issue #12): prints its timings as JSON.

    python bench/journal_backup.py SRC SET [--hint HINT.json] [--cache DIR]

HINT.json: {"dirs": [...], "trees": [...]} (absolute folders); the hint is taken against the
set's newest snapshot. Without --hint: a full scan. --cache: the engine's cache folder
(``BackupOptions.cache``, as the agent gives it: the record of the manifests this computer
wrote, which lets a journal run splice its parent's lines; core/engine/trust.py). Prints {"import": s, "backup": s, "scan":
"full"|"journal", "steps": {...}}: ``backup`` is the engine call alone (what the agent, already
running, waits for after the connect delay), ``import`` the engine's import (the agent pays it
once), ``steps`` the seconds of the run's steps (its methods, timed from outside): reading the
parent manifest whole, the pass (scan, compare, copy, new manifest spooled), the commit
(volume flush, manifest and Latest.sha256 written) and the read-back.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

start = time.perf_counter()
from core.engine.backup import BackupOptions, backup  # noqa: E402 - timed on purpose
from core.engine.changes import ChangeHint  # noqa: E402
from core.engine.progress import Clock  # noqa: E402
from core.engine.repo import BackupSet  # noqa: E402

imported = time.perf_counter()
steps: dict[str, float] = {}


def _timed(owner, name: str, step: str) -> None:
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            steps[step] = round(steps.get(step, 0.0) + time.perf_counter() - t, 3)

    setattr(owner, name, wrapper)


def main(argv: list[str]) -> int:
    from core.engine import backup as backup_mod
    from core.engine import readback

    for name, step in (("_check_parent", "parent read"), ("_pass", "pass"), ("_commit", "commit")):
        _timed(backup_mod._Run, name, step)
    _timed(readback, "read_back", "read-back")
    src, set_path = argv[0], Path(argv[1])
    began, cpu = time.perf_counter(), time.process_time()
    bset = BackupSet.open(set_path) if BackupSet.exists(set_path) else BackupSet.create(set_path, Clock().now())
    hint, opts = None, dict(zip(argv[2::2], argv[3::2], strict=True))
    if "--hint" in opts:
        named = json.loads(Path(opts["--hint"]).read_text())
        hint = ChangeHint(bset.newest_id(), frozenset(named.get("dirs", ())), frozenset(named.get("trees", ())))
    cache = Path(opts["--cache"]) if "--cache" in opts else None
    result = backup(bset, [src], BackupOptions(changes=hint, cache=cache))
    ended, cpu = time.perf_counter(), time.process_time() - cpu
    print(json.dumps({"import": round(imported - start, 3), "backup": round(ended - began, 3), "backup_cpu": round(cpu, 3),
                      "scan": result.scan, "files": result.files_scanned, "copied": result.files_copied,
                      "status": result.status.value, "steps": steps}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
