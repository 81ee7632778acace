"""After a backup: read back what the run wrote (from the drive, cache dropped), and copy once
more what read back wrong.

The run keeps what it wrote in a local spool (``_Run.written``, in manifest order),
so this streams too: a bounded number of checks is in flight at a time.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from core.engine.manifest import FILE, Entry
from core.engine.progress import Progress
from core.engine.scan import ScanEntry
from core.engine.window import ordered_map


def _written(run):
    """What ``run`` wrote, in manifest order: (entry, the source it was read from)."""
    for line in run.written.lines():
        d = json.loads(line)
        e = Entry.from_dict(d["e"])
        yield e, ScanEntry(e.path, d["a"], FILE, d["s"], e.mtime_ns, e.mode, 0, 0)


def read_back(run) -> list[tuple[Entry, ScanEntry, str]]:
    """Compare what ``run`` wrote with its hashes: (entry, source, reason) of each file that
    read back wrong."""
    from core.engine.verify import check_entry

    if run.written is None or not run.stats["copied_files"]:
        return []
    damaged = []
    total, done = run.stats["copied_bytes"], 0
    count = run.stats["copied_files"]

    def check(item):
        return check_entry(run.bset, item[0], run.store.written_paths(item[0]))

    # Reads from a cold cache wait on the drive: several at once keep it busy.
    workers = max(2, run.options.workers * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, ((e, se), problem) in enumerate(ordered_map(pool, check, _written(run), 8 * workers)):
            if problem:
                damaged.append((e, se, problem))
            done += e.size
            run.progress(Progress("verify", i + 1, count, done, total, e.path))
    return damaged


def repair(run, damaged: list[tuple[Entry, ScanEntry, str]]) -> list[tuple[str, str]]:
    """Copy each file that read back wrong once more from its unchanged source, over the bad
    copy, and read it back again; what is still wrong, as (path, reason)."""
    from core.engine.verify import check_entry

    store, still = run.store, []
    for e, se, reason in damaged:
        try:
            copied = store.copy_in(se)
        except OSError:
            copied = None
        if copied is not None and (copied.changed or copied.sha256 != e.sha256
                                   or len(copied.tmp_paths) != len(store.written_paths(e))):
            store.discard(copied)
            copied = None
        if copied is None:
            still.append((e.path, reason))
            continue
        store.overwrite(copied, e)
        problem = check_entry(run.bset, e, store.written_paths(e))
        if problem:
            still.append((e.path, problem))
    return still
