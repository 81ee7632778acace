"""A plain set's read-back in a worker process (issue #11): the GIL is not shared with the pass.

The read-back beside the pass (core/engine/readback_thread.py) ran in a thread of the run. Each of
its system calls let go of the GIL, and the pass's thread, waiting for it, was woken; each of the
pass's calls woke the read-back in turn: two threads trading one GIL many times a file (in
``perf``, a 100,000-file backup spent ~15 % of its CPU in futex wake-ups and task switches, beside
the kernel's and Python's own work). Here the reading and hashing of a plain set's copies run in a
worker of core/engine/readpool.py (the one ``verify --read-all`` uses, with its safety: each folder
opened from ``Latest/`` down by descriptor without following a symlink, each file ``lstat``'d,
opened ``O_NOFOLLOW | O_NONBLOCK`` and ``fstat``'d, its cache dropped before it is read); the
read-back's thread only hands it batches of (mirror path, parts, size, SHA-256) and takes back the
problems, one hand-off a batch instead of a few a file. Where no worker can start, readpool checks
the same batches in threads.
"""

from __future__ import annotations

from collections import deque
from itertools import chain, islice
from typing import Callable, Generator, Iterable, Iterator

from core.engine.manifest import Entry
from core.engine.readpool import HashPool, Item
from core.engine.scan import ScanEntry
from core.engine.window import batches

BATCH = 256      # files per hand-off to the worker
PROCESSES = 2    # workers (each reads with readpool.THREADS threads): reads in flight on a cold drive
#: Copies read back by ``few`` (this process) when all are known and no more than this: a day of
#: changes' ~430 took ~0.09 s after the commit in the workers (their start), ~0.04 s here; 3,000
#: took 0.17 s there and 0.15 s here (docs/performance.md, "#11: the day of changes, seventh pass").
FEW = 4096


def checked(run, items: Iterable[tuple[Entry, ScanEntry]], few: Callable[[Iterable], Iterator] | None = None,
            size: int | None = None, processes: int = PROCESSES,
            total: Callable[[], int | None] = lambda: None) -> Generator[tuple[list, list[str | None]], None, None]:
    """(batch, problems) for ``items`` (what ``run`` wrote, in order), as readback's other checks
    yield them: each batch's problems, None for a copy that read back right. Stopped early (the
    run failed or was cancelled), the workers are told to stop and waited for.

    ``few(items)``: how a run that copied less than a batch reads back, or no more than
    :data:`FEW` when ``total()`` (asked once the first batch is there) knows the count: no process
    is started for a day of changes or most small runs."""
    size = size or BATCH
    items = iter(items)
    first = list(islice(items, size))
    if few is not None and (len(first) < size or (known := total()) is not None and known <= FEW):
        yield from few(chain(first, items))
        return
    items = chain(first, items)
    sent: deque[list[tuple[Entry, ScanEntry]]] = deque()

    def work() -> Generator[list[Item], None, None]:
        for batch in batches(items, size):
            sent.append(batch)
            yield _handed(run, batch)

    # (Latest/, or a first backup's Latest/ being built in tmp/: core/engine/fresh_latest.py)
    with HashPool(run.layout.latest_written, processes) as pool:
        for _, found in pool.map(work()):
            batch = sent.popleft()
            problems: list[str | None] = [None] * len(batch)
            for i, reason in found:
                problems[i] = reason
            yield batch, problems


def _handed(run, batch: list[tuple[Entry, ScanEntry]]) -> list[Item]:
    """What the worker is given of ``batch``: each copy's place below ``Latest/`` and what it must
    hold. (Every copy of it is durable by then: the read-back is handed only what a flush made so.)"""
    return [(e.mirror_path, e.parts, e.size, e.sha256) for e, _ in batch]
