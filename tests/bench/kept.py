"""Whether a bench script deletes a tree between (or inside) its timed commands (issue #11).

On ext4 without a journal, files created just after a big deletion cost more kernel time, so the
bench scripts keep every tree they made until their last timed command has run (bench/trash.py).
:func:`run_watched` runs a script in a child process with one of its functions wrapped as "the
timed command": at the start and the end of each call, the folders below a root are noted by inode,
to a depth and one more level (where a tree moved to a trash folder beside it lands).
:func:`deleted_between` then names each folder to that depth that one timed command left and a later
one no longer found (moved is fine: a rename keeps the inode; deleted is not, even where a new folder
got the freed inode number: its generation differs, on ext4), whether the script
deleted it between two commands or inside one (``rm -rf X && tool ...``). The folders a tool keeps
inside its own trees (a repository's lock folder) are the tool's business: give the depth of the
trees the script makes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.env import subprocess_env

BENCH = Path(__file__).resolve().parents[2] / "bench"

# argv: events file, root, depth, module, function, script, script's args. The script is imported
# (as a module of its own name), the function wrapped in its module ("": the script's), and the
# script's main() called with the script's args as sys.argv.
DRIVER = r"""
import functools, importlib, json, os, sys
events_file, root, depth, module, name, script, *args = sys.argv[1:]
sys.path[:0] = [os.path.dirname(script), os.path.dirname(os.path.dirname(script))]
events = []

def folders():
    found = {}
    top = root.rstrip(os.sep).count(os.sep)
    for dirpath, dirs, _ in os.walk(root):
        level = dirpath.count(os.sep) - top + 1
        if level > int(depth) + 1:
            dirs[:] = []
            continue
        for d in dirs:
            p = os.path.join(dirpath, d)
            st = os.lstat(p)
            found[f"{st.st_dev}:{st.st_ino}:{generation(p)}"] = [os.path.relpath(p, root), level]
    return found

def generation(path):
    # The inode's generation (FS_IOC_GETVERSION: ext4 gives a reused inode number a new one), or 0.
    try:
        import array, fcntl
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            out = array.array("l", [0])
            fcntl.ioctl(fd, 0x80087601, out, True)
            return out[0]
        finally:
            os.close(fd)
    except (OSError, ImportError):
        return 0

sys.argv = [script, *args]
main = importlib.import_module(os.path.basename(script)[:-3])
mod = importlib.import_module(module) if module else main
real = getattr(mod, name)

@functools.wraps(real)
def timed(*a, **k):
    events.append(["start", folders()])
    try:
        return real(*a, **k)
    finally:
        events.append(["end", folders()])

setattr(mod, name, timed)
try:
    code = main.main()
finally:
    open(events_file, "w").write(json.dumps(events))
sys.exit(code)
"""


def run_watched(tmp_path: Path, root: Path, depth: int, wrapped: str, script: str, *args,
                timeout: float = 180, env: dict | None = None) -> tuple[subprocess.CompletedProcess, list]:
    """Run ``bench/<script> args`` with ``wrapped`` ("module:function", "" the script's module) as its
    timed command:
    (the finished process, the events: ["start" | "end", {inode: folder}] per call)."""
    module, name = wrapped.split(":")
    events_file = tmp_path / "events.json"
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(events_file), str(root), str(depth), module, name,
                           str(BENCH / script), *map(str, args)], capture_output=True, text=True,
                          env=subprocess_env({"PYTHONPATH": str(BENCH.parent), **(env or {})}), timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(events_file.read_text())


def deleted_between(events: list, depth: int) -> list[str]:
    """The folders to ``depth`` a timed command left that a later one did not find (each once, in order)."""
    kept: dict[str, str] = {}
    gone: list[str] = []
    for kind, found in events:
        for inode, path in kept.items():
            if inode not in found and path not in gone:
                gone.append(path)
        if kind == "end":
            kept.update((inode, path) for inode, (path, level) in found.items() if level <= depth)
    return gone
