"""What a big deletion costs the next files created on this file system (issue #11, branch benchfair).

On ext4 **without a journal** (this machine's ``/``: ``cat /proc/fs/ext4/vda/options``, no
``/proc/fs/jbd2/vda*``), the inode allocator will not reuse an inode deleted less than 60 s ago
(360 s while its inode-table block is dirty, which it becomes as soon as a new inode is written
into it): ``find_inode_bit`` calls ``recently_deleted()`` on each free inode it meets and skips
those, scanning on from the start of the group for every create. So files created just after a big
``rm -rf`` cost more kernel time per create than the same files on a quiet file system. With a
journal the check is off.

This script measures that alone: a child process creates N tiny files (64 bytes, in folders of 50
and groups of 100 folders, as ``make_scale.py``'s small-files tree) into a new folder, timed (wall,
user and system seconds of the child; a ``sync`` at the end counts in the wall), after:

* ``fresh``: nothing deleted by this script yet (the file system's other users may have);
* ``rm``: the previous tree of N files deleted, then ``sync`` and the cache dropped (what
  ``bench/run.py`` did between its timed commands);
* ``rm-nosync``: deleted, then straight on, cache warm (the 360 s case: inode-table blocks dirty);
* ``rm-wait70``: deleted, ``sync``, 70 s, cache dropped;
* ``rm-wait370``: deleted, ``sync``, 370 s, cache dropped (only when ``--conditions`` names it).

``--fs vda`` runs in WORKDIR (this machine's disk); ``--fs nojournal`` and ``--fs journal`` in a
fresh loop-mounted ext4 image made in WORKDIR (``mkfs.ext4 -O ^has_journal`` or with its journal:
root only), where ``fresh`` is truly quiet. Each tree is deleted at the end.

    flock /tmp/pb/bench.lock nice -n 5 .venv/bin/python bench/deletion_shadow.py --files 20000,100000 \\
        --fs vda,nojournal,journal --workdir /var/tmp/pb-benchfair/shadow
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import trash

CONDITIONS = ("fresh", "rm", "rm-nosync", "rm-wait70", "rm-wait370")
FILESYSTEMS = ("vda", "nojournal", "journal")
# The child: N files of 64 bytes, 50 to a folder, 100 folders to a group (make_scale's layout).
CREATE = """
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
data = b"x" * 64
for i in range(n):
    d = f"{root}/g{i // 5000:04d}/d{i // 50:06d}"
    if i % 50 == 0:
        os.makedirs(d)
    fd = os.open(f"{d}/f{i:07d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.close(fd)
"""


def drop_caches(cold: bool) -> None:
    """``sync``, then the page cache, dentries and inodes dropped (when ``cold``)."""
    os.sync()
    if cold:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def create(root: Path, n: int) -> dict:
    """Time a child creating ``n`` tiny files under ``root`` (and a sync): wall, user, sys."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CREATE, str(root), str(n)])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    os.sync()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"creating {n} files in {root} failed ({proc.returncode})")
    return {"wall": round(wall, 3), "user": round(usage.ru_utime, 3), "sys": round(usage.ru_stime, 3),
            "load": os.getloadavg()[0]}


def settle(condition: str, cold: bool) -> None:
    """What happens between the deletion and the timed create, per condition."""
    if condition == "rm-nosync":
        return
    os.sync()
    if condition == "rm-wait70":
        time.sleep(70)
    elif condition == "rm-wait370":
        time.sleep(370)
    drop_caches(cold)


def run_conditions(base: Path, n: int, conditions: list[str], cold: bool, label: str) -> list[dict]:
    """Each condition once, in order, each deleting the tree the one before it made."""
    rows, previous = [], None
    for i, condition in enumerate(conditions):
        target = base / f"t{n}-{i}"
        if condition == "fresh":
            drop_caches(cold)
        else:
            if previous is None:   # something to delete first (untimed)
                previous = base / f"t{n}-seed"
                create(previous, n)
            shutil.rmtree(previous)
            if n >= trash.BIG_DELETION:
                trash.note_deletion(base)   # (the next benchmark on this file system waits it out)
            settle(condition, cold)
        row = {"fs": label, "files": n, "condition": condition, **create(target, n)}
        print(f"[{time.strftime('%H:%M:%S')}] {label:9} {n:7d} files {condition:10} {row['wall']:7.2f} s wall "
              f"{row['user']:6.2f} s user {row['sys']:6.2f} s sys  load {row['load']:.1f}", flush=True)
        rows.append(row)
        previous = target
    if previous is not None:
        shutil.rmtree(previous)
        if n >= trash.BIG_DELETION:
            trash.note_deletion(base)
    return rows


def loop_fs(work: Path, journal: bool, files: int) -> tuple[Path, Path]:
    """A fresh ext4 image (with or without its journal) mounted at WORK/mnt: (image, mount point)."""
    if os.geteuid() != 0:
        raise SystemExit("--fs nojournal/journal: a loop mount needs root (or use --fs vda)")
    image, mnt = work / "fs.img", work / "mnt"
    with open(image, "wb") as f:
        f.truncate(max(1, files * 3 // 100_000) * 2**30 + 2**30)   # sparse: 3 trees of N files fit
    opts = [] if journal else ["-O", "^has_journal"]
    subprocess.run(["mkfs.ext4", "-q", "-F", "-i", "4096", *opts, str(image)], check=True)
    mnt.mkdir(exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    return image, mnt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", default="20000,100000", help="comma-separated file counts")
    p.add_argument("--fs", default="vda", help=f"comma-separated, from {','.join(FILESYSTEMS)}")
    p.add_argument("--conditions", default=",".join(CONDITIONS[:4]),
                   help=f"comma-separated, in order, from {','.join(CONDITIONS)} (rm-wait370: 6 minutes more)")
    p.add_argument("--warm", action="store_true", help="do not drop the page cache (not root)")
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/pb-shadow"))
    args = p.parse_args(argv)
    cold = not args.warm
    if cold and os.geteuid() != 0:
        p.error("must run as root: the page cache is dropped before every timed command (or --warm)")
    conditions = args.conditions.split(",")
    if set(conditions) - set(CONDITIONS) or set(args.fs.split(",")) - set(FILESYSTEMS):
        p.error(f"--conditions from {','.join(CONDITIONS)}; --fs from {','.join(FILESYSTEMS)}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for label in args.fs.split(","):
        for n in (int(x) for x in args.files.split(",")):
            if label == "vda":
                rows += run_conditions(args.workdir, n, conditions, cold, label)
                continue
            image, mnt = loop_fs(args.workdir, label == "journal", n)
            try:
                rows += run_conditions(mnt, n, conditions, cold, label)
            finally:
                subprocess.run(["umount", str(mnt)], check=True)
                image.unlink()
    print("| fs | files | condition | wall s | user s | sys s | sys / fresh | load |\n|---|---|---|---|---|---|---|---|")
    for row in rows:
        fresh = next(r for r in rows if r["fs"] == row["fs"] and r["files"] == row["files"])
        print(f"| {row['fs']} | {row['files']:,} | {row['condition']} | {row['wall']:.2f} | {row['user']:.2f} | "
              f"{row['sys']:.2f} | {row['sys'] / max(fresh['sys'], 1e-3):.2f}x | {row['load']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
