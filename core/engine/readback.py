"""After a backup: read back what the run wrote (from the drive, cache dropped), and copy once
more what read back wrong.

The run keeps what it wrote in a local spool (``_Run.written``, in manifest order, one
:func:`record` per file), so this streams too: a bounded number of batches is in flight
at a time. Files go to the worker threads a batch at a time: a hand-off per file (a
future, a lock, a GIL switch) cost more than reading a small file back, and several
threads reading at once keep the drive's queue full (cold reads wait on it).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from core.engine.manifest import FILE, Entry
from core.engine.progress import Progress
from core.engine.scan import ScanEntry
from core.engine.window import batches, ordered_map

BATCH = 64           # files per hand-off to a worker
BATCH_LINES = 1024   # spool lines decoded per json.loads call
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def record(e: Entry, se: ScanEntry) -> bytes:
    """The spool line for the file ``e``, read from ``se``: what the read-back and a repair need."""
    return _ENCODE([e.path, e.mirror, e.sha256, e.obj, e.size, e.parts, e.mtime_ns, e.mode, se.abspath,
                    se.size]).encode()


def _written(run) -> Iterator[tuple[Entry, ScanEntry]]:
    """What ``run`` wrote, in manifest order: (entry, the source it was read from)."""
    lines: list[bytes] = []
    for line in run.written.lines():
        lines.append(line)
        if len(lines) >= BATCH_LINES:
            yield from _decode(lines)
            lines = []
    yield from _decode(lines)


def _decode(lines: list[bytes]) -> Iterator[tuple[Entry, ScanEntry]]:
    if not lines:
        return
    # (a local spool this run wrote: trusted, unlike anything read from the drive)
    for path, mirror, sha, obj, size, parts, mtime_ns, mode, abspath, source_size in json.loads(
            b"[" + b",".join(lines) + b"]"):
        e = Entry(path, FILE, size, mtime_ns, mode, sha, mirror=mirror, parts=parts, obj=obj)
        yield e, ScanEntry(path, abspath, FILE, source_size, mtime_ns, mode, 0, 0)




def read_back(run) -> list[tuple[Entry, ScanEntry, str]]:
    """Compare what ``run`` wrote with its hashes: (entry, source, reason) of each file that
    read back wrong."""
    from core.engine.verify import check_entry

    if run.written is None or not run.stats["copied_files"]:
        return []
    damaged = []
    total, done, i = run.stats["copied_bytes"], 0, 0
    count = run.stats["copied_files"]

    def check(batch):
        return [check_entry(run.bset, e, run.store.written_paths(e)) for e, _ in batch]

    # Reads from a cold cache wait on the drive: several at once keep it busy.
    workers = max(4, run.options.workers * 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for batch, problems in ordered_map(pool, check, batches(_written(run), BATCH), 2 * workers):
            for (e, se), problem in zip(batch, problems, strict=True):
                if problem:
                    damaged.append((e, se, problem))
                done += e.size
                i += 1
            run.progress(Progress("verify", i, count, done, total, batch[-1][0].path))
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
