"""The full backup's read-back overlapped with the pass (issue #11, branch ``full5``): one plain full
backup of SRC per variant, interleaved over rounds (the order rotated), each in its own process
with the page cache dropped first (root), timed inside: the pass, the commit, what the read-back
had checked at the commit and when it ended.

    flock /tmp/pb/bench.lock nice -n 5 .venv/bin/python bench/readback_overlap.py SRC WORK \\
        [--rounds 3] [--variants on,off] [--checkout DIR]

Variants (switched in the child process, on the checkout's code):

* ``on``: the product (a plain set on Linux reads back, in a thread of the run, what each flush made
  durable, beside the pass; core/engine/readback_thread.py);
* ``off``: the read-back from the commit on only (main's order before this branch);
* ``every=S``: ``on``, with the read-back's own flushes at most S seconds apart (``FLUSH_EVERY``);
  ``every=0`` disables them (only the checkpoints' flushes release copies to it).

Per run one line: the variant, load, wall, the pass's end, the commit's end, the read-back's end,
files and MB it had left at the commit, the process's user and system CPU. Then per variant the
medians, and the wall of each against ``off``'s in the same round.

Nothing is deleted between the runs (ext4 without a journal: files created right after a big deletion
cost more, see trash.py): each run's set is moved to WORK/trash before the next, and the trash is
deleted after the last; the first run waits until the last big deletion noted on WORK's file system
is 370 s old (``--settle``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import trash  # noqa: E402


def child(variant: str, src: str, dest: str) -> int:
    """One backup in this process, timed; prints one JSON line last."""
    t0 = time.perf_counter()
    from core.cli import main as cli
    from core.engine import backup, readback_thread

    marks: dict = {"checked": []}
    init, pass_, commit = backup._Run.__init__, backup._Run._pass, backup._Run._commit
    seen, committed = readback_thread.ReadBack._seen, readback_thread.ReadBack.committed

    def set_up(self, *a, **k):
        init(self, *a, **k)
        if variant == "off":
            self._read_ahead = False
        elif variant.startswith("every="):
            readback_thread.FLUSH_EVERY = float(variant[6:])

    def timed(name, fn):
        def wrapper(*a, **k):
            try:
                return fn(*a, **k)
            finally:
                marks[name] = time.perf_counter() - t0
        return wrapper

    def seen_at(self, files, size, path):
        marks["checked"].append((time.perf_counter() - t0, files, size))
        return seen(self, files, size, path)

    def committed_at(self):
        marks["committed"] = time.perf_counter() - t0
        return committed(self)

    reader = readback_thread.ReadBack.__init__

    def no_flush(self, run, ahead=False):   # (every=0: only the checkpoints' flushes)
        reader(self, run, ahead)
        if variant == "every=0":
            self._flush = None

    backup._Run.__init__ = set_up
    readback_thread.ReadBack.__init__ = no_flush
    backup._Run._pass = timed("pass", pass_)
    backup._Run._commit = timed("commit", commit)
    readback_thread.ReadBack._seen = seen_at
    readback_thread.ReadBack.committed = committed_at
    with open(os.devnull, "w") as null:
        stdout, sys.stdout = sys.stdout, null
        try:
            rc = cli(["backup", src, "--to", dest])
        finally:
            sys.stdout = stdout
    wall = time.perf_counter() - t0
    at = marks.get("committed", wall)
    before = [c for c in marks["checked"] if c[0] <= at]
    files, size = (before[-1][1], before[-1][2]) if before else (0, 0)
    last = marks["checked"][-1] if marks["checked"] else (at, 0, 0)
    t = os.times()
    print(json.dumps({"variant": variant, "rc": rc, "wall": wall, "pass": marks.get("pass", 0.0),
                      "commit": marks.get("commit", 0.0), "readback_end": last[0],
                      "left_files": last[1] - files, "left_mb": (last[2] - size) / 1e6,
                      "user": t.user, "sys": t.system}))
    return rc


def drop_cache() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass   # (not root: a warm run, as the smoke test's)


def one(variant: str, src: Path, work: Path, checkout: Path, bin_: trash.Trash) -> dict:
    dest = work / "set"
    bin_.put(dest)   # (the previous run's set: deleted after the last run)
    drop_cache()
    load = Path("/proc/loadavg").read_text().split()[0]
    env = {**os.environ, "PYTHONPATH": str(checkout), "PLUGBACK_HOME": str(work / "home")}
    out = subprocess.run([sys.executable, "-P", str(Path(__file__).resolve()), "--child", variant, str(src), str(dest)],
                         env=env, check=True, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["load"] = float(load)
    return r


def report(runs: list[dict], variants: list[str]) -> None:
    print("\nmedians (s):  variant  wall  pass-end  commit-end  read-back-end  left MB  user  sys  wall/off")
    for v in variants:
        mine = [r for r in runs if r["variant"] == v]
        ratios = [r["wall"] / o["wall"] for r in mine for o in runs
                  if o["variant"] == "off" and o["round"] == r["round"]]
        med = {k: statistics.median(r[k] for r in mine) for k in ("wall", "pass", "commit", "readback_end",
                                                                   "left_mb", "user", "sys")}
        ratio = f"{statistics.median(ratios):.3f}" if ratios else "-"
        print(f"  {v:10} {med['wall']:6.2f} {med['pass']:6.2f} {med['commit']:6.2f} {med['readback_end']:6.2f} "
              f"{med['left_mb']:7.0f} {med['user']:5.2f} {med['sys']:5.2f}  {ratio}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(*argv[1:4])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path)
    p.add_argument("work", type=Path)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", default="on,off")
    p.add_argument("--checkout", type=Path, default=HERE.parent, help="the code to run (default: this checkout)")
    p.add_argument("--settle", type=float, default=trash.SHADOW_SECONDS, help="first wait until this many seconds "
                   "after the last big deletion noted on WORK's file system (ext4 without a journal; 0: do not wait)")
    a = p.parse_args(argv)
    variants = a.variants.split(",")
    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    bin_ = trash.Trash(work / "trash")
    trash.settle(work, a.settle, lambda msg: print(msg, flush=True), source=a.src)
    runs = []
    print("variant    round load   wall   pass commit  rb-end left-files left-MB  user   sys")
    try:
        for rnd in range(a.rounds):
            for v in variants[rnd % len(variants):] + variants[:rnd % len(variants)]:
                r = one(v, a.src.resolve(), work, a.checkout.resolve(), bin_)
                r["round"] = rnd
                runs.append(r)
                print(f"{v:10} {rnd:5} {r['load']:4.1f} {r['wall']:6.2f} {r['pass']:6.2f} {r['commit']:6.2f} "
                      f"{r['readback_end']:7.2f} {r['left_files']:10} {r['left_mb']:7.0f} {r['user']:5.2f} "
                      f"{r['sys']:5.2f}", flush=True)
    finally:
        bin_.put(work / "set")
        bin_.empty()
    report(runs, variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
