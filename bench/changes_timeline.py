"""Where a day of changes' wall time goes (issue #11): one ``plugback backup SRC --to SET`` into an
existing set, run in this process exactly as ``python -m core.cli`` runs it (the scan-ahead child
forked first, then the parser and the engine load), with timers around its steps, printed as a
timeline in seconds from the process's start (``/proc/self/stat``: the interpreter's own start-up
counted).

Marks: the scan-ahead child's fork and, written by the child itself, when its walk of the sources
and its look-ups in the set ended; the engine's import; the pass; the commit's flush and manifest;
the steps after the commit (``Latest.sha256``, the local record, the journal); the read-back (in
its thread); the pass's own CPU and its scan's (``Reuse.pairs``); and the process's CPU at the
end. Run it from the checkout to measure, cache dropped first for a cold run (root), after a day
of ``make_dataset.mutate`` on SRC:

    sync; echo 3 > /proc/sys/vm/drop_caches
    PYTHONPATH=. .venv/bin/python -P bench/changes_timeline.py SRC SET [backup options]

Hooks that name something a checkout does not have are left out (before/after runs of two
checkouts print what each has). docs/performance.md, "#11: the day of changes, fifth pass" and
"sixth pass".
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

T0 = time.perf_counter()
MARKS: list[tuple[float, float, str]] = []   # (start, end, what), perf_counter seconds


def since_start() -> float:
    """Seconds from this process's start to ``T0`` (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/stat") as f:
            started = int(f.read().rpartition(")")[2].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as f:
            now = float(f.read().split()[0])
        return max(0.0, now - started - (time.perf_counter() - T0))
    except (OSError, ValueError, IndexError):
        return 0.0


def timed(owner, name: str, label: str) -> None:
    """``owner.name`` wrapped: each call a mark (left alone if the checkout has no such name)."""
    fn = getattr(owner, name, None)
    if fn is None:
        return

    def wrapper(*a, **k):
        start = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            MARKS.append((start, time.perf_counter(), label))

    setattr(owner, name, wrapper)


def child_marks(scan_ahead, out: str) -> None:
    """The child's walk and its look-ups in the set, timed in the child (same clock) into ``out``."""
    walk = scan_ahead.walk

    def timed_walk(*a, **k):
        start = time.perf_counter()
        try:
            return walk(*a, **k)
        finally:
            with open(out, "a") as f:
                f.write(f"{start} {time.perf_counter()} child's walk\n")

    scan_ahead.walk = timed_walk
    try:
        from core.engine import set_ahead
    except ImportError:
        return
    finish = set_ahead.SetAhead.finish

    def timed_finish(self):
        start = time.perf_counter()
        try:
            return finish(self)
        finally:
            with open(out, "a") as f:
                f.write(f"{start} {time.perf_counter()} child's look-ups waited for\n")

    set_ahead.SetAhead.finish = timed_finish


def engine_marks() -> None:
    """The backup's steps (imported here: when the backup command is about to load them)."""
    start = time.perf_counter()
    from core.engine import backup, fs, readback, reuse, sums

    MARKS.append((start, time.perf_counter(), "engine imported"))
    cpu_marks(backup, reuse)
    timed(backup._Run, "execute", "the run (set open and locked)")
    timed(backup._Run, "_check_parent", "the parent's manifest proven")
    timed(backup._Run, "_pass", "pass (scan + copies)")
    timed(fs.FileSystem, "flush_volume", "flush_volume")
    timed(backup._Run, "_commit", "commit (flush + manifest)")
    timed(backup._Run, "_after_commit", "after the commit (step 5)")
    timed(sums.LatestSums, "commit", "Latest.sha256")
    timed(readback, "read_back", "read-back")
    timed(readback, "repair", "repair (waits for the read-back)")


CPU = {"pass": 0.0, "pairs": 0.0, "items": 0}   # thread CPU seconds of the pass, of its scan + comparison


def cpu_marks(backup, reuse) -> None:
    """The pass's own CPU (its thread's: the read-back's and the pool's threads not counted), and the
    part of it spent getting the pass's items: the scan and the comparison with the parent's lines
    (``Reuse.pairs``'s generator), with how many items it gave (pairs and runs of kept lines)."""
    run_pass, pairs = backup._Run._pass, reuse.Reuse.pairs

    def timed_pass(*a, **k):
        start = time.thread_time()
        try:
            return run_pass(*a, **k)
        finally:
            CPU["pass"] += time.thread_time() - start

    def timed_pairs(*a, **k):
        items = pairs(*a, **k)
        while True:
            start = time.thread_time()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                CPU["pairs"] += time.thread_time() - start
            CPU["items"] += 1
            yield item

    backup._Run._pass, reuse.Reuse.pairs = timed_pass, timed_pairs


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    src, dest = argv[0], argv[1]
    offset = since_start()
    fd, out = tempfile.mkstemp(prefix="plugback-timeline-")
    os.close(fd)
    from core.engine import scan_ahead

    child_marks(scan_ahead, out)
    timed(scan_ahead, "start", "child forked (start returns)")
    take = getattr(scan_ahead, "take_early", None)
    if take is not None:
        def taking(*a, **k):
            engine_marks()
            return take(*a, **k)

        scan_ahead.take_early = taking
    else:
        engine_marks()
    from core.cli import main as cli

    rc = cli(["backup", src, "--to", dest, *argv[2:]])
    end = time.perf_counter()
    with open(out) as f:
        for line in f:
            a, b, what = line.rstrip("\n").split(" ", 2)
            MARKS.append((float(a), float(b), what))
    os.unlink(out)
    for start, stop, what in sorted(MARKS):
        print(f"{start - T0 + offset:7.3f} {stop - T0 + offset:7.3f} {stop - start:6.3f}  {what}")
    print(f"pass CPU {CPU['pass']:.3f} s (its thread), of which the scan and the comparison with the parent "
          f"{CPU['pairs']:.3f} s ({CPU['items']} items)")
    t = os.times()
    print(f"{0:7.3f} {end - T0 + offset:7.3f} {end - T0 + offset:6.3f}  whole (user {t.user:.2f} sys {t.system:.2f},"
          f" children {t.children_user + t.children_system:.2f}), rc {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
