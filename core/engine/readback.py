"""After a backup: read back what the run wrote (from the drive, cache dropped), and copy once
more what read back wrong.

The run keeps what it wrote in a local spool (``_Run.written``, in manifest order, one
:func:`record` per file), so this streams too: a bounded number of files is in flight
at a time. Cold reads wait on the drive, so many must be asked for at once to keep its
queue full. On Linux that is done in one thread: each file (or encrypted object) is opened
and its read started (``posix_fadvise``) a window of files before it is checked; with several
threads each tiny read traded the GIL (tens of futex calls per file: half a small-file
backup's CPU). Big files still go to worker threads. Systems without read-ahead hand files
to worker threads a batch at a time (a hand-off per file cost more than reading a small
file back).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

from core.engine import safeio
from core.engine.fs import READS_AHEAD, blocks, drop_cache, read_ahead, read_buffer, read_into
from core.engine.manifest import FILE, Entry
from core.engine.progress import Progress
from core.engine.repo import _content_error
from core.engine.scan import ScanEntry
from core.engine.window import batches, ordered_map
from core.errors import DamagedSet

BATCH = 64           # files per hand-off to a worker (and per progress report)
AHEAD = 64           # plain sets: files opened, and their reads started, before the one hashed
BIG = 1 << 20        # files this big are read back in worker threads (hashed, decrypted in parallel)
SMALL_OBJECT = BIG + (64 << 10)   # encrypted: an object up to this size is read whole in one call
BATCH_LINES = 1024   # spool lines decoded per json.loads call
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
    if run.written is None or not run.stats["copied_files"]:
        return []
    damaged = []
    total, done, i = run.stats["copied_bytes"], 0, 0
    count = run.stats["copied_files"]
    checked = _checked_ahead(run) if READS_AHEAD else _checked_in_threads(run)
    for batch, problems in checked:
        for (e, se), problem in zip(batch, problems, strict=True):
            if problem:
                damaged.append((e, se, problem))
            done += e.size
            i += 1
        run.progress(Progress("verify", i, count, done, total, batch[-1][0].path))
    return damaged


def _checked_in_threads(run) -> Iterator[tuple[list, list[str | None]]]:
    """(batch, problems), each batch checked in a worker thread: systems where one thread cannot
    ask for reads ahead (Windows, macOS), plain and encrypted sets alike."""
    from core.engine.verify import check_entry

    def check(batch):
        return [check_entry(run.bset, e, run.store.written_paths(e)) for e, _ in batch]

    # Reads from a cold cache wait on the drive: several at once keep it busy.
    workers = max(4, run.options.workers * 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from ordered_map(pool, check, batches(_written(run), BATCH), 2 * workers)


def _checked_ahead(run) -> Iterator[tuple[list, list[str | None]]]:
    """(batch, problems): each small file (an encrypted set: its object) is opened :data:`AHEAD`
    files before it is checked in this thread, its cached pages dropped and its read started
    then (the drive works on many at once, as threads made it, without their GIL hand-offs:
    those cost a backup of small files more CPU than the reads). A file of :data:`BIG` bytes
    or more is read back in a worker thread, as before (hashlib and the cipher let go of the
    GIL for big blocks, so big files are checked on several cores at once)."""
    from core.engine.verify import check_entry

    ahead: deque[tuple[tuple[Entry, ScanEntry], list[int] | str | Future]] = deque()
    batch: list[tuple[Entry, ScanEntry]] = []
    problems: list[str | None] = []
    buf = read_buffer() if run.bset.keys is None else memoryview(bytearray(SMALL_OBJECT + 1))
    with ThreadPoolExecutor(max_workers=max(4, run.options.workers * 4)) as pool:
        try:
            for item in _written(run):
                e, paths = item[0], run.store.written_paths(item[0])
                ahead.append((item, pool.submit(check_entry, run.bset, e, paths) if e.size >= BIG
                              else _open_ahead(paths)))
                while len(ahead) > AHEAD:
                    done, opened = ahead.popleft()
                    batch.append(done)
                    problems.append(_finish(run.bset, done[0], opened, buf))
                if len(batch) >= BATCH:
                    yield batch, problems
                    batch, problems = [], []
            while ahead:
                done, opened = ahead.popleft()
                batch.append(done)
                problems.append(_finish(run.bset, done[0], opened, buf))
            if batch:
                yield batch, problems
        finally:
            for _, opened in ahead:
                _close(opened)


def _open_ahead(paths: list) -> list[int] | str:
    """Descriptors of a copy's files (each checked a regular file, never through a symlink) with
    their cache dropped and their reads started; or why the copy cannot be read (as check_entry
    words it)."""
    if not paths:
        return "its content is missing from the drive"
    fds: list[int] = []
    try:
        for p in paths:
            fd = safeio.open_regular(p, error=_content_error)
            fds.append(fd)
            drop_cache(fd)
            read_ahead(fd)
    except DamagedSet as err:
        _close(fds)
        return str(err)
    except (FileNotFoundError, NotADirectoryError):
        _close(fds)
        return "its content is missing from the drive"
    except OSError as err:
        _close(fds)
        return f"it cannot be read ({err.strerror or err})"
    except BaseException:
        _close(fds)
        raise
    return fds


def _finish(bset, e: Entry, opened: list[int] | str | Future, buf: memoryview) -> str | None:
    """Read and hash the copy :func:`_open_ahead` opened (closing it); what is wrong, or None.
    (A big file's check ran in a worker: its answer.)"""
    if isinstance(opened, Future):
        return opened.result()
    if isinstance(opened, str):
        return opened
    if bset.keys is not None:
        return _finish_object(bset, e, opened, buf)
    digest, size = hashlib.sha256(), 0
    try:
        for fd in opened:
            for block in blocks(fd, buf):
                digest.update(block)
                size += len(block)
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    finally:
        _close(opened)
    return _verdict(e, size, digest.hexdigest())


def _verdict(e: Entry, size: int, sha256: str) -> str | None:
    """What is wrong with a copy of ``e`` that read back ``size`` bytes hashing to ``sha256``
    (as check_entry words it), or None."""
    if size != e.size:
        return f"it has {size} bytes instead of {e.size}"
    if sha256 != e.sha256:
        return "its content does not match its checksum (changed or damaged on the drive)"
    return None


def _finish_object(bset, e: Entry, fds: list[int], buf: memoryview) -> str | None:
    """Read the encrypted object :func:`_open_ahead` opened whole into ``buf`` (one read for a
    small object, and one that finds its end; closing it), then decrypt, authenticate and hash
    it as ``repo.read_content`` does: what is wrong, or None. (An object of a small file holds
    at most its size, a header and a tag, plus a few bytes where zstd could not shrink it: one
    past :data:`SMALL_OBJECT` is damage, read no further.)"""
    from core.engine import crypto

    got = 0
    try:
        for fd in fds:
            while got < len(buf) and (n := read_into(fd, buf[got:])):
                got += n
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    finally:
        _close(fds)
    if got >= len(buf):
        return f"its stored copy is bigger than {e.size} bytes of content can make it (damaged on the drive)"
    digest, size = hashlib.sha256(), 0
    try:
        for block in crypto.open_whole(bset.keys, buf[:got], name=f"objects/{e.obj}", max_size=e.size):
            digest.update(block)
            size += len(block)
    except DamagedSet as err:
        return str(err)
    return _verdict(e, size, digest.hexdigest())


def _close(opened: list[int] | str | Future) -> None:
    if isinstance(opened, Future):
        opened.cancel()   # (one already running finishes, closing its own file)
        return
    for fd in opened if not isinstance(opened, str) else ():
        try:
            os.close(fd)
        except OSError:
            pass


def repair(run, damaged: list[tuple[Entry, ScanEntry, str]]) -> list[tuple[str, str]]:
    """Copy each file that read back wrong once more from its unchanged source, over the bad
    copy, and read it back again; what is still wrong, as (path, reason)."""
    from core.engine.verify import check_entry

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
        problem = check_entry(run.bset, e, store.written_paths(e))
        if problem:
            still.append((e.path, problem))
    return still
