"""Remote sets (issue #13): plugback against restic, both through rclone to one loopback WebDAV server.

    .venv/bin/python bench/remote_set.py                          # 300 x 4 KiB + 4 x 16 MiB
    .venv/bin/python bench/remote_set.py --small 1000 --big 8 --markdown

A seeded source (small files of random bytes, a few big ones), one ``rclone serve webdav``
over a temp folder, and for each tool: a full backup, a second backup with nothing
changed, and a restore of everything, each its own process (``python -m core.cli`` with
this checkout on PYTHONPATH; ``restic -r rclone:wd:restic``). Reports wall seconds and
the size of what each tool stored; the restores are compared with the source.
Nothing is asserted. Numbers: docs/performance.md, "Remote sets".
"""

from __future__ import annotations

import argparse
import filecmp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]   # a script run from the checkout measures this checkout's code

from tests.support.rclone import RCLONE, RcloneWorld  # noqa: E402

PASSPHRASE = "bench passphrase"


def make_source(root: Path, small: int, big: int, seed: int = 13) -> int:
    rng = random.Random(seed)
    total = 0
    for i in range(small):
        p = root / f"dir{i % 20:02d}" / f"file{i:05d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(4096))
        total += 4096
    for i in range(big):
        (root / f"big{i}.bin").write_bytes(rng.randbytes(16 << 20))
        total += 16 << 20
    return total


def timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return time.perf_counter() - t


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    stack = [cmp]
    while stack:
        c = stack.pop()
        if c.left_only or c.right_only or c.funny_files:
            return False
        if filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)[1:] != ([], []):
            return False
        stack.extend(c.subdirs.values())
    return True


def run(small: int, big: int, work: Path) -> list[tuple]:
    src = work / "src" / "data"
    total = make_source(src, small, big)
    world = RcloneWorld(work / "rclone")
    server = world.serve_webdav(work / "served")
    world.add_webdav("wd", server)
    env = {**os.environ, "RCLONE_CONFIG": str(world.config), "PLUGBACK_PASSPHRASE": PASSPHRASE,
           "RESTIC_PASSWORD": PASSPHRASE, "PYTHONPATH": str(ROOT), "PLUGBACK_HOME": str(work / "home")}
    pb = [sys.executable, "-m", "core.cli"]
    restic = ["restic", "-r", "rclone:wd:restic", "--no-cache", "-q"]
    rows = []
    try:
        for tool, backup, restore, folder in (
                ("plugback", pb + ["backup", str(src), "--to", "rclone:wd:plugback"],
                 pb + ["restore", "rclone:wd:plugback", str(work / "out-plugback")], "plugback"),
                ("restic", restic + ["backup", str(src)],
                 restic + ["restore", "latest", "--target", str(work / "out-restic")], "restic")):
            if tool == "restic":
                timed(restic + ["init"], env)
            first = timed(backup, env)
            second = timed(backup, env)
            back = timed(restore, env)
            out = work / f"out-{tool}"
            restored = next(p for p in out.rglob("data") if p.is_dir())
            rows.append((tool, first, second, back, size_of(work / "served" / folder), same_tree(src, restored)))
    finally:
        world.close()
    print(f"source: {small} x 4 KiB + {big} x 16 MiB = {total / 2**20:.1f} MiB", file=sys.stderr)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=300)
    ap.add_argument("--big", type=int, default=4)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if RCLONE is None or shutil.which("restic") is None:
        raise SystemExit("needs rclone and restic (apt-get install rclone restic)")
    with tempfile.TemporaryDirectory(prefix="pb-remote-bench-") as tmp:
        rows = run(args.small, args.big, Path(tmp))
    head = ("tool", "full backup s", "no-change backup s", "restore s", "stored MiB", "restore identical")
    if args.markdown:
        print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
        for r in rows:
            print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} | {r[4] / 2**20:.1f} | {r[5]} |")
    else:
        for r in rows:
            print(f"{r[0]:9} full {r[1]:6.1f}s  again {r[2]:6.1f}s  restore {r[3]:6.1f}s  "
                  f"stored {r[4] / 2**20:7.1f} MiB  identical {r[5]}")
    if not all(r[5] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
