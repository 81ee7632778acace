"""``verify --read-all`` of a plain set's ``Latest/`` in worker processes, beside the manifest work.

A plain set's newest snapshot is checked file by file at its place in ``Latest/``
(core/engine/verify.py). With many files (:data:`POOL_FROM`) those files are read and
hashed by worker processes (core/engine/readpool.py), and that starts at once, for the
newest snapshot as listed, in a thread of its own: the main thread meanwhile streams
every manifest into the scratch table and checks the contents kept in ``objects/``.
The files to read come from the manifest's lines with only the checks the reads need
(``rawlines.file_items``): the newest snapshot is only known to be the newest *intact*
one when the main thread has decoded it, or one with the same lines, to its checked end;
if it turns out otherwise (damaged, or an interrupted backup's journal), what was found
is dropped and ``Latest/`` is checked again against the snapshot that is.

The report is the one the checks in one thread give: the same reasons (readpool words
them as ``verify.check_entry`` does), the ``Latest/`` findings after those of
``objects/``, in the manifest's order. Memory stays flat: a bounded number of batches
is in flight, and only problems are kept.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from core.engine import rawlines
from core.engine.progress import Progress
from core.engine.readpool import THREADS, HashPool
from core.engine.window import batches
from core.errors import PlugbackError

if TYPE_CHECKING:
    from core.engine.repo import BackupSet
    from core.engine.verify import VerifyOptions, VerifyResult, _Tally

POOL_FROM = 2048     # Latest/ files from which --read-all reads them in worker processes
QUICK_POOL_FROM = 10_000   # ... from which a quick verify checks their sizes there (fewer: the stat calls in one
                           # thread cost about what starting the workers does)
POOL_BATCH = 128     # Latest/ files per batch handed to a worker process
POLL = 0.25          # seconds between progress reports while waiting for the workers


@dataclass
class Found:
    """What the ``Latest/`` checks of one snapshot found: counts, problems in order, and how it ended."""

    sid: str
    files: int = 0
    bytes: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)
    current: str = ""
    error: BaseException | None = None
    read: dict[str, str] = field(default_factory=dict)   # the hash of the snapshot's bytes as read (file_items)


def check_latest(bset: "BackupSet", sid: str, pool: HashPool, options: "VerifyOptions", found: Found,
                 stop: threading.Event | None = None) -> None:
    """Check every file of snapshot ``sid`` in ``Latest/`` with ``pool``, into ``found``."""
    items = rawlines.file_items(bset, sid, found.read)
    if not options.read_all:   # a quick verify: sizes only (readpool.Checker reads nothing then)
        items = ((mirror, parts, size, None) for mirror, parts, size, _sha in items)
    answers = pool.map(batches(items, POOL_BATCH))
    try:
        for batch, problems in answers:
            if stop is not None and stop.is_set():
                return
            options.cancel.check()
            for i, problem in problems:
                found.damaged.append((f"Latest/{batch[i][0]}", problem))
            found.bytes += sum(item[2] for item in batch)   # (for progress; read only with read_all)
            found.files += len(batch)
            found.current = f"Latest/{batch[-1][0]}"
    finally:
        answers.close()   # the batches still in flight are waited for: the pool is ready for the next run


class Early:
    """:func:`check_latest` of the newest listed snapshot, run in a thread from the start."""

    def __init__(self, bset: "BackupSet", sid: str, pool: HashPool, options: "VerifyOptions"):
        self.found = Found(sid)
        self.pool = pool
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(bset, sid, pool, options),
                                        name="verify-latest", daemon=True)
        self._thread.start()

    def _run(self, bset: "BackupSet", sid: str, pool: HashPool, options: "VerifyOptions") -> None:
        try:
            check_latest(bset, sid, pool, options, self.found, self._stop)
        except BaseException as err:  # noqa: BLE001 - handed to the main thread, which raises it (finish)
            self.found.error = err

    def finish(self, options: "VerifyOptions", result: "VerifyResult", tally: "_Tally") -> None:
        """Wait for the checks (reporting progress), then add what they found to ``result``."""
        base_files, base_bytes = tally.files_done, tally.bytes_done
        while self._thread.is_alive():
            self._thread.join(POLL)
            options.cancel.check()
            f = self.found
            options.progress(Progress("verify", base_files + f.files, tally.files, base_bytes + f.bytes,
                                      tally.bytes, f.current))
        if self.found.error is not None:
            raise self.found.error
        add(self.found, result, tally, options.read_all)
        # (when the checks ended before this was called, the loop above reported nothing)
        options.progress(Progress("verify", tally.files_done, tally.files, tally.bytes_done, tally.bytes,
                                  self.found.current))

    def stop(self) -> None:
        """Stop the checks (cancelled, failed, or the snapshot was not the newest intact one)."""
        self._stop.set()
        self._thread.join()


def add(found: Found, result: "VerifyResult", tally: "_Tally", read_all: bool) -> None:
    result.contents += found.files
    result.bytes_read += found.bytes if read_all else 0
    result.damaged.extend(found.damaged)
    tally.files_done += found.files
    tally.bytes_done += found.bytes


@contextmanager
def started(bset: "BackupSet", options: "VerifyOptions") -> Iterator[Early | None]:
    """The early ``Latest/`` checks, when worth it: a plain set whose newest snapshot has :data:`POOL_FROM`
    files or more (:data:`QUICK_POOL_FROM` without ``read_all``), and no interrupted backup (then Latest/
    is not checked); None otherwise (the checks then run in threads, as every other check).
    Without ``read_all`` the workers check sizes only:
    a quick verify's ``lstat`` of each file is one cold metadata read, many in flight at once
    (in one thread, one after another, 1,000,000 of them took longer than reading every byte)."""
    newest = bset.newest_id()
    files = 0
    if options.workers > 1 and newest and not bset.encrypted \
            and not bset.layout.journal.exists():
        try:
            files = int(bset.header(newest).totals.get("files", 0))
        except PlugbackError:
            files = 0   # the manifest is damaged: reading it names it
    if newest is None or files < (POOL_FROM if options.read_all else QUICK_POOL_FROM):
        yield None
        return
    # Reads in flight: options.workers, as the threads of the other checks (restore.IO_WORKERS)
    with HashPool(str(bset.layout.latest), max(1, options.workers // THREADS)) as pool:
        early = Early(bset, newest, pool, options)
        try:
            yield early
        finally:
            early.stop()


def rerun(bset: "BackupSet", sid: str, early: Early, options: "VerifyOptions", result: "VerifyResult",
          tally: "_Tally") -> Found:
    """The newest intact snapshot is not the one checked early: check ``Latest/`` against ``sid``."""
    early.stop()
    found = Found(sid)
    check_latest(bset, sid, early.pool, options, found)
    add(found, result, tally, options.read_all)
    return found
