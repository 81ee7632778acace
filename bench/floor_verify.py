"""The floor under ``verify --read-all`` of many tiny files (issue #11), timed in the same rounds as
``restic check --read-data`` and each checkout's plugback, the page cache dropped before every command.

What a read-all verify of a plain set must do at least: read every byte the set holds (the
files of ``Latest/``, the old versions in ``objects/``, the manifests, ``Latest.sha256``) and
SHA-256 it, and gunzip and hash each manifest's text (its trailer's hash). The floors do
exactly that and nothing more (no comparison with the manifests, no per-entry work), with
native code at C speed on both cores:

* ``openssl P`` — ``find SET -type f -print0 | xargs -0 -P P openssl dgst -sha256``, the
  manifests' text through ``zcat | openssl dgst`` beside it. OpenSSL's SHA-256 uses the CPU's
  SHA extensions as Python's ``hashlib`` does (coreutils' ``sha256sum`` has no such code: ~6x
  the CPU per byte, so a floor built on it sits too high). P = 2: one reader per core; P = 8:
  as many reads in flight as plugback keeps (a cold drive answers many reads at once faster).
* ``python P`` — the same files read (``os.open``/``os.read``) and hashed (``hashlib``) by P
  Python processes of 4 threads each: what a Python reader pays per file, as plugback's
  reader processes do, without any of plugback's checks.

Whichever floor is the fastest in a round is that round's floor. The data set is the
small-files scenario's state at its verify phase (bench/run.py: a full backup, a no-change
backup, then a day of changes backed up; restic likewise), made on first use (``--files``)
with this checkout's plugback; ``PLUGBACK_HOME`` is the workdir's ``home``, where the backups
recorded the manifests they wrote (verify uses that record).

    flock /tmp/pb/bench.lock nice -n 5 .venv/bin/python bench/floor_verify.py --files 100000 \\
        --workdir /var/tmp/pb-fv --rounds 3 --checkout before=/var/tmp/pb-fv/main --checkout after=.

``--nodev`` times every command through a ``nodev`` bind mount of the workdir (root): the way a
desktop mounts a USB drive (for a reader that behaves differently there: readall10 tried one
without an ``lstat`` before each open); the same files, the same cache drops, for every command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
THREADS = 4   # threads per Python floor process


def hash_files(paths: list[str], threads: int = THREADS) -> int:
    """The ``python`` floor's worker: read and SHA-256 every file of ``paths`` (no symlink followed) with
    ``threads`` threads; how many could not be read."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    bad = [0]

    def work(mine: list[str]) -> None:
        for path in mine:
            try:
                fd = os.open(path, flags)
            except OSError:
                bad[0] += 1
                continue
            try:
                digest = hashlib.sha256()
                while block := os.read(fd, 1 << 20):
                    digest.update(block)
                digest.hexdigest()
            finally:
                os.close(fd)

    pool = [threading.Thread(target=work, args=(paths[i::threads],)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return bad[0]


def floors(bset: Path, kinds: list[str]) -> dict[str, str]:
    """Each floor as a shell command (``openssl2``, ``openssl8``, ``python2`` ...)."""
    q = shlex.quote(str(bset))
    manifests = f"zcat {q}/snapshots/*.json.gz | openssl dgst -sha256 > /dev/null"
    out = {}
    for kind in kinds:
        tool, procs = kind.rstrip("0123456789"), int(kind.lstrip("abcdefghijklmnopqrstuvwxyz") or 2)
        if tool == "openssl":
            each = f"xargs -0 -r -n 2000 -P {procs} openssl dgst -sha256"
            name = f"floor: openssl, {procs} processes"
        elif tool == "python":
            me = shlex.quote(str(Path(__file__).resolve()))
            each = f"xargs -0 -r -n 5000 -P {procs} {shlex.quote(sys.executable)} -S {me} --hash-files"
            name = f"floor: python, {procs} processes x {THREADS} threads"
        else:
            raise ValueError(f"unknown floor {kind!r}")
        out[name] = f"{manifests} & find {q} -type f -print0 | {each} > /dev/null; wait"
    return out


def commands(w: dict[str, Path], checkouts: list[tuple[str, str]], kinds: list[str]) -> dict[str, str]:
    """One round: restic's check, the floors, each checkout's verify --read-all."""
    out = {"peer: restic check --read-data": "restic check --read-data", **floors(w["set"], kinds)}
    for name, path in checkouts:
        out[f"plugback {name}"] = (f"env PYTHONPATH={shlex.quote(path)} {shlex.quote(sys.executable)} -P -m core.cli "
                                   f"verify {shlex.quote(str(w['set']))} --read-all")
    return out


def env_of(w: dict[str, Path]) -> dict:
    from tools import PASSWORD

    return {**os.environ, "PLUGBACK_HOME": str(w["home"]), "RESTIC_REPOSITORY": str(w["restic"]),
            "RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": str(w["work"] / "restic-cache"),
            "PYTHONDONTWRITEBYTECODE": ""}


def prepare(w: dict[str, Path], files: int, seed: int) -> None:
    """Untimed, once: the source, a full backup, a no-change one, a day of changes backed up (plugback and restic)."""
    if (w["set"] / "snapshots").is_dir() and w["restic"].is_dir():
        return
    import make_scale

    env = {**env_of(w), "PYTHONPATH": str(REPO)}
    w["work"].mkdir(parents=True, exist_ok=True)
    if not w["src"].exists():
        make_scale.generate_small(w["src"], files=files, seed=seed)
    backup = [sys.executable, "-P", "-m", "core.cli", "backup", str(w["src"]), "--to", str(w["set"])]
    restic = ["restic", "backup", "--host", "bench", str(w["src"])]
    subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
    for step in ("full", "nochange", "changed"):
        if step == "changed":
            make_scale.mutate_small(w["src"], files=files, day=1, seed=seed)
        for argv in (backup, restic):
            subprocess.run(argv, env=env, check=True, capture_output=True)


def table(results: dict[str, list[dict]]) -> str:
    """Markdown: per command the median wall (CPU), the ratio to restic and to the round's fastest floor."""
    names = list(results)
    rounds = len(results[names[0]])
    floor_names = [n for n in names if n.startswith("floor")]
    rows = ["| command | wall s (each round) | CPU s (each round) | / restic, wall (median) | / floor, wall (median)"
            " | peak RSS MB |", "|---|---|---|---|---|---|"]
    for name in names:
        runs = results[name]
        to_restic = [runs[i]["wall"] / results[names[0]][i]["wall"] for i in range(rounds)]
        to_floor = [runs[i]["wall"] / min(results[f][i]["wall"] for f in floor_names) for i in range(rounds)] \
            if floor_names else [0.0]
        walls, cpus = (", ".join(f"{r[k]:.2f}" for r in runs) for k in ("wall", "cpu"))
        rows.append(f"| {name} | {walls} | {cpus} | {statistics.median(to_restic):.2f}x | "
                    f"{statistics.median(to_floor):.2f}x | {max(r['rss'] for r in runs) / 1e6:.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workdir", default="/var/tmp/pb-floor-verify")
    p.add_argument("--checkout", action="append", default=[], metavar="NAME=DIR",
                   help="a checkout whose verify --read-all is timed in each round (default: this one)")
    p.add_argument("--floors", default="openssl2,openssl8,python2", help="which floors (TOOL + processes)")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from floor_small import cold_args

    p.add_argument("--nodev", action="store_true", help="time through a nodev bind mount of the workdir (root)")
    args = cold_args(p, argv)
    work = Path(args.workdir).resolve()
    prepare(_paths(work), args.files, args.seed)
    if not args.nodev:
        return _rounds(args, _paths(work))
    view = work.parent / (work.name + "-nodev")
    view.mkdir(exist_ok=True)
    subprocess.run(["mount", "--bind", str(work), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,nodev", str(view)], check=True)
        return _rounds(args, _paths(view))
    finally:
        subprocess.run(["umount", str(view)], check=True)
        view.rmdir()


def _paths(work: Path) -> dict[str, Path]:
    return {"work": work, "src": work / "src", "set": work / "set", "restic": work / "restic", "home": work / "home"}


def _rounds(args: argparse.Namespace, w: dict[str, Path]) -> int:
    """Every round timed (the set made already), the table printed; the exit status."""
    from floor_small import DROP, time_commands

    checkouts = [tuple(c.split("=", 1)) for c in args.checkout] or [("this", str(REPO))]
    logs = w["work"] / "logs"
    logs.mkdir(exist_ok=True)
    results: dict[str, dict[str, list]] = {}
    cmds = commands(w, [(n, str(Path(d).resolve())) for n, d in checkouts], args.floors.split(","))
    for rnd in range(args.rounds):
        time_commands("verify", cmds, rnd, "sync" if args.warm else DROP, logs, args.timeout, env_of(w), results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results["verify"]))
    return 0 if all(r["rc"] == 0 for runs in results["verify"].values() for r in runs) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--hash-files"]:   # a python floor's process (run with -S: imports nothing else)
        sys.exit(1 if hash_files(sys.argv[2:]) else 0)
    sys.exit(main())
