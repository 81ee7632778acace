"""Does a worker-process pool pay for many small files on this machine? (issue #11)

    .venv/bin/python bench/procpool.py SRC WORK copy  serial|spawn|forkserver N [--cold]
    .venv/bin/python bench/procpool.py SRC WORK read  serial|thread|spawn N        (reads WORK/L back)
    .venv/bin/python bench/procpool.py LATEST ITEMS readback thread|pool N         (a set's Latest/)

``copy`` copies every file of SRC into WORK/L the way a backup does (read once, hash, write to a
temp name, set the time, rename), in this process or in N worker processes fed sorted batches
of 256 files whose results are merged in order. ``read`` reads WORK/L back with its cache
dropped per file (the read-back), serially, with N threads or N processes taking batches.
``readback`` reads a plain set's ``Latest/`` back as the backup's read-back does: ``thread``
with the product's one-thread code (``readback._open_ahead``/``_finish``, :data:`AHEAD` reads
started ahead), ``pool`` with ``readpool.HashPool`` (N lean worker processes, batches of 64);
ITEMS is a file of ``path<TAB>size<TAB>sha256`` lines below LATEST (``--items`` writes it).
Prints wall seconds; time the command (``/usr/bin/time``) for CPU. Not part of ``run.py``: an
experiment behind docs/performance.md, "Per-file cost" and "#11: the full backup on more
than one core".
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

BATCH = 256


def copy_batch(args):
    items, tmpdir, base = args
    buf = memoryview(bytearray(1 << 20))
    out = []
    for i, (src, mtime) in enumerate(items):
        fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
        k = os.readv(fd, [buf])
        st = os.fstat(fd)
        os.close(fd)
        tmp = f"{tmpdir}/{base}-{i}"
        o = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        os.write(o, buf[:k])
        os.utime(o, ns=(mtime, mtime))
        os.close(o)
        out.append((tmp, hashlib.sha256(buf[:k]).hexdigest(), k, st.st_size != k))
    return out


def read_batch(paths):
    buf = memoryview(bytearray(1 << 20))
    for p in paths:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        h = hashlib.sha256()
        while k := os.readv(fd, [buf]):
            h.update(buf[:k])
        os.close(fd)
    return len(paths)


def _files(src):
    for d, dirs, names in os.walk(src):
        dirs.sort()
        for f in sorted(names):
            yield d, f


def copy(src, work, mode, n):
    files = []
    for d, f in _files(src):
        rel = os.path.relpath(d, src)
        os.makedirs(os.path.join(work, "L", rel), exist_ok=True)
        p = os.path.join(d, f)
        files.append((p, os.lstat(p).st_mtime_ns, os.path.join(work, "L", rel, f)))
    args = [([(p, m) for p, m, _ in files[i:i + BATCH]], work + "/tmp", i) for i in range(0, len(files), BATCH)]
    dests = [[d for _, _, d in files[i:i + BATCH]] for i in range(0, len(files), BATCH)]
    if mode == "serial":
        results = map(copy_batch, args)
        for res, ds in zip(results, dests, strict=True):
            for (tmp, *_), d in zip(res, ds, strict=True):
                os.replace(tmp, d)
        return
    with ProcessPoolExecutor(n, mp_context=mp.get_context(mode)) as ex:
        for res, ds in zip(ex.map(copy_batch, args), dests, strict=True):
            for (tmp, *_), d in zip(res, ds, strict=True):
                os.replace(tmp, d)


def read(work, mode, n):
    paths = [os.path.join(d, f) for d, f in _files(work + "/L")]
    batches = [paths[i:i + BATCH] for i in range(0, len(paths), BATCH)]
    if mode == "serial":
        list(map(read_batch, batches))
        return
    pool = ThreadPoolExecutor(n) if mode == "thread" else ProcessPoolExecutor(n, mp_context=mp.get_context(mode))
    with pool:
        list(pool.map(read_batch, batches))


def write_items(latest, out):
    """ITEMS for ``readback``: every file below ``latest``, its size and SHA-256 (read warm)."""
    with open(out, "w") as f:
        for d, name in _files(latest):
            p = os.path.join(d, name)
            with open(p, "rb") as src:
                data = src.read()
            f.write(f"{os.path.relpath(p, latest)}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\n")


def readback(latest, items_file, mode, n):
    """The read-back of ``latest``: in one thread as the product does, or by N worker processes."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from collections import deque

    from core.engine import readback as rb
    from core.engine.manifest import FILE, Entry
    from core.engine.readpool import HashPool

    with open(items_file) as f:
        items = [(p, int(size), sha) for p, size, sha in (line.rstrip("\n").split("\t") for line in f)]
    bad = 0
    if mode == "thread":
        class Plain:
            keys = None
        buf, ahead = rb.read_buffer(), deque()
        for i, (p, size, sha) in enumerate(items):
            ahead.append((Entry(p, FILE, size, 0, 0o644, sha, mirror=p, parts=0),
                          rb._open_ahead([os.path.join(latest, p)])))
            while ahead and (len(ahead) > rb.AHEAD or i == len(items) - 1):
                e, opened = ahead.popleft()
                bad += rb._finish(Plain, e, opened, buf) is not None
    else:
        batch = [(p, 0, size, sha) for p, size, sha in items]
        with HashPool(latest, n) as pool:
            for _, problems in pool.map(batch[i:i + 64] for i in range(0, len(batch), 64)):
                bad += len(problems)
    if bad:
        raise SystemExit(f"{bad} files read back wrong")


def main(argv):
    if argv[0] == "--items":
        write_items(argv[1], argv[2])
        return
    src, work, what, mode, n = argv[:5]
    if what == "copy":
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work + "/tmp")
    os.system("sync")
    if "--cold" in argv:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    t = time.perf_counter()
    if what == "readback":
        readback(src, work, mode, int(n))
    elif what == "copy":
        copy(src, work, mode, int(n))
    else:
        read(work, mode, int(n))
    os.system("sync")
    print(f"{what} {mode} {n}: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
