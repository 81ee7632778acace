"""Where a plain full backup's wall time goes (issue #11): one ``plugback backup`` of SRC into a new
set at SET, run in this process with timers around its steps, printed as a timeline.

Steps timed (seconds from the start, and each step's wall): the room check before the run
(``space.ensure_room``: the estimate's walk of every source when it is made), the whole pass (scan,
copies), every ``flush_volume`` (the checkpoints' and the commit's ``syncfs``), the commit, the read-back; and the
process's CPU (user, system) at each mark. Run it from the checkout to measure (``PYTHONPATH=.``),
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
"""

from __future__ import annotations

import argparse
import os
import sys
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
            MARKS.append((start - T0, end - T0, f"{label} ({_cpu()})"))

    setattr(owner, name, wrapper)


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
    return p


def main(argv: list[str]) -> int:
    args, rest = _parser().parse_known_args(argv)
    if args.window is not None:
        _window(args.window)
    if args.room_walk is not None:
        _room_walk(args.room_walk)
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
    rc = cli(["backup", args.src, "--to", args.dest, *rest])
    end = time.perf_counter() - T0
    for start, stop, what in sorted(MARKS):
        print(f"{start:7.2f} {stop:7.2f} {stop - start:6.2f}  {what}")
    print(f"  the pass waited {waited[0]:.2f} s in the window for copies in flight")
    print(f"{0:7.2f} {end:7.2f} {end:6.2f}  whole ({_cpu()}), rc {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
