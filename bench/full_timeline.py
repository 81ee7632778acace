"""Where a plain full backup's wall time goes (issue #11): one ``plugback backup`` of SRC into a new
set at SET, run in this process with timers around its steps, printed as a timeline.

Steps timed (seconds from the start, and each step's wall): the room check before the run
(``space.ensure_room``: the estimate's walk of every source when it is made), the whole pass (scan,
copies), every ``flush_volume`` (the checkpoints' and the commit's ``syncfs``), the commit, the read-back, a first
backup's copies made ahead (each hand-over to the pass, each early read-back: core/engine/copy_ahead.py); and
the process's CPU (user, system) at each mark. Run it from the checkout to measure (``PYTHONPATH=.``),
with the page cache dropped first for a cold run (root):

    sync; echo 3 > /proc/sys/vm/drop_caches
    PYTHONPATH=. .venv/bin/python -P bench/full_timeline.py SRC SET [--window N] [--room-walk on|off] [backup options]

``--window N``: the pass's window of files in flight (``backup.WINDOW_FILES``, 1,024) set to N in
this process only, for same-code A/B runs. ``--room-walk on|off``: the room check's estimate (a
cold walk of every source before the pass) always made, or never (``space._fresh_fit`` forced), for
the same A/B: branch ``full4`` measured that skipping it did not make the backup faster, as the walk
warms the metadata the pass then reads (docs/performance.md, "#11: the standard set's full backup,
second pass"). The prototype that read big copies back as they were
written (branch ``fullplain`` at 20fbcf1, core/engine/bigcheck.py; docs/performance.md, "#11: the
standard set's full backup against restic and borg") was measured with this script and dropped.

Each flush is marked with the thread that made it; the pass's own thread's CPU and its wall in
checkpoints are printed, and every thread's CPU (sampled: one that ended keeps its last sample).
``--content-ahead BYTES``: how much of a first backup's small files the scan-ahead child starts
reading ahead (``scan_ahead.CONTENT_AHEAD_BYTES``; 0: none, as before branch ``std10``), for
same-code A/B runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

T0 = time.perf_counter()
MARKS: list[tuple[float, float, str]] = []   # (start, end, what)


def _cpu() -> str:
    t = os.times()
    return f"user {t.user:.2f} sys {t.system:.2f}"


def _timed(owner, name: str, label: str) -> None:
    fn = getattr(owner, name)

    def wrapper(*a, **k):
        start = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            end = time.perf_counter()
            MARKS.append((start - T0, end - T0, f"{label} [{threading.current_thread().name}] ({_cpu()})"))

    setattr(owner, name, wrapper)


THREADS: dict[str, tuple[str, float, float]] = {}   # tid: (name, user s, system s), as last sampled


def _threads_cpu() -> list[tuple[str, float, float]]:
    """(name, user s, system s) of every thread of this process still alive (Linux: /proc); each
    also kept in THREADS, so a thread that ended keeps its last sample."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    rows = []
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return rows
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        v = raw[raw.rindex(")") + 2:].split()
        rows.append((name, int(v[11]) / tick, int(v[12]) / tick))
        THREADS[tid] = rows[-1]
    return rows


def _pass_thread() -> dict[str, float]:
    """The pass's own thread: its CPU (user + system) over the pass, and the wall it spent in the
    checkpoints it made (their volume flush, the journal's fsync, the lock's refresh)."""
    from core.engine import backup

    seen = {"cpu": 0.0, "checkpoints": 0.0, "made": 0}
    run_pass, check = backup._Run._pass, backup._Run._maybe_checkpoint
    main = []

    def timed_pass(self, *a, **k):
        main.append(threading.get_ident())
        cpu = time.thread_time()
        try:
            return run_pass(self, *a, **k)
        finally:
            seen["cpu"] = time.thread_time() - cpu

    def timed_check(self, *a, **k):
        start = time.perf_counter()
        try:
            return check(self, *a, **k)
        finally:
            took = time.perf_counter() - start
            if took > 0.001:
                seen["made"] += 1
                if main and threading.get_ident() == main[0]:
                    seen["checkpoints"] += took
                MARKS.append((start - T0, start + took - T0,
                              f"checkpoint [{threading.current_thread().name}] ({_cpu()})"))

    backup._Run._pass, backup._Run._maybe_checkpoint = timed_pass, timed_check
    return seen


