"""Remote sets (issue #13): plugback against restic, both through rclone to one loopback WebDAV server.

    .venv/bin/python bench/remote_set.py                          # 300 x 4 KiB + 4 x 16 MiB
    .venv/bin/python bench/remote_set.py --small 1000 --big 8 --markdown
    .venv/bin/python bench/remote_set.py --dataset 0.1            # bench/make_dataset.py's tree at scale 0.1
    .venv/bin/python bench/remote_set.py --checkout /tmp/before --tools plugback,before,restic

A seeded source (small files of random bytes and a few big ones, or the standard data
set at a scale), one ``rclone serve webdav`` over a temp folder, and for each tool: a
full backup, a second backup with nothing changed, and a restore of everything, each
its own process (``python -m core.cli`` with this checkout, or with ``--checkout`` for
the tool ``before``, on PYTHONPATH; ``restic -r rclone:wd:restic``). ``--rounds N``
repeats the tools in turn (interleaved, so a change in the machine's load hits each).
Reports wall seconds, CPU seconds (user + system of the tool and its children, rclone
included, plus the WebDAV server's share), the size of what each tool stored; the
restores are compared with the source. Nothing is asserted. Numbers: docs/performance.md,
"Remote sets".

Nothing is deleted between timed commands (ext4 without a journal, this machine's ``/``: files
created right after a big deletion cost more, bench/trash.py): what a round is done with (a
restored tree, a remote folder) is moved to the work folder's trash, and the whole work folder is
deleted after the last command (noted for the next run when it was big). The first timed command
waits until the last big deletion noted on the work folder's file system is 370 s old
(``--settle``; a source of fewer than 1,000 entries does not wait).

Each checkout's ``core`` is compiled to bytecode first (``compileall``), as an installed
Plugback is (pip and the frozen app ship it compiled): with PYTHONDONTWRITEBYTECODE set, as
on the development machines, every run would otherwise compile its modules again (0.12-0.15 s
of CPU per process, docs/performance.md "Remote sets, third pass").
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]   # a script run from the checkout measures this checkout's code

from bench import trash  # noqa: E402
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


def make_dataset(root: Path, scale: float) -> int:
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_dataset.py"), str(root), "--scale", str(scale)],
                   check=True, capture_output=True)
    return size_of(root)


def _server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(cmd: list[str], env: dict, server_pid: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command, its children and the server) of one run."""
    before, server = resource.getrusage(resource.RUSAGE_CHILDREN), _server_cpu(server_pid)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu + _server_cpu(server_pid) - server


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


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


@contextlib.contextmanager
def work_folder(prefix: str) -> Iterator[tuple[Path, trash.Trash]]:
    """A temporary work folder and its trash (bench/trash.py), for the remote scripts: what a round
    is done with goes to the trash, nothing is deleted between timed commands; at the end the whole
    folder is deleted, and noted as a big deletion when it was one (the next run waits it out)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        bin_ = trash.Trash(Path(tmp) / "trash")
        try:
            yield Path(tmp), bin_
        finally:
            for entry in sorted(Path(tmp).iterdir()):
                if entry != bin_.folder:
                    bin_.put(entry)
            bin_.empty()


def settle_arg(ap: argparse.ArgumentParser) -> None:
    """The remote scripts' ``--settle`` (bench/trash.py's wait before the first timed command)."""
    ap.add_argument("--settle", type=float, default=trash.SHADOW_SECONDS, help="first wait until this many seconds "
                    "after the last big deletion noted on the work folder's file system (0: do not wait)")


def settle(work: Path, seconds: float, source: Path) -> None:
    trash.settle(work, seconds, lambda msg: print(msg, file=sys.stderr, flush=True), source=source)


def _commands(tool: str, src: Path, out: Path, checkout: Path | None) -> tuple[list, list, dict]:
    if tool == "restic":
        restic = ["restic", "-r", f"rclone:wd:{out.name}", "--no-cache", "-q"]
        return (restic + ["backup", str(src)], restic + ["restore", "latest", "--target", str(out / "restored")],
                {})
    # -P: "python -m" would put the current folder first on sys.path, and a run from this checkout
    # would then import this checkout's core for the tool "before" too (PYTHONPATH comes after it).
    pb = [sys.executable, "-P", "-m", "core.cli"]
    spec = f"rclone:wd:{out.name}"
    code = checkout if tool == "before" and checkout else ROOT
    return (pb + ["backup", str(src), "--to", spec], pb + ["restore", spec, str(out / "restored")],
            {"PYTHONPATH": str(code)})


def compile_checkouts(*checkouts: Path | None) -> None:
    """Bytecode for each checkout's ``core`` (what an installed Plugback has; see the module docstring)."""
    for code in filter(None, checkouts):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(code / "core")], check=True)


