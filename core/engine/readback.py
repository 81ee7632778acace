"""After a backup: read back what the run wrote (from the drive, cache dropped), and copy once
more what read back wrong.

The run keeps what it wrote in local blocks (``_Run.written``, core/engine/readback_ahead.py:
in manifest order, one :func:`record` per file, each block given to the read-back once a flush
made its files durable, in a plain set on Linux while the pass goes on), so this streams too:
a bounded number of files is in flight at a time. Cold reads wait on the drive, so many must
be asked for at once to keep its queue full. A plain set on Linux is read back in worker
processes (core/engine/readback_proc.py: the read-back beside the pass no longer trades the
pass's GIL at every system call), unless the whole record is known when its first batch comes
(the commit released it) and holds at most ``readback_proc.FEW`` copies (a day of changes): then
here, as below (the workers' start was most of such a read-back). An encrypted set on Linux is
read back in one thread: each object is opened and its read started (``posix_fadvise``) a window
of files before it is checked; with several threads each tiny read traded the GIL (tens of futex calls
per file: half a small-file backup's CPU). Big files still go to worker threads; in an
encrypted set with seal worker processes (core/engine/sealpool.py), small objects go to those
too, a batch at a time, beside this thread (core/engine/objcheck.py is the check both run).
Systems without read-ahead hand files to worker threads a batch at a time (a hand-off per file
cost more than reading a small file back).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from typing import Callable, Generator, Iterable, Iterator

from core.engine import objcheck, readback_proc, sealpool
from core.engine.fs import READS_AHEAD, blocks, read_buffer, read_into
from core.engine.manifest import FILE, Entry
from core.engine.scan import ScanEntry
from core.engine.window import batches, ordered_map

BATCH = 64           # files per hand-off to a worker (and per progress report)
AHEAD = 64           # plain sets: files opened, and their reads started, before the one hashed
BIG = objcheck.BIG   # files this big are read back in worker threads (hashed, decrypted in parallel)
SMALL_OBJECT = objcheck.SMALL_OBJECT   # encrypted: an object up to this size is read whole in one call
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_STR = json.encoder.encode_basestring_ascii   # a JSON string as _ENCODE writes it


def record(e: Entry, se: ScanEntry) -> bytes:
    """The spool line for the file ``e``, read from ``se``: what the read-back and a repair need.

    The JSON array ``_ENCODE`` writes, formatted directly (one per file copied: the encoder's
    setup cost more than the line; test_copy_path holds the two equal).
    """
    mirror = "null" if e.mirror is None else _STR(e.mirror)
    obj = "null" if e.obj is None else f'"{e.obj}"'   # (hex digits)
    return (f'[{_STR(e.path)},{mirror},"{e.sha256}",{obj},{e.size},{e.parts},{e.mtime_ns},{e.mode},'
            f'{_STR(se.abspath)},{se.size}]').encode("ascii")


def decoded(blocks: Iterable[list[bytes]]) -> Iterator[tuple[Entry, ScanEntry]]:
    """The files of blocks of :func:`record` lines (a run's ``written``), in their order: (entry,
    the source it was read from). Each block is decoded as soon as it comes (the read-back beside
    the pass gets one when a flush made its files durable)."""
    for lines in blocks:
        yield from _decode(lines)


def _decode(lines: list[bytes]) -> Iterator[tuple[Entry, ScanEntry]]:
    if not lines:
        return
    # (a local spool this run wrote: trusted, unlike anything read from the drive)
    for path, mirror, sha, obj, size, parts, mtime_ns, mode, abspath, source_size in json.loads(
            b"[" + b",".join(lines) + b"]"):
        e = Entry(path, FILE, size, mtime_ns, mode, sha, mirror=mirror, parts=parts, obj=obj)
        yield e, ScanEntry(path, abspath, FILE, source_size, mtime_ns, mode, 0, 0)


def read_back(run, items: Iterable[tuple[Entry, ScanEntry]], seen: Callable[[int, int, str], None],
              total: Callable[[], int | None] = lambda: None) -> list[tuple[Entry, ScanEntry, str]]:
    """Compare the copies of ``items`` (what ``run`` wrote, see :func:`decoded`) with their hashes:
    (entry, source, reason) of each file that read back wrong. ``seen(files, bytes, path)``: after
    each batch, how many were checked so far (the caller reports progress, or raises to stop).
    ``total()``: how many ``items`` there are once that is known (the run committed), else None."""
    damaged = []
    done, i = 0, 0
    if READS_AHEAD and run.bset.keys is None:   # (a plain set on Linux: in worker processes, readback_proc.py)
        checked = readback_proc.checked(run, items, lambda few: _checked_ahead(run, few), total=total)
    else:
        checked = _checked_ahead(run, items) if READS_AHEAD else _checked_in_threads(run, items)
    with closing(checked):   # (stopped early, e.g. a run failing: the files opened ahead close now)
        for batch, problems in checked:
            for (e, se), problem in zip(batch, problems, strict=True):
                if problem:
                    damaged.append((e, se, problem))
                done += e.size
                i += 1
            seen(i, done, batch[-1][0].path)
    return damaged


def _checked_in_threads(run, items: Iterable[tuple[Entry, ScanEntry]]) -> Generator[tuple[list, list[str | None]], None, None]:
    """(batch, problems), each batch checked in a worker thread: systems where one thread cannot
    ask for reads ahead (Windows, macOS), plain and encrypted sets alike."""
    from core.engine.verify import check_entry

    def check(batch):
        return [check_entry(run.bset, e, run.store.written_paths(e)) for e, _ in batch]

    # Reads from a cold cache wait on the drive: several at once keep it busy.
    workers = max(4, run.options.workers * 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from ordered_map(pool, check, batches(items, BATCH), 2 * workers)


class _Remote:
    """A small object handed to a seal worker's read-back (sealpool.SealPool.check)."""

    __slots__ = ("tag", "index", "paths")

    def __init__(self, where: tuple[int, int], paths: list):
        (self.tag, self.index), self.paths = where, paths


