"""CPU of a remote backup's run thread: the data set backed up into an existing set (issue #13).

Each round makes a set on a folder backend (untimed: an empty backup), opens it with
``RemoteSet.open_started`` and backs ``SRC`` up into it, the unlock a sleep of ``--unlock``
seconds in place of scrypt (scrypt runs outside the interpreter lock, as a sleep does, so the
read-ahead thread gets the time it gets beside scrypt). Prints the CPU seconds
(``time.thread_time()``) and wall seconds of the thread that called ``backup``: the listing,
the small files' reads, seals and checks, the manifest; the upload threads are not in it.

Measures the checkout it is run from (``PYTHONPATH``); compare two checkouts interleaved:

    for c in before after; do (cd $c && PYTHONPATH=$PWD python -P $AFTER/bench/remote_run_thread.py SRC WORK); done

Nothing is deleted between rounds (ext4 without a journal: files created right after a big deletion
cost more, bench/trash.py): each round's set is moved to WORK/trash, deleted after the last round;
the first round waits until the last big deletion noted on WORK's file system is 370 s old
(``--settle``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from core.engine.progress import Clock
from core.engine.remote.backup import backup
from core.engine.remote.rset import RemoteSet
from core.engine.storage import LocalBackend

sys.path.insert(0, str(Path(__file__).resolve().parent))
import trash  # noqa: E402


def one_round(src: Path, work: Path, unlock_s: float, bin_: trash.Trash) -> tuple[float, float]:
    """(CPU, wall) seconds of the backup's calling thread, one backup into a fresh existing set (the
    set then moved to the trash)."""
    root, empty = work / "set", work / "empty"
    bin_.put(root)
    empty.mkdir(parents=True, exist_ok=True)
    with RemoteSet.create(LocalBackend(root), Clock().now(), "pw") as rset:
        backup(rset, [empty])
        keys = rset.keys
    with RemoteSet.open_started(LocalBackend(root), lambda enc, sid: time.sleep(unlock_s) or keys) as rset:
        cpu, wall = time.thread_time(), time.perf_counter()
        backup(rset, [src])
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    bin_.put(root)
    return cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="the folder to back up (bench/make_dataset.py's tree)")
    ap.add_argument("work", type=Path, help="a work folder on a real disk (its set/ is replaced)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--unlock", type=float, default=0.4, help="seconds the unlock takes (scrypt's)")
    ap.add_argument("--settle", type=float, default=trash.SHADOW_SECONDS, help="first wait until this many seconds "
                    "after the last big deletion noted on WORK's file system (0: do not wait)")
    args = ap.parse_args()
    bin_ = trash.Trash(args.work / "trash")
    trash.settle(args.work, args.settle, lambda msg: print(msg, file=sys.stderr, flush=True), source=args.src)
    try:
        runs = [one_round(args.src.resolve(), args.work, args.unlock, bin_) for _ in range(args.rounds)]
    finally:
        bin_.empty()
    print(" ".join(f"{c:.3f}/{w:.3f}" for c, w in runs),
          f"median cpu {statistics.median(c for c, _ in runs):.3f} wall {statistics.median(w for _, w in runs):.3f}")


if __name__ == "__main__":
    main()
