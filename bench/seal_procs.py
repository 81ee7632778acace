"""What sealing an encrypted set's small files in worker processes would pay (issue #11, a
measurement for the next pass, not engine code): the standard set's files under
``store.WHOLE_BYTES`` read whole, hashed, sealed (``crypto.seal_whole``) and written to a
``tmp/`` file, then renamed into ``objects/xx/`` by the main process (what ``place`` does) —
all in one process, or with the first four steps in N worker processes fed batches of paths.
The engine now does this (core/engine/sealpool.py, branch ``encproc``: spawned lean workers,
not forked ones); time the engine itself with ``PLUGBACK_SEAL_PROCESSES=0|1|2`` around
``plugback backup --encrypt`` (docs/performance.md, "#11: the encrypted full backup in worker
processes"). This prototype stays as the measurement that chose the design.
Cache dropped before each run (``--warm``: not, so the sources are read from memory and
only the CPU work is compared); wall and CPU (the process and its children).

    flock /tmp/pb/bench.lock nice -n 5 .venv/bin/python bench/seal_procs.py \\
        --data /var/tmp/pb-enc2/bench/data --workdir /var/tmp/pb-enc2/seal --procs 0,1,2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.engine import crypto  # noqa: E402
from core.engine.store import WHOLE_BYTES, read_whole  # noqa: E402

BATCH = 256
_keys = None


def _init(master: bytes) -> None:
    global _keys
    _keys = crypto.SetKeys.from_master(master, 2)


def _seal(job: tuple[str, list[tuple[str, int]]]) -> list[tuple[str, str, int]]:
    """(tmp path, object name, stored bytes) of each file of one batch, written to ``tmp``."""
    tmp, batch = job
    out = []
    for i, (path, size) in enumerate(batch):
        data, _ = read_whole(path, size)
        h = _keys.object_hasher()
        h.update(data)
        blob = crypto.seal_whole(_keys, data)
        t = f"{tmp}/{os.getpid()}-{time.monotonic_ns()}-{i}.part"
        fd = os.open(t, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, blob)
        finally:
            os.close(fd)
        out.append((t, h.hexdigest(), len(blob)))
    return out


def _place(objects: Path, made: set, results) -> int:
    n = 0
    for t, name, _ in results:
        folder = objects / name[:2]
        if name[:2] not in made:
            folder.mkdir(exist_ok=True)
            made.add(name[:2])
        dest = folder / name
        if dest.exists():
            os.unlink(t)
        else:
            os.replace(t, dest)
        n += 1
    return n


def run(files, work: Path, procs: int, master: bytes, warm: bool) -> tuple[float, float, int]:
    shutil.rmtree(work, ignore_errors=True)
    (work / "tmp").mkdir(parents=True)
    (work / "objects").mkdir()
    subprocess.run("sync" if warm else "sync; echo 3 > /proc/sys/vm/drop_caches", shell=True, check=True)
    jobs = [(str(work / "tmp"), files[i:i + BATCH]) for i in range(0, len(files), BATCH)]
    t0, c0 = time.perf_counter(), os.times()
    made: set = set()
    n = 0
    if procs == 0:
        _init(master)
        for job in jobs:
            n += _place(work / "objects", made, _seal(job))
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(procs, _init, (master,)) as pool:
            for results in pool.imap(_seal, jobs):
                n += _place(work / "objects", made, results)
    os.sync()
    c1 = os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system) + (c1.children_user - c0.children_user) + (
        c1.children_system - c0.children_system)
    return time.perf_counter() - t0, cpu, n


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--procs", default="0,1,2")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--warm", action="store_true", help="sources in the page cache (no drop): CPU only")
    args = p.parse_args()
    files = []
    for folder, _, names in os.walk(args.data):
        for name in sorted(names):
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if os.path.isfile(path) and not os.path.islink(path) and st.st_size < WHOLE_BYTES:
                files.append((path, st.st_size))
    master = os.urandom(32)
    print(f"{len(files)} files, {sum(s for _, s in files)} bytes")
    for rep in range(args.repeat):
        for procs in [int(x) for x in args.procs.split(",")]:
            wall, cpu, n = run(files, Path(args.workdir), procs, master, args.warm)
            load = os.getloadavg()[0]
            print(f"rep {rep + 1} workers {procs}: {wall:.2f} s wall, {cpu:.2f} s CPU, {n} objects, load {load:.1f}",
                  flush=True)
    shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