def _seal_pool(run):
    """The run's seal workers, when they are there to read back small objects (sealpool.py)."""
    sealing = getattr(run, "sealing", None)
    return sealing.pool if sealing is not None and sealing.active and run.bset.keys is not None else None


def _to_worker(pool, e: Entry) -> bool:
    """Whether the small object of ``e`` goes to a seal worker: it joins the batch being filled, or
    starts one if a worker has room; else this thread reads it back (the two share the work)."""
    return pool is not None and e.size < BIG and (pool.filling() or pool.room())


def _checked_ahead(run, items: Iterable[tuple[Entry, ScanEntry]]) -> Generator[tuple[list, list[str | None]], None, None]:
    """(batch, problems): each small file (an encrypted set: its object) is opened :data:`AHEAD`
    files before it is checked in this thread, its cached pages dropped and its read started
    then (the drive works on many at once, as threads made it, without their GIL hand-offs:
    those cost a backup of small files more CPU than the reads). A file of :data:`BIG` bytes
    or more is read back in a worker thread, as before (hashlib and the cipher let go of the
    GIL for big blocks, so big files are checked on several cores at once). In an encrypted set
    whose small files were sealed by worker processes, those workers read back small objects
    too, a batch at a time, while this thread reads back the ones they have no room for."""
    ahead: deque[tuple[tuple[Entry, ScanEntry], list[int] | str | Future | _Remote]] = deque()
    batch: list[tuple[Entry, ScanEntry]] = []
    problems: list[str | None] = []
    buf = read_buffer() if run.bset.keys is None else memoryview(bytearray(SMALL_OBJECT + 1))
    pool = _seal_pool(run)
    # (the workers' batches in flight beside this thread's AHEAD open files)
    limit = AHEAD + (pool.size * sealpool.DEPTH + 1) * sealpool.BATCH if pool is not None else AHEAD
    local = 0   # files this thread holds open ahead
    with ThreadPoolExecutor(max_workers=max(4, run.options.workers * 4)) as threads:
        try:
            for item in items:
                e, paths = item[0], run.store.written_paths(item[0])
                if e.size >= BIG:
                    opened: list[int] | str | Future | _Remote = threads.submit(_check_entry, run.bset, e, paths)
                elif _to_worker(pool, e):
                    opened = _Remote(pool.check(([str(p) for p in paths], e.obj, e.sha256, e.size)), paths)
                else:
                    opened = objcheck.open_copy(paths)
                    local += 1
                ahead.append((item, opened))
                while len(ahead) > limit or local > AHEAD:
                    done, opened = ahead.popleft()
                    local -= not isinstance(opened, (Future, _Remote))
                    batch.append(done)
                    problems.append(_finish(run.bset, done[0], opened, buf, pool))
                if len(batch) >= BATCH:
                    yield batch, problems
                    batch, problems = [], []
            while ahead:
                done, opened = ahead.popleft()
                batch.append(done)
                problems.append(_finish(run.bset, done[0], opened, buf, pool))
            if batch:
                yield batch, problems
        finally:
            for _, opened in ahead:
                _close(opened)