def _device() -> str | None:
    """The /sys/block name of the drive under /var/tmp (where the benches write), or None."""
    try:
        st = os.stat("/var/tmp")
        name = os.path.basename(os.path.realpath(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"))
        return name if os.path.exists(f"/sys/block/{name}/stat") else None
    except OSError:
        return None


def _sample(dev: str | None, every: float, out: list, stop: threading.Event) -> None:
    """Every ``every`` s: (time, sectors read, sectors written, busy ms of the drive, machine
    busy and total jiffies) — when the drive and the cores were idle."""
    def cpu() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v) - v[3] - v[4], sum(v)

    def disk() -> tuple[int, int, int]:
        if dev is None:
            return 0, 0, 0
        with open(f"/sys/block/{dev}/stat") as f:
            v = [int(x) for x in f.read().split()]
        return v[2], v[6], v[9]

    while not stop.is_set():
        out.append((time.perf_counter() - T0, *disk(), *cpu()))
        _threads_cpu()
        stop.wait(every)
    out.append((time.perf_counter() - T0, *disk(), *cpu()))


def _print_samples(samples: list, step: float) -> None:
    """The samples in rows of ``step`` s: MB read and written, the drive's busy share, CPU cores busy."""
    print("   from      to  read MB  wrote MB  drive busy  cores busy (machine)")
    at = 0
    while at < len(samples) - 1:
        nxt = at + 1
        while nxt < len(samples) - 1 and samples[nxt][0] - samples[at][0] < step - 1e-6:
            nxt += 1
        a, b = samples[at], samples[nxt]
        dt = b[0] - a[0]
        jiffies = b[5] - a[5]
        cores = (b[4] - a[4]) / jiffies * (os.cpu_count() or 1) if jiffies else 0.0
        print(f"{a[0]:7.2f} {b[0]:7.2f} {(b[1] - a[1]) / 2048:8.0f} {(b[2] - a[2]) / 2048:9.0f} "
              f"{(b[3] - a[3]) / 1000 / dt * 100 if dt else 0:10.0f}% {cores:11.2f}")
        at = nxt


def _big_copies(limit: int) -> None:
    """Each copy of a file of ``limit`` bytes or more (the pool's copies) as a mark of its own."""
    from core.engine import backup

    copy = backup._Run._copy_one

    def timed(self, se, *a, **k):
        start = time.perf_counter()
        try:
            return copy(self, se, *a, **k)
        finally:
            if se.size >= limit:
                end = time.perf_counter()
                MARKS.append((start - T0, end - T0, f"copy of {se.size >> 20} MiB ({_cpu()})"))

    backup._Run._copy_one = timed


def _copy_ahead() -> dict[str, int]:
    """Marks for the copy-ahead (core/engine/copy_ahead.py): each early read-back of a copy made
    ahead, each hand-over the pass waited for; and counts of copies handed over, checked or not."""
    from core.engine import copy_ahead, readback

    check, take = readback.check_written, copy_ahead.CopyAhead.take
    counts = {"taken": 0, "checked": 0}

    def timed_check(paths, size, sha256, *a):
        start = time.perf_counter()
        try:
            verdict = check(paths, size, sha256, *a)
            return verdict
        finally:
            MARKS.append((start - T0, time.perf_counter() - T0,
                          f"early read-back of {size >> 20} MiB: {verdict or 'right'} ({_cpu()})"))

    def timed_take(self, se):
        start = time.perf_counter()
        copied = take(self, se)
        if copied is not None:
            counts["taken"] += 1
            counts["checked"] += copied.checked
            MARKS.append((start - T0, time.perf_counter() - T0, f"taken: {se.size >> 20} MiB, "
                          f"{'read back' if copied.checked else 'not read back'} ({_cpu()})"))
        return copied

    readback.check_written = timed_check
    copy_ahead.CopyAhead.take = timed_take
    return counts


def _after_fork(start) -> None:
    """``start`` the sampler once the scan-ahead child is forked (it is not forked while another
    thread runs: core/engine/scan_ahead.py), or when the room check begins if no child was."""
    from core.engine import scan_ahead, space

    started = [False]

    def once() -> None:
        if not started[0]:
            started[0] = True
            start()

    def wrap(owner, name: str) -> None:
        fn = getattr(owner, name)

        def wrapper(*a, **k):
            try:
                return fn(*a, **k)
            finally:
                once()

        setattr(owner, name, wrapper)

    wrap(scan_ahead, "start")
    ensure = space.ensure_room

    def ensure_room(*a, **k):
        once()
        return ensure(*a, **k)

    space.ensure_room = ensure_room


def _window(files: int) -> None:
    from core.engine import backup

    backup.WINDOW_FILES = files


def _room_walk(how: str) -> None:
    from core.engine import space

    fits = how == "off"
    space._fresh_fit = lambda *a: fits   # (a first backup: the only room check that can skip the walk)
    space._quick_fit = lambda *a: fits


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Any other option is passed to `plugback backup` (e.g. --encrypt).")
    p.add_argument("src", metavar="SRC", help="the folder to back up")
    p.add_argument("dest", metavar="SET", help="the new set's folder (the backup's --to)")
    p.add_argument("--window", type=int, help="the pass's window of files in flight (backup.WINDOW_FILES)")
    p.add_argument("--room-walk", choices=("on", "off"), help="the room check's walk always made, or never")
    p.add_argument("--big", type=int, default=8 << 20, help="copies of files this size or more are marked (bytes)")
    p.add_argument("--content-ahead", type=int, help="bytes of a first backup's small files the scan-ahead child "
                   "starts reading ahead (scan_ahead.CONTENT_AHEAD_BYTES; 0: none, as before std10)")
    p.add_argument("--every", type=float, default=0.5, help="the drive's and the cores' counters, rows of this many s")
    return p


def main(argv: list[str]) -> int:
    args, rest = _parser().parse_known_args(argv)
    if args.window is not None:
        _window(args.window)
    if args.room_walk is not None:
        _room_walk(args.room_walk)
    if args.content_ahead is not None:
        from core.engine import scan_ahead

        scan_ahead.CONTENT_AHEAD_BYTES = args.content_ahead
    from core.cli import main as cli
    from core.engine import backup, fs, readback, space, window

    waited = [0.0]
    pop = window.Window._pop

    def timed_pop(self):   # the pass waiting for the oldest copy in flight (a big one)
        start = time.perf_counter()
        try:
            pop(self)
        finally:
            waited[0] += time.perf_counter() - start

    window.Window._pop = timed_pop

    _timed(fs.FileSystem, "flush_volume", "flush_volume")
    _timed(space, "ensure_room", "room check (the estimate's walk, if made)")
    _timed(backup._Run, "_pass", "pass (scan + copies)")
    _timed(backup._Run, "_commit", "commit (flush + manifest)")
    _timed(readback, "read_back", "read-back")
    _big_copies(args.big)
    ahead = _copy_ahead()
    in_pass = _pass_thread()

    samples: list = []
    halt = threading.Event()
    sampler = threading.Thread(target=_sample, args=(_device(), 0.1, samples, halt), daemon=True)
    _after_fork(sampler.start)
    rc = cli(["backup", args.src, "--to", args.dest, *rest])
    end = time.perf_counter() - T0
    halt.set()
    if sampler.is_alive():
        sampler.join()
    _print_samples(samples, args.every)
    for start, stop, what in sorted(MARKS):
        print(f"{start:7.2f} {stop:7.2f} {stop - start:6.2f}  {what}")
    print(f"  the pass waited {waited[0]:.2f} s in the window for copies in flight")
    print(f"  copies made ahead taken: {ahead['taken']}, of them read back early: {ahead['checked']}")
    print(f"  the pass's thread: CPU {in_pass['cpu']:.2f} s; in its checkpoints {in_pass['checkpoints']:.2f} s"
          f" ({in_pass['made']} calls over 1 ms, any thread)")
    _threads_cpu()
    for name, user, system in sorted(THREADS.values(), key=lambda r: -(r[1] + r[2])):
        print(f"  thread {name}: user {user:.2f} sys {system:.2f}")
    kids = os.times()
    print(f"  its child processes (scan-ahead, read-back workers): user {kids.children_user:.2f} "
          f"sys {kids.children_system:.2f}")
    print(f"{0:7.2f} {end:7.2f} {end:6.2f}  whole ({_cpu()}), rc {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
