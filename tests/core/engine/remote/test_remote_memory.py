"""A remote set's backup and restore hold nothing per file (issue #13): memory flat in the file count.

As tests/core/engine/test_memory.py does for drives: the tracemalloc peak (every Python
allocation, every thread) of runs over SMALL and LARGE trees of tiny files, on a folder
backend (the storage does not change what the engine keeps), may differ by at most
PER_FILE bytes per added file plus BOUNDED for buffers of a fixed size (1 MiB read buffers;
SQLite page caches up to their cap; index and restore reads in flight). A pack holds up to PACK_OBJECTS objects (~1.2 KB each
in Python) until it is stored: bounded, but 4,096 of them are ~5 MB, more than SMALL files
fill, so the test closes packs at 256 objects to see what grows per file; for the same reason
the scan runs 256 entries ahead of the manifest here, not WINDOW's 4,096.
Deterministic, not timed.

The tracemalloc bound above cannot see a small leak (one ``Entry`` kept per file is ~0.5 KB,
2 MB over the 4,000 added files, well inside BOUNDED's noise), so a second test counts the live
``Entry`` and ``ScanEntry`` objects every SAMPLE_EVERY constructions (after a collection): their most at once
stays under LIVE_BOUND (the windows' size), however many files.
"""

from __future__ import annotations

import gc
import tracemalloc

from core.engine import crypto
from core.engine.manifest import Entry
from core.engine.progress import Clock
from core.engine.remote import backup as remote_backup
from core.engine.remote import packs
from core.engine.remote.backup import backup
from core.engine.remote.restore import restore
from core.engine.remote.rset import RemoteSet
from core.engine.scan import ScanEntry
from core.engine.storage import LocalBackend

SMALL, LARGE = 1_000, 5_000
PER_FILE = 150
# Fixed-size buffers whose peak depends on thread timing: index readers (up to 12 indexes in
# flight or waiting) and the restore's parallel reads. Measured: a restore's peak is 11.7-12.8 MB
# at 1,000 and at 5,000 files alike, but one run under load peaked at 7.5 MB at 1,000 files (a
# 4.9 MB difference with nothing per file): 4 MiB was too tight for that noise.
BOUNDED = 8 << 20
# Live entries: the run's window, the read-ahead's (both WINDOW, 256 here) and a few in flight,
# however many files; a leak of one per file is thousands at LARGE (7,224 when one was put in).
SAMPLE_EVERY = 500
LIVE_BOUND = 2 * 256 + 64


def _tree(root, n):
    for i in range(n):
        d = root / f"d{i // 100:04}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        (d / f"file-{i:06}.txt").write_bytes(b"%d\n" % i)
    return root


def _peak(fn) -> int:
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    return tracemalloc.get_traced_memory()[1] - base


def _run(tmp_path, n: int) -> tuple[int, int, int]:
    """Peaks of a full backup, a no-change backup and a restore of ``n`` tiny files."""
    src = _tree(tmp_path / f"src{n}" / "Data", n)
    rset = RemoteSet.create(LocalBackend(tmp_path / f"set{n}"), Clock().now(), "pw")
    full = _peak(lambda: backup(rset, [src]))
    again = _peak(lambda: backup(rset, [src]))
    reopened = RemoteSet.open(rset.backend, lambda enc, sid: crypto.unlock_with_passphrase(enc, "pw"))
    back = _peak(lambda: restore(reopened, tmp_path / f"out{n}"))
    return full, again, back


def test_backup_and_restore_memory_is_flat_in_the_file_count(tmp_path, monkeypatch):
    monkeypatch.setattr(packs, "PACK_OBJECTS", 256)
    monkeypatch.setattr(remote_backup, "WINDOW", 256)
    tracemalloc.start()
    try:
        peaks = {n: _run(tmp_path, n) for n in (SMALL, LARGE)}
    finally:
        tracemalloc.stop()
    allowed = PER_FILE * (LARGE - SMALL) + BOUNDED
    for what, small, large in zip(("full backup", "no-change backup", "restore"), peaks[SMALL], peaks[LARGE],
                                  strict=True):
        per_file = (large - small) / (LARGE - SMALL)
        assert large - small <= allowed, f"{what}: {small} -> {large} bytes ({per_file:.0f} per file)"


class _LiveCounter:
    """Counts live objects of ``kinds`` every SAMPLE_EVERY constructions; keeps the most seen."""

    def __init__(self, monkeypatch, kinds: tuple[type, ...]):
        self.kinds, self.made, self.most = kinds, 0, 0
        for kind in kinds:
            monkeypatch.setattr(kind, "__init__", self._counting(vars(kind)["__init__"]))

    def _counting(self, init):
        def counted(obj, *args, **kwargs):
            init(obj, *args, **kwargs)
            self.made += 1
            if self.made % SAMPLE_EVERY == 0:
                gc.collect()   # only what is still referenced: garbage in cycles waits for the collector
                live = sum(1 for o in gc.get_objects() if isinstance(o, self.kinds))
                self.most = max(self.most, live)
        return counted

    def most_during(self, fn) -> int:
        self.most = 0
        fn()
        return self.most


def _most_live(counter: _LiveCounter, tmp_path, n: int) -> tuple[int, int, int]:
    """The most live entries during a full backup, a no-change backup and a restore of ``n`` files."""
    src = _tree(tmp_path / f"src{n}" / "Data", n)
    rset = RemoteSet.create(LocalBackend(tmp_path / f"set{n}"), Clock().now(), "pw")
    full = counter.most_during(lambda: backup(rset, [src]))
    again = counter.most_during(lambda: backup(rset, [src]))
    back = counter.most_during(lambda: restore(rset, tmp_path / f"out{n}"))
    return full, again, back


def test_live_entries_do_not_grow_with_the_file_count(tmp_path, monkeypatch):
    monkeypatch.setattr(packs, "PACK_OBJECTS", 256)
    monkeypatch.setattr(remote_backup, "WINDOW", 256)
    counter = _LiveCounter(monkeypatch, (Entry, ScanEntry))
    most = {n: _most_live(counter, tmp_path, n) for n in (SMALL, LARGE)}
    for what, small, large in zip(("full backup", "no-change backup", "restore"), most[SMALL], most[LARGE],
                                  strict=True):
        assert small > 0, f"{what}: no entries counted (the counter is not wired)"
        # Against the bound, not against the SMALL run's most: a sample every SAMPLE_EVERY
        # constructions may miss the moment the window is full at SMALL files (54 against 258).
        assert large <= LIVE_BOUND, f"{what}: at most {small} live entries at {SMALL} files, {large} at {LARGE}"