def _check_entry(bset, e: Entry, paths: list) -> str | None:
    """``verify.check_entry`` (imported at a big file's first check: a day of changes' small copies
    never load the verify engine, ~9 ms on a cold cache)."""
    from core.engine.verify import check_entry

    return check_entry(bset, e, paths)


_open_ahead = objcheck.open_copy   # (the name the tests knew)


def _finish(bset, e: Entry, opened: list[int] | str | Future | _Remote, buf: memoryview, pool=None) -> str | None:
    """Read and hash the copy :func:`_open_ahead` opened (closing it); what is wrong, or None.
    (A big file's check ran in a worker thread, a small object's maybe in a seal worker: their answer.)"""
    if isinstance(opened, Future):
        return opened.result()
    if isinstance(opened, _Remote):
        verdict = pool.checked(opened.tag, opened.index)
        if verdict is not None:
            return verdict or None
        opened = objcheck.open_copy(opened.paths)   # (its worker ended: checked here)
    if isinstance(opened, str):
        return opened
    if bset.keys is not None:
        return objcheck.check_object(bset.keys, opened, buf, e.obj, e.sha256, e.size)
    return _check_plain(opened, buf, e)


def check_written(paths: list, size: int, sha256: str, stopped: Callable[[], bool] = lambda: False) -> str | None:
    """Read back the plain copy in ``paths`` (parts in order) as the read-back does: each opened
    as a regular file, never through a symlink, its cached pages dropped first (the caller made
    its bytes durable: a dropped page is then read from the drive), read whole and hashed; what
    is wrong with it against ``size`` and ``sha256``, or None. ``stopped()`` (asked at every
    block) true: the read ends there, and the copy is not called right."""
    opened = objcheck.open_copy(paths)
    if isinstance(opened, str):
        return opened
    digest, got, buf = hashlib.sha256(), 0, read_buffer()
    try:
        if opened.size != size:
            return objcheck.verdict(opened.size, "", size, sha256)
        if (got := _hash_parts(opened, buf, digest, stopped)) < 0:
            return "its read-back was stopped"
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    finally:
        objcheck.close(opened)
    return objcheck.verdict(got, digest.hexdigest(), size, sha256)


def _hash_parts(opened, buf: memoryview, digest, stopped=None) -> int:
    """Every part of ``opened`` read to its end into ``digest``: the bytes read, or -1 when
    ``stopped()`` said so before a block."""
    got = 0
    for fd in opened:
        for block in blocks(fd, buf):
            if stopped is not None and stopped():
                return -1
            digest.update(block)
            got += len(block)
    return got


def _check_plain(opened: list[int], buf: memoryview, e: Entry) -> str | None:
    """Read and hash a plain copy (closing it): what is wrong, or None. A copy in one file whose
    ``fstat`` found the manifest's size (``objcheck.Opened.size``) is read to that size and no
    further (no read at its end: a copy of another size is wrong without reading it); a copy in
    parts is read to the end of each."""
    digest, size = hashlib.sha256(), 0
    known = getattr(opened, "size", None)
    try:
        if known is not None and known != e.size:
            return objcheck.verdict(known, "", e.size, e.sha256)
        if known is not None and len(opened) == 1 and e.size <= len(buf):
            view = buf[:e.size]
            while size < e.size and (n := read_into(opened[0], view[size:])):
                size += n
            digest.update(view[:size])
        else:
            size = _hash_parts(opened, buf, digest)
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    finally:
        objcheck.close(opened)
    return objcheck.verdict(size, digest.hexdigest(), e.size, e.sha256)


def _close(opened: list[int] | str | Future | _Remote) -> None:
    if isinstance(opened, Future):
        opened.cancel()   # (one already running finishes, closing its own file)
    elif isinstance(opened, list):
        objcheck.close(opened)


def repair(run, damaged: list[tuple[Entry, ScanEntry, str]]) -> list[tuple[str, str]]:
    """Copy each file that read back wrong once more from its unchanged source, over the bad
    copy, and read it back again; what is still wrong, as (path, reason)."""
    store, still = run.store, []
    for e, se, reason in damaged:
        try:
            copied = store.copy_in(se, fresh=True)
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
        problem = _check_entry(run.bset, e, store.written_paths(e))
        if problem:
            still.append((e.path, problem))
    return still
