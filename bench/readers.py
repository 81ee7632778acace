"""The reader processes of ``verify --read-all`` alone (issue #11): ``readpool.HashPool`` over the
newest snapshot's files of a set, cold, each checkout in turn, round after round.

    flock /tmp/pb/bench.lock nice -n 5 .venv/bin/python bench/readers.py SET --rounds 3 \\
        --checkout before=/var/tmp/pb-NAME/before --checkout after=.

SET is a plain set (``floor_verify.py``'s ``WORKDIR/set``). Each timed run is a child process of
that checkout (``PYTHONPATH``): it takes the newest snapshot's items as ``verify_latest`` hands
them on (``rawlines.file_items``, untimed, in memory), drops the page cache (``sync``, then
``drop_caches``: root, unless ``--warm``), then times ``HashPool(Latest, PROCESSES).map`` over
batches of ``verify_latest.POOL_BATCH`` (the workers' start included, as in a verify). Per run:
wall s, the readers' CPU (``RUSAGE_CHILDREN``: user + system), and the block device's requests
from ``/proc/diskstats`` (reads completed and merged, sectors): requests per file is what a
batched reader would cut. Every file must check out (a problem fails the run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DROP = "sync; echo 3 > /proc/sys/vm/drop_caches"


def disk_reads(path: str) -> tuple[int, int, int]:
    """(reads completed, reads merged, sectors read) of the block device holding ``path`` (zeros if unknown)."""
    st = os.stat(path)
    want = (os.major(st.st_dev), os.minor(st.st_dev))
    try:
        with open("/proc/diskstats") as f:
            for line in f:
                cols = line.split()
                if (int(cols[0]), int(cols[1])) == want:
                    return int(cols[3]), int(cols[4]), int(cols[5])
    except OSError:
        pass
    return 0, 0, 0


def one(set_path: str, processes: int, warm: bool) -> dict:
    """A child's run (its checkout's code on ``sys.path``): the readers timed over the newest's items."""
    from core.engine import rawlines
    from core.engine.readpool import HashPool
    from core.engine.repo import BackupSet
    from core.engine.verify_latest import POOL_BATCH
    from core.engine.window import batches

    bset = BackupSet.open(Path(set_path))
    items = list(rawlines.file_items(bset, bset.newest_id() or ""))
    latest = str(bset.layout.latest)
    subprocess.run(["sh", "-c", "sync" if warm else DROP], check=True)
    before, t0 = disk_reads(latest), time.perf_counter()
    problems = 0
    with HashPool(latest, processes) as pool:
        for _batch, found in pool.map(batches(items, POOL_BATCH)):
            problems += len(found)
    wall, after = time.perf_counter() - t0, disk_reads(latest)
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    reads, merged, sectors = (a - b for a, b in zip(after, before, strict=True))
    return {"files": len(items), "problems": problems, "wall": wall, "user": use.ru_utime, "sys": use.ru_stime,
            "cpu": use.ru_utime + use.ru_stime, "reads": reads, "merged": merged, "sectors": sectors}


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def table(results: dict[str, list[dict]]) -> str:
    rows = ["| checkout | wall s (each round) | CPU s (each round) | median wall / CPU | device reads per file "
            "(median) | merged per file | load |", "|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("wall", "cpu", "reads", "merged")}
        files = max(1, runs[0]["files"])
        walls, cpus = (", ".join(f"{r[k]:.2f}" for r in runs) for k in ("wall", "cpu"))
        rows.append(f"| {name} | {walls} | {cpus} | {med['wall']:.2f} / {med['cpu']:.2f} | "
                    f"{med['reads'] / files:.3f} | {med['merged'] / files:.3f} | "
                    f"{', '.join(r['load'] for r in runs)} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("set", help="a plain set (floor_verify.py's WORKDIR/set)")
    p.add_argument("--checkout", action="append", default=[], metavar="NAME=DIR",
                   help="a checkout whose readers are timed in each round (default: this one)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--processes", type=int, default=2, help="reader processes (verify: workers // THREADS)")
    p.add_argument("--warm", action="store_true", help="do not drop the page cache (not root; a smoke test)")
    p.add_argument("--json", help="also write the raw results here")
    args = p.parse_args(argv)
    if not args.warm and os.geteuid() != 0:
        p.error("must run as root: the page cache is dropped before every timed run (or --warm)")
    checkouts = [tuple(c.split("=", 1)) for c in args.checkout] or [("this", str(REPO))]
    results: dict[str, list[dict]] = {name: [] for name, _ in checkouts}
    for rnd in range(args.rounds):
        turn = checkouts[rnd % len(checkouts):] + checkouts[:rnd % len(checkouts)]   # each goes first in turn
        for name, path in turn:
            child = [sys.executable, "-P", os.path.abspath(__file__), "--one", os.path.abspath(args.set),
                     str(args.processes)] + (["--warm"] if args.warm else [])
            at = load()
            # cwd "/": a lean worker of main's code imports from its current folder first (lean_child before
            # readers11), so a checkout as the current folder would be timed in place of every other one
            out = subprocess.run(child, env={**os.environ, "PYTHONPATH": str(Path(path).resolve())}, cwd="/",
                                 check=True, capture_output=True, text=True)
            run = {**json.loads(out.stdout.strip().splitlines()[-1]), "load": at}
            results[name].append(run)
            print(f"round {rnd + 1} {name}: wall {run['wall']:.2f} s, CPU {run['cpu']:.2f} s "
                  f"(user {run['user']:.2f}), {run['reads']} reads, {run['merged']} merged, load {at}", flush=True)
            if run["problems"]:
                print(f"{name}: {run['problems']} files did not check out", file=sys.stderr)
                return 1
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one(sys.argv[2], int(sys.argv[3]), "--warm" in sys.argv[4:])))
        sys.exit(0)
    sys.exit(main())
