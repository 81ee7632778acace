"""What share of a full backup is the read-back, and is there a free core to overlap it with the
copy? (issue #11, "the full backup on more than one core", design (a): the read-back in worker
processes.) Run as root (the page cache is dropped before each command), under the shared lock:

    flock /tmp/pb/bench.lock nice -n 5 .venv/bin/python bench/readback_share.py SRC WORK [--repeat 2]

Per repetition, each with the cache dropped: ``cp -a`` plus ``sync`` (the goal's peer),
``plugback backup SRC`` into a new set (its read-back timed inside the process: wall and CPU),
and the same backup with the read-back replaced by nothing (measurement only: the most a
read-back moved off the main process could save). Then, the overlap probe: the backup without read-back followed
by a read-back of a copy of ``Latest/`` in one spawned process (``procpool.py read spawn 1``),
against the two at once. Prints one line per command: label, load, wall, user, sys, peak RSS.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The CLI with the read-back wrapped: timed, or (PB_NO_READBACK) skipped. Never used by the product.
SHIM = """
import os, sys, time
from core.engine import readback
orig = readback.read_back
def timed(*a):
    t, c = time.perf_counter(), time.process_time()
    r = [] if os.environ.get("PB_NO_READBACK") else orig(*a)
    print(f"  read-back wall {time.perf_counter() - t:.2f} s, CPU {time.process_time() - c:.2f} s", file=sys.stderr)
    return r
readback.read_back = timed
from core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def drop() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(label: str, shell: str) -> None:
    drop()
    load = Path("/proc/loadavg").read_text().split()[0]
    fmt = f"{label} load {load}: wall %e s, user %U s, sys %S s, peak %M KB"
    subprocess.run(["/usr/bin/time", "-f", fmt, "sh", "-c", shell], check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path)
    p.add_argument("work", type=Path)
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args(argv)
    work, src = a.work, shlex.quote(str(a.src))
    work.mkdir(parents=True, exist_ok=True)
    (work / "shim.py").write_text(SHIM)
    s, py = shlex.quote(str(work / "set")), shlex.quote(sys.executable)
    backup = f"PYTHONPATH={shlex.quote(str(REPO))} {py} {shlex.quote(str(work / 'shim.py'))} backup {src} --to {s}"
    rb = shlex.quote(str(work / "rb"))
    read = f"{py} {shlex.quote(str(HERE / 'procpool.py'))} x {rb} read spawn 1 >/dev/null"
    for r in range(1, a.repeat + 1):
        for label, shell in ((f"cp -a + sync {r}", f"cp -a {src} {shlex.quote(str(work / 'cp'))} && sync"),
                             (f"backup {r}", backup), (f"backup, no read-back {r}", f"PB_NO_READBACK=1 {backup}")):
            subprocess.run(["rm", "-rf", str(work / "set"), str(work / "cp")], check=True)
            timed(label, shell)
    subprocess.run(["rm", "-rf", str(work / "rb")], check=True)
    (work / "rb").mkdir()
    subprocess.run(["cp", "-a", str(work / "set" / "Latest"), str(work / "rb" / "L")], check=True)
    for r in range(1, a.repeat + 1):
        for label, sep in ((f"no read-back, then read-back process {r}", ";"), (f"the two at once {r}", "&")):
            subprocess.run(["rm", "-rf", str(work / "set")], check=True)
            timed(label, f"PB_NO_READBACK=1 {backup} 2>/dev/null {sep} {read}; wait")
    return 0


if __name__ == "__main__":
    sys.exit(main())
