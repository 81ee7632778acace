"""The floors under issue #11's many-small-files goals: the least work each phase must do, done by
the fastest native tools, timed beside the peer and plugback in one run on one tree.

The issue lets a speed goal stay unmet only where a measured bound of the machine by itself
exceeds it. Each floor here is work plugback cannot skip and still be what it promises:

* **full backup** (peer ``cp -a``): copy every file (``cp -a``), hash every source byte
  (:data:`SHA256`: the manifest records each file's SHA-256), flush the copy to the drive
  (``sync``: the data is durable before the snapshot commits), drop the cache and read every
  copied byte back from the drive and hash it (again: "every byte written is read
  back and checked"). Serial: one step after the other. Overlapped: the hashing of the sources
  runs beside ``cp -a`` (two processes, as the product may hash while it copies) and the
  read-back hashes with two processes.
* **no-change backup** (peer ``rsync -a``): ``lstat`` every source (GNU ``find -printf`` of
  size, mtime, inode and ctime: the "unchanged" rule) and read the parent manifest (``zcat`` of
  plugback's own newest manifest). Writing the new manifest is left out, so this floor is low.
* **restore** (peer ``cp -a`` of the copy): copy ``Latest/`` out (``cp -a``) and hash every byte
  read (a restored file is checked against its hash). Serial, and overlapped
  (the hashing beside the copy).
* **verify --read-all** (peer ``restic check --read-data``): read and hash every file of
  ``Latest/`` as the plain files it holds, one process, two and eight (plugback
  reads with eight threads: more reads in flight keep a cold drive's queue full).

What is not in a floor (and so makes each one lower than the product could ever be): the
manifest and ``Latest.sha256`` written, the journal, the temporary names and renames,
Python's start-up. The page cache is dropped before every timed command, as the benchmark
does. Each command is timed with ``bench/measure.py`` (wall, CPU of the command and its
children, peak RSS). Nothing is deleted between timed commands: each repetition's copies go to
WORKDIR/trash, deleted at the end, and a run first waits until the last big deletion on its file
system is out of the way of new files (``--settle``; ext4 without a journal: see trash.py).

    nice -n 10 .venv/bin/python bench/floor_small.py --files 100000 --workdir /tmp/pb-floor --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_scale  # noqa: E402
import trash  # noqa: E402
from measure import timed  # noqa: E402
from tools import PASSWORD, plugback_argv, plugback_env  # noqa: E402

DROP = "sync; echo 3 > /proc/sys/vm/drop_caches"
# OpenSSL's SHA-256 is the SHA-NI code Python's hashlib runs; coreutils' sha256sum (the fallback) is
# several times slower on this machine and would make a floor too high (until 2026-11-27 the floors
# here hashed with sha256sum).
SHA256 = "openssl dgst -sha256" if shutil.which("openssl") else "sha256sum"
# The source's ``lstat`` fields the "unchanged" rule compares (GNU find: one fstatat per entry).
STAT_FIELDS = "%s %T@ %i %C@ %m %p\\n"


def hash_tree(folder: Path, jobs: int = 1) -> str:
    """Shell: SHA-256 of every regular file below ``folder`` (``jobs`` processes of :data:`SHA256`:
    Debian's ``sha256sum`` runs at about 250 MB/s here, OpenSSL and Python's hashlib at 1.6 GB/s)."""
    return (f"find {shlex.quote(str(folder))} -type f -print0 | "
            f"xargs -0 -r -n 2000 -P {jobs} {SHA256} > /dev/null")


def beside(w: dict[str, Path]) -> Path:
    """Where :func:`floor_beside` copies to (cleared with the other floors' copies)."""
    return w["floor"].with_name(w["floor"].name + "-beside")


def floor_beside(src: Path, dst: Path, drop: str = DROP) -> str:
    """Shell: the full backup's floor with the read-back *beside* the copy, as the product reads
    back what a flush made durable while the pass goes on: each of ``src``'s top entries copied by
    ``cp -a`` while :data:`SHA256` hashes its source, then ``sync -f`` of the copy's file system,
    the cache dropped (``drop``), and the copy hashed cold in the background while the next entry is
    copied (branch ``small6`` measured it by hand first: 1.26x ``cp -a`` at 100,000 files)."""
    s, d = shlex.quote(str(src)), shlex.quote(str(dst))
    hash_src = f'find "$e" -type f -print0 | xargs -0 -r -n 2000 {SHA256} > /dev/null'
    hash_copy = f'find {d}/"$(basename "$e")" -type f -print0 | xargs -0 -r -n 2000 {SHA256} > /dev/null'
    return (f'mkdir {d} && for e in {s}/* {s}/.[!.]*; do [ -e "$e" ] || [ -L "$e" ] || continue; '
            f'( cp -a "$e" {d}/ & {hash_src} & wait ) && sync -f {d} && {drop} && {{ {hash_copy} & }}; '
            f'done; wait')


def floors(w: dict[str, Path], manifest: Path, drop: str = DROP, before: str = "",
           also: Sequence[str] = (), no_floors: bool = False) -> dict[str, dict[str, str]]:
    """Per phase: the peer, the floors and plugback, each a shell command (run after ``drop``).

    ``before``: another checkout (e.g. ``git archive`` of main) whose full backup (into its own
    set), no-change backup, verify, quick verify and snapshots are timed too, beside this one's, in
    each repetition (interleaved; :func:`rotated` swaps the two backups' order every other one).
    ``also``: more checkouts whose full backup (each into its own set, ``set-<folder name>``) is
    timed beside these (a bisect: ``plugback also <folder name>``; :func:`rotated` turns the order of
    all the full backups by one place each repetition). ``no_floors``: the floors left out."""
    q = {k: shlex.quote(str(v)) for k, v in w.items()}
    cli = " ".join(shlex.quote(a) for a in plugback_argv())
    # -P: the current folder is not put first on sys.path (run from a checkout, it would shadow ``before``)
    old = f"env PYTHONPATH={shlex.quote(before)} {shlex.quote(sys.executable)} -P -m core.cli" if before else ""
    more = {f"plugback also {Path(d).name}": (f"env PYTHONPATH={shlex.quote(d)} {shlex.quote(sys.executable)} -P "
                                              f"-m core.cli backup {q['src']} --to {shlex.quote(str(also_set(w, d)))}")
            for d in also}
    every = _phases(w, q, manifest, drop, cli, old, more)
    if no_floors:
        every = {phase: {n: c for n, c in by.items() if not n.startswith("floor")} for phase, by in every.items()}
    return every


def also_set(w: dict[str, Path], checkout: str) -> Path:
    """Where ``--also``'s ``checkout`` backs up (cleared before each repetition)."""
    return w["work"] / f"set-{Path(checkout).name}"


def _phases(w: dict[str, Path], q: dict[str, str], manifest: Path, drop: str, cli: str, old: str,
            more: dict[str, str]) -> dict[str, dict[str, str]]:
    return {
        "full": {
            "peer: cp -a": f"cp -a {q['src']} {q['copy']}",
            "floor serial": (f"cp -a {q['src']} {q['floor']} && {hash_tree(w['src'])} && {drop} && "
                             f"{hash_tree(w['floor'])}"),
            "floor overlapped": (f"( cp -a {q['src']} {q['floor']} & {hash_tree(w['src'])} & wait ) && {drop} && "
                                 f"{hash_tree(w['floor'], 2)}"),
            "floor beside": floor_beside(w["src"], beside(w), drop),
            **({"plugback before": f"{old} backup {q['src']} --to {q['set3']}"} if old else {}),
            **more,
            "plugback": f"{cli} backup {q['src']} --to {q['set2']}",
        },
        "nochange": {
            "peer: rsync -a": f"rsync -a --delete {q['src']}/ {q['mirror']}/",
            "floor": (f"find {q['src']} -printf '{STAT_FIELDS}' > /dev/null && "
                      f"zcat {shlex.quote(str(manifest))} > /dev/null"),
            **({"plugback before": f"{old} backup {q['src']} --to {q['set']}"} if old else {}),
            "plugback": f"{cli} backup {q['src']} --to {q['set']}",
        },
        "restore": {
            "peer: cp -a": f"cp -a {q['copy']} {q['out']}/peer",
            "floor serial": f"cp -a {q['latest']} {q['out']}/floor && {hash_tree(w['latest'])}",
            "floor overlapped": f"cp -a {q['latest']} {q['out']}/floor & {hash_tree(w['latest'])} & wait",
            "plugback": f"{cli} restore {q['set']} {q['out']}/plugback",
        },
        "verify": {
            "peer: restic check --read-data": "restic check --read-data",
            "floor 1 process": hash_tree(w["latest"]),
            "floor 2 processes": hash_tree(w["latest"], 2),
            "floor 8 processes": hash_tree(w["latest"], 8),   # plugback reads 8 files at a time
            **({"plugback before": f"{old} verify {q['set']} --read-all"} if old else {}),
            "plugback": f"{cli} verify {q['set']} --read-all",
            # Not --read-all (no peer ratio meant): restic's quick check, then plugback's; the listing.
            "restic check (quick)": "restic check",
            **({"plugback before: quick verify": f"{old} verify {q['set']}"} if old else {}),
            "plugback quick verify": f"{cli} verify {q['set']}",
            "restic snapshots": "restic snapshots",
            **({"plugback before: snapshots": f"{old} snapshots {q['set']}"} if old else {}),
            "plugback snapshots": f"{cli} snapshots {q['set']}",
        },
    }


def _clear(phase: str, w: dict[str, Path], bin_: trash.Trash, also: Sequence[str] = ()) -> None:
    """Untimed, before each repeat: what the phase's commands must find absent, moved to the trash
    (the last repeat's copy stays: the restore's peer copies it back)."""
    if phase == "full":
        for key in ("copy", "floor", "set2", "set3"):
            bin_.put(w[key])
        bin_.put(beside(w))
        for d in also:
            bin_.put(also_set(w, d))
    if phase == "restore":
        bin_.put(w["out"])
        w["out"].mkdir()


def _env(w: dict[str, Path]) -> dict:
    return {**os.environ, **plugback_env(), "PLUGBACK_HOME": str(w["home"]),
            "RESTIC_REPOSITORY": str(w["restic"]), "RESTIC_PASSWORD": PASSWORD,
            "RESTIC_CACHE_DIR": str(w["work"] / "restic-cache")}


def prepare(args, w: dict[str, Path]) -> Path:
    """Untimed: the source, plugback's set (its newest manifest returned), rsync's mirror, a restic repo."""
    env = _env(w)
    for key in ("work", "out"):
        w[key].mkdir(parents=True, exist_ok=True)
    if not w["src"].exists():
        print(json.dumps(make_scale.generate_small(w["src"], files=args.files, seed=args.seed)), flush=True)
    steps = [plugback_argv() + ["backup", str(w["src"]), "--to", str(w["set"])],
             ["rsync", "-a", "--delete", f"{w['src']}/", f"{w['mirror']}/"]]
    if not w["restic"].exists():
        steps += [["restic", "init"], ["restic", "backup", "--host", "bench", str(w["src"])]]
    for argv in steps:
        subprocess.run(argv, env=env, check=True, capture_output=True)
    manifests = sorted((w["set"] / "snapshots").glob("*.json.gz"))
    return manifests[-1]


def run(args) -> dict:
    work = Path(args.workdir).resolve()
    w = {"work": work, "src": work / "src", "set": work / "set", "set2": work / "set2", "set3": work / "set3",
         "copy": work / "copy",
         "floor": work / "floor", "mirror": work / "mirror", "restic": work / "restic", "out": work / "out",
         "home": work / "home"}
    manifest = prepare(args, w)
    w["latest"] = w["set"] / "Latest"
    env = _env(w)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    results: dict[str, dict[str, list]] = {}
    drop = "sync" if args.warm else DROP
    bin_ = trash.Trash(work / "trash")
    trash.settle(work, args.settle, lambda msg: print(msg, flush=True), source=w["src"])
    try:
        for phase, commands in floors(w, manifest, drop, args.before, args.also, args.no_floors).items():
            if args.phases and phase not in args.phases.split(","):
                continue
            for rep in range(args.repeat):
                _clear(phase, w, bin_, args.also)
                time_commands(phase, rotated(commands, rep), rep, drop, logs, args.timeout, env, results)
    finally:
        bin_.empty()
    return results


def rotated(by_name: dict[str, str], rep: int) -> dict[str, str]:
    """The commands in their order, the codes compared (``plugback before``, ``plugback also …``,
    ``plugback``) turned by ``rep`` places among their own positions: with two, swapped in every odd
    repetition; with n, each code in each place once in n repetitions. No code always runs first
    after the same peer (an A/B with a fixed order can flatter one side). floor_standard.py's too."""
    names = list(by_name)
    slots = [i for i, n in enumerate(names) if n in ("plugback before", "plugback") or n.startswith("plugback also ")]
    if len(slots) > 1 and "plugback" in by_name:
        codes = [names[i] for i in slots]
        k = rep % len(codes)
        for i, name in zip(slots, codes[-k:] + codes[:-k] if k else codes, strict=True):
            names[i] = name
    return {name: by_name[name] for name in names}


def time_commands(phase: str, commands: dict[str, str], rep: int, drop: str, logs: Path, timeout: float,
                  env: dict, results: dict[str, dict[str, list]], width: int = 9) -> None:
    """One repetition of a phase: each command after ``drop`` (the cache), timed, its load noted,
    appended to ``results[phase][name]`` and printed (floor_standard.py uses this too)."""
    for name, script in commands.items():
        subprocess.run(["sh", "-c", drop], check=True)
        r = timed(["sh", "-c", script], logs / f"{phase}-{rep}.log", timeout, env=env)
        r["load"] = os.getloadavg()[0]
        results.setdefault(phase, {}).setdefault(name, []).append(r)
        print(f"[{time.strftime('%H:%M:%S')}] {phase:{width}} {name:32} {r['wall']:8.2f} s wall "
              f"{r['cpu']:7.2f} s CPU ({r.get('user', 0):.2f} user {r.get('sys', 0):.2f} sys)  rc {r['rc']}  "
              f"load {r['load']:.1f}", flush=True)


def table(results: dict) -> str:
    """Markdown: median wall (CPU) per command, and its ratio to the phase's peer (first command)."""
    rows = ["| phase | command | wall s (median) | CPU s | user s | sys s | / peer | peak RSS MB | runs |",
            "|---|---|---|---|---|---|---|---|---|"]
    for phase, by_name in results.items():
        peer = None
        for name, runs in by_name.items():
            wall = statistics.median(r["wall"] for r in runs)
            cpu = statistics.median(r["cpu"] for r in runs)
            user, sys_ = (statistics.median(r.get(k, 0) for r in runs) for k in ("user", "sys"))
            peer = wall if peer is None else peer
            bad = sum(1 for r in runs if r["rc"] != 0)
            rss = max(r.get("rss", 0) for r in runs) / 1e6
            rows.append(f"| {phase} | {name} | {wall:.2f} | {cpu:.2f} | {user:.2f} | {sys_:.2f} | {wall / peer:.2f}x | "
                        f"{rss:.0f} | {len(runs)}{f' ({bad} failed)' if bad else ''} |")
    return "\n".join(rows)


def cold_args(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The floor scripts' shared options (--timeout, --json, --warm) added, ``argv`` parsed, and
    root required unless --warm (the page cache is dropped before every timed command)."""
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--warm", action="store_true", help="do not drop the page cache (not root; a smoke test)")
    args = p.parse_args(argv)
    if not args.warm and os.geteuid() != 0:
        p.error("must run as root: the page cache is dropped before every timed command (or --warm)")
    return args


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--workdir", default="/tmp/pb-floor")
    p.add_argument("--phases", default="", help="comma-separated subset of full,nochange,restore,verify")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--before", default="", help="full, nochange and verify phases: also time this checkout's "
                   "plugback (an export of main: git archive main | tar -x -C DIR) beside this one's, in each repetition")
    p.add_argument("--also", action="append", default=[], metavar="DIR", help="full phase: also time this "
                   "checkout's first backup (another export) in each repetition, its place turned each time (repeatable)")
    p.add_argument("--no-floors", action="store_true", help="time the peers and plugback only (an A/B or bisect)")
    p.add_argument("--warm", action="store_true", help="do not drop the page cache (not root; a smoke test)")
    p.add_argument("--settle", type=float, default=trash.SHADOW_SECONDS, help="first wait until this many seconds "
                   "after the last big deletion noted on WORKDIR's file system (ext4 without a journal; 0: do not wait)")
    args = p.parse_args(argv)
    if not args.warm and os.geteuid() != 0:
        p.error("must run as root: the page cache is dropped before every timed command (or --warm)")
    results = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0 if all(r["rc"] == 0 for by in results.values() for runs in by.values() for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
