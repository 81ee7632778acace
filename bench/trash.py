"""Deletions kept out of the benchmarks' way (issue #11, branch benchfair).

On ext4 without a journal (this machine's ``/``), the inode allocator skips every inode deleted
less than 60 s ago, 360 s while its inode-table block is dirty (it becomes dirty as soon as a new
inode is written into it): each create scans past them again from the start of its group. Files
created in the minutes after a big ``rm -rf`` cost more kernel time than the same files on a quiet
file system (``bench/deletion_shadow.py`` measures it), so a timed command that runs right after
the harness deleted a tree pays for the harness.

So the benchmarks delete nothing between timed commands: what they would have deleted is moved
into a :class:`Trash` folder (a rename on the same file system frees no inode) and deleted when the
run ends. A deletion of many entries is noted for the file system (a stamp in the temporary
folder), and a run waits (:func:`settle`) until the last one noted is out of the shadow before its
first timed command.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

# 60 s + 300 s while the inode-table block is dirty (fs/ext4/ialloc.c: RECENTCY_MIN, RECENTCY_DIRTY),
# plus a margin.
SHADOW_SECONDS = 370
# Fewer entries deleted than this are not noted: their shadow is too small to measure (a smoke test's).
BIG_DELETION = 5000
# A run whose source has fewer entries than this does not wait (it creates too few files to pay).
SMALL_RUN = 1000


def stamp_of(where: Path) -> Path:
    """Where the last big deletion on ``where``'s file system is noted: one file per file system in
    the temporary folder, shared by every bench script and work folder on it."""
    where = Path(where).resolve()
    while not where.exists():
        where = where.parent
    return Path(tempfile.gettempdir()) / f"plugback-bench-deleted-dev{os.stat(where).st_dev}"


def rmtree(path: Path) -> None:
    """Remove a file, a symlink or a folder tree, if it exists (a link is removed, not followed)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def entries(folder: Path, stop: int | None = None) -> int:
    """How many entries are below ``folder`` (counting stops once past ``stop``)."""
    count = 0
    for _, dirs, files in os.walk(folder):
        count += len(dirs) + len(files)
        if stop is not None and count > stop:
            break
    return count


class Trash:
    """Trees deleted later: :meth:`put` moves one aside (untimed, frees nothing), :meth:`empty`
    deletes them all at the end of a run and notes when (:func:`note_deletion`) if they were many."""

    def __init__(self, folder: Path, stamp: Path | None = None):
        self.folder = Path(folder)
        self.stamp = stamp   # (tests: a stamp of their own; else the file system's)

    def put(self, path: Path) -> None:
        """Move ``path`` (a file, link or folder, if it exists) into the trash."""
        path = Path(path)
        if not os.path.lexists(path):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        n = len(os.listdir(self.folder))
        while os.path.lexists(self.folder / f"{n:05d}-{path.name}"):
            n += 1
        os.rename(path, self.folder / f"{n:05d}-{path.name}")

    def empty(self) -> int:
        """Delete what was put here; returns how many entries that was."""
        if not self.folder.exists():
            return 0
        count = entries(self.folder)
        rmtree(self.folder)
        if count >= BIG_DELETION:
            note_deletion(self.folder.parent, self.stamp)
        return count


def note_deletion(where: Path, stamp: Path | None = None) -> None:
    """Note that a big tree on ``where``'s file system was deleted just now."""
    (stamp or stamp_of(where)).write_text(f"{time.time():.3f}\n")


def _device_of(path: Path) -> tuple[str, str]:
    """(device, fs type) of the mount holding ``path`` (the longest mount point that prefixes it)."""
    best, found = "", ("?", "?")
    where = str(Path(path).resolve())
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                dev, mnt, fstype = line.split()[:3]
                mnt = mnt.replace("\\040", " ")
                if (where == mnt or where.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, found = mnt, (dev, fstype)
    except OSError:
        pass
    return found


def journalless_ext4(path: Path) -> bool:
    """Whether ``path`` is on ext4 without a journal (no ``/proc/fs/jbd2/DEV-*`` for its device)."""
    dev, fstype = _device_of(path)
    if fstype != "ext4":
        return False
    name = Path(os.path.realpath(dev)).name
    jbd2 = Path("/proc/fs/jbd2")
    return not any(entry.name.startswith(f"{name}-") for entry in jbd2.iterdir()) if jbd2.is_dir() else True


def settle(workdir: Path, seconds: float, log: Callable[[str], None], stamp: Path | None = None,
           source: Path | None = None) -> float:
    """Wait until ``seconds`` after the last big deletion noted on ``workdir``'s file system (only
    on ext4 without a journal, and only for a run whose ``source`` has at least
    :data:`SMALL_RUN` entries: a smoke test does not wait); returns the seconds waited."""
    stamp = stamp or stamp_of(workdir)
    if seconds <= 0 or not stamp.exists() or not journalless_ext4(Path(workdir)):
        return 0.0
    if source is not None and entries(source, SMALL_RUN) < SMALL_RUN:
        return 0.0
    try:
        wait = float(stamp.read_text()) + seconds - time.time()
    except ValueError:
        return 0.0
    if wait <= 0:
        return 0.0
    wait = min(wait, seconds)   # (a clock that went back)
    when = time.strftime("%H:%M:%S", time.localtime(time.time() + wait - seconds))
    log(f"waiting {wait:.0f} s: a big tree deleted on this file system at {when} still slows new files "
        "(ext4 without a journal skips recently deleted inodes); --settle 0 not to wait")
    time.sleep(wait)
    return wait


def main(argv: list[str] | None = None) -> int:
    """``python bench/trash.py WORKDIR [SECONDS]``: wait out the last big deletion on WORKDIR's file
    system before taking the bench lock (so the lock is not held while a run waits)."""
    import argparse
    import sys
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("workdir", type=Path)
    p.add_argument("seconds", type=float, nargs="?", default=SHADOW_SECONDS)
    args = p.parse_args(argv)
    settle(args.workdir, args.seconds, lambda msg: print(msg, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
