"""One restore of a plain set, in this process, seen per thread (issue #11, branch ``restore9``): a
cProfile of the restoring thread and of each writer or big-file worker (``--profile N``: the N
functions with the most time of their own, wall clock), and a timeline: when the manifest was read
and checked, when the small files' first and last batches were written, and when each big file was
started and ended. Run it with the checkout to measure on ``PYTHONPATH``, cold (drop the page cache
first), into a folder that is not there yet:

    PYTHONPATH=CHECKOUT python bench/restore_threads.py SET OUT [--profile 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import threading
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="a cProfile per thread, N lines each")
    args = ap.parse_args(argv)

    from core.engine import restore_ahead
    from core.engine.repo import BackupSet
    from core.engine.restore import RestoreOptions, restore

    t0 = time.monotonic()
    profiles: dict[int, tuple[str, cProfile.Profile]] = {}
    marks: dict[str, float] = {}
    batches: list[tuple[float, float]] = []
    bigs: list[tuple[float, float, int, str]] = []

    def timed(fn, tag: str, log):
        def inner(*a, **k):
            start = time.monotonic() - t0
            prof = None
            if args.profile:
                prof = profiles.setdefault(threading.get_ident(), (tag, cProfile.Profile()))[1]
                prof.enable()
            try:
                return fn(*a, **k)
            finally:
                if prof is not None:
                    prof.disable()
                log(start, a)
        return inner

    restore_ahead._write_batch = timed(restore_ahead._write_batch, "writer",
                                       lambda s, a: batches.append((s, time.monotonic() - t0)))
    one = next(name for name in ("restore_one", "restore_file") if hasattr(restore_ahead, name))
    setattr(restore_ahead, one, timed(getattr(restore_ahead, one), "big", lambda s, a: bigs.append(
        (s, time.monotonic() - t0, a[1].size, a[1].path))))
    every = restore_ahead.restore_all

    def restore_all(*a, **k):
        marks["manifest read and checked"] = time.monotonic() - t0
        every(*a, **k)
        marks["every file written"] = time.monotonic() - t0

    restore_ahead.restore_all = restore_all
    main_prof = cProfile.Profile()
    cpu = time.process_time()
    if args.profile:
        main_prof.enable()
    result = restore(BackupSet.open(args.set), args.out, RestoreOptions(on_conflict="keep-both"))
    main_prof.disable()
    print(f"wall {time.monotonic() - t0:.2f} s, CPU {time.process_time() - cpu:.2f} s, "
          f"{result.files_restored} files, {len(result.damaged)} damaged")
    for name, at in marks.items():
        print(f"{at:7.2f} s  {name}")
    if batches:
        print(f"small files: {len(batches)} batches, the first from {batches[0][0]:.2f} s, the last to "
              f"{max(end for _, end in batches):.2f} s, writing {sum(e - s for s, e in batches):.2f} s in all")
    for start, end, size, path in sorted(bigs):
        print(f"big {start:6.2f} -> {end:6.2f} s  {size / (1 << 20):8.1f} MiB  {path}")
    if args.profile:
        for name, prof in [("restoring thread", main_prof)] + [(f"{tag} {tid}", p) for tid, (tag, p) in profiles.items()]:
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(args.profile)
            print(f"== {name}\n" + "\n".join(line for line in text.getvalue().splitlines() if line.strip()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