def run(source: Path, tools: list[str], rounds: int, work: Path, checkout: Path | None,
        bin_: trash.Trash) -> list[tuple]:
    world = RcloneWorld(work / "rclone")
    server = world.serve_webdav(work / "served")
    world.add_webdav("wd", server)
    assert server.proc is not None
    env = {**os.environ, "RCLONE_CONFIG": str(world.config), "PLUGBACK_PASSPHRASE": PASSPHRASE,
           "RESTIC_PASSWORD": PASSPHRASE, "PLUGBACK_HOME": str(work / "home")}
    rows = []
    try:
        for n in range(rounds):
            for tool in tools:
                out = work / f"{tool}{n}"
                backup, restore, extra = _commands(tool, source, out, checkout)
                if tool == "restic":
                    timed(["restic", "-r", f"rclone:wd:{out.name}", "init"], env, server.proc.pid)
                times = [timed(cmd, {**env, **extra}, server.proc.pid) for cmd in (backup, backup, restore)]
                restored = next(p for p in (out / "restored").rglob(source.name) if p.is_dir())
                rows.append((tool, *times, size_of(work / "served" / out.name), same_tree(source, restored)))
                bin_.put(out)
                bin_.put(work / "served" / out.name)
    finally:
        world.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=300)
    ap.add_argument("--big", type=int, default=4)
    ap.add_argument("--dataset", type=float, metavar="SCALE", help="bench/make_dataset.py's tree at SCALE instead")
    ap.add_argument("--tools", default="plugback,restic", help="plugback, before (needs --checkout), restic")
    ap.add_argument("--checkout", type=Path, help="another checkout of plugback: the tool 'before'")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--markdown", action="store_true")
    settle_arg(ap)
    args = ap.parse_args()
    tools = args.tools.split(",")
    if RCLONE is None or ("restic" in tools and shutil.which("restic") is None):
        raise SystemExit("needs rclone and restic (apt-get install rclone restic)")
    if "before" in tools and args.checkout is None:
        raise SystemExit("the tool 'before' needs --checkout DIR")
    with work_folder("pb-remote-bench-") as (tmp, bin_):
        source = tmp / "src" / "data"
        if args.dataset:
            total = make_dataset(source, args.dataset)
            what = f"make_dataset --scale {args.dataset}"
        else:
            total = make_source(source, args.small, args.big)
            what = f"{args.small} x 4 KiB + {args.big} x 16 MiB"
        print(f"source: {what} = {total / 2**20:.1f} MiB; load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        compile_checkouts(ROOT, args.checkout if "before" in tools else None)
        settle(tmp, args.settle, source)
        rows = run(source, tools, args.rounds, tmp, args.checkout, bin_)
        print(f"load after: {os.getloadavg()[0]:.1f}", file=sys.stderr)
    _report(rows, args.markdown)
    if not all(r[5] for r in rows):
        sys.exit(1)


def _report(rows: list[tuple], markdown: bool) -> None:
    head = ("tool", "full backup s (cpu)", "no-change backup s (cpu)", "restore s (cpu)", "stored MiB",
            "restore identical")
    if markdown:
        print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for r in rows:
        cells = [f"{w:.2f} ({c:.2f})" for w, c in r[1:4]]
        if markdown:
            print(f"| {r[0]} | " + " | ".join(cells) + f" | {r[4] / 2**20:.1f} | {r[5]} |")
        else:
            print(f"{r[0]:9} full {cells[0]:15} again {cells[1]:15} restore {cells[2]:15} "
                  f"stored {r[4] / 2**20:7.1f} MiB  identical {r[5]}")


if __name__ == "__main__":
    main()
