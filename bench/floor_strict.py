"""A strict machine bound under issue #11's full-backup goals: what any backup that copies the set
AND reads every copied byte back cold from the drive must at least cost on this machine, timed in
the same rounds as ``cp -a`` (the goals' peer) and plugback.

The floors in ``floor_small.py`` and ``floor_standard.py`` are pipelines (copy, flush, drop, read
back, in some order): a cleverer engine could overlap more than they do, so they do not bound
every design. A read-back backup's work contains ``cp -a``'s (every file created, every byte
written, the metadata set), the data made durable (what is read back from the drive must be on
it), and a cold read of as many files and bytes as it wrote. Here that work runs with no
dependency between its parts, at once: ``cp -a`` into a new folder and, beside it from the same
instant, a cold read of an *equal tree already on the drive* (the copy the round's previous
command wrote), then ``sync -f`` of the drive once ``cp`` ends. A real backup can only read back
what it has already written and flushed, so it overlaps less than this, never more. The bound is
as low as the way the work is done is fast: so the same work is timed done three ways ((b), (b'),
(c) below) and the fastest is the bound; a faster way, if there is one, would lower it further.

The commands of one round, each after ``sync; echo 3 > /proc/sys/vm/drop_caches`` (``--warm``: no
drop, not root, for the smoke test), in an order rotated per round:

* ``cp -a`` — the goal's peer, as ``bench/run.py`` times it: no flush (its dirty pages are
  written back after it exits: not its time);
* ``(a) cp -a; sync`` — the copy made durable;
* ``(a')`` — (a) with the source read ahead beside ``cp`` (``cat`` of every source file, one
  process): ``cp -a`` reads one file at a time and leaves a cold drive idle between its reads;
* ``(b) cp -a + cold read; sync`` — (a) with the old copy read beside it (``find -print0 | xargs -0
  -n 2000 -P JOBS cat > /dev/null``: GNU ``cat`` really reads into /dev/null, GNU ``tar`` does not);
* ``(b')`` — (b) with the source read ahead as in (a'): the work of (b), done as a backup that
  reads its sources ahead (plugback does) can do it;
* ``(c) (b') with SHA-256`` — (b') with ``openssl dgst -sha256`` (SHA-NI, as hashlib) in place of
  both ``cat``s: every source byte and every old-copy byte hashed. The source is read twice (by
  ``cp`` and by the hash, mostly from the page cache): a little more work than a backup that
  hashes what it copies;
* ``plugback NAME`` — each ``--checkout``'s ``backup SRC --to`` a new set (an export of main:
  ``git archive main | tar -x -C DIR``).

Each command's wall time, when its copy ended, when its ``sync`` ended, when the reader ended, its
CPU (the children's rusage), the bytes the drive read and wrote meanwhile (``/sys/dev/block``: the
proof the reader read) and the load. What makes the bound honest, and what it cannot control:
docs/performance.md's section on it. ``--device``: the drive's own speeds (1 GiB written with
fdatasync, read cold, both at once; SHA-256 from memory; the source's largest file read cold).
``--verify``: the same method for ``verify --read-all`` of a small-files set against ``restic check
--read-data``: the set's files read cold as the set holds them (``cat``, 2 and 8 processes), hashed
(``openssl``, 8), each checkout's verify, in rotated rounds.

Nothing is deleted between timed commands (each copy and set stays until the run ends, then goes
through ``trash.py``); a run first waits out the last big deletion on its file system.

    flock /tmp/pb/bench.lock nice -n 5 .venv/bin/python bench/floor_strict.py --dataset standard \\
        --workdir /var/tmp/pb-strict --rounds 3 --checkout main=/var/tmp/pb-strict/main --json std.json
    .venv/bin/python bench/floor_strict.py --report std.json more.json   # rounds of several runs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import trash  # noqa: E402
from floor_small import DROP, SHA256  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PEER, A, B, C = "cp -a", "(a) cp -a; sync", "(b) cp -a + cold read; sync", "(c) (b') with SHA-256"
A2, B2 = "(a') (a) + source read ahead", "(b') (b) + source read ahead"
COPIES = (PEER, A, A2, B, B2, C)   # the commands whose copy a later reader may read as its old tree
VERIFY_PEER = "restic check --read-data"


def reader(tree: Path, jobs: int, hashing: bool) -> str:
    """Shell: every regular file below ``tree`` read (``cat``) or SHA-256'd (:data:`SHA256`) by
    ``jobs`` processes, 2,000 files each, into /dev/null."""
    tool = SHA256 if hashing else "cat"
    return f"find {shlex.quote(str(tree))} -type f -print0 | xargs -0 -r -n 2000 -P {jobs} {tool} > /dev/null"


def spec(name: str, src: Path, dst: Path, old: Path, jobs: int, checkouts: dict[str, str],
         home: Path) -> tuple[str, list[str], bool]:
    """One command: (the writer, the readers started beside it, whether ``sync -f`` follows the writer)."""
    cp = f"cp -a {shlex.quote(str(src))} {shlex.quote(str(dst))}"
    if name == PEER:
        return cp, [], False
    if name == A:
        return cp, [], True
    if name == B:
        return cp, [reader(old, jobs, False)], True
    if name == A2:
        return cp, [reader(src, 1, False)], True
    if name == B2:
        return cp, [reader(src, 1, False), reader(old, jobs, False)], True
    if name == C:
        return cp, [reader(src, 1, True), reader(old, jobs, True)], True
    checkout = checkouts[name.removeprefix("plugback ")]
    return (f"env PYTHONPATH={shlex.quote(checkout)} PLUGBACK_HOME={shlex.quote(str(home))} "
            f"PYTHONDONTWRITEBYTECODE= {shlex.quote(sys.executable)} -P -m core.cli backup "
            f"{shlex.quote(str(src))} --to {shlex.quote(str(dst))}"), [], False


def disk_stat(where: Path) -> tuple[int, int]:
    """Bytes read and written so far by the block device holding ``where`` (0, 0 if unknown)."""
    st = os.stat(where)
    try:
        fields = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/stat").read_text().split()
    except OSError:
        return 0, 0
    return int(fields[2]) * 512, int(fields[6]) * 512


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_one(writer: str, readers: list[str], sync_after: bool, dst: Path, log: Path, timeout: float) -> dict:
    """Start the writer and the readers at once; ``sync -f`` once the writer ends; wait for all.
    Returns the wall time, each part's end, the CPU of all of them, the drive's bytes, the rc."""
    ends: dict[str, float] = {}
    rcs: list[int] = []
    where = dst.parent
    read0, written0 = disk_stat(where)
    cpu0 = _children_cpu()
    load = os.getloadavg()[0]
    t0 = time.monotonic()

    def part(key: str, cmd: str, then_sync: bool) -> None:
        with open(log, "a") as out:
            try:
                rc = subprocess.run(["sh", "-c", cmd], stdout=out, stderr=out, timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                rc = -9
            ends[key] = time.monotonic() - t0
            rcs.append(rc)
            if then_sync:
                rcs.append(subprocess.run(["sync", "-f", str(where)], stdout=out, stderr=out).returncode)
                ends["sync"] = time.monotonic() - t0

    threads = [threading.Thread(target=part, args=("copy", writer, sync_after))]
    threads += [threading.Thread(target=part, args=(f"reader{i}", cmd, False)) for i, cmd in enumerate(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    read1, written1 = disk_stat(where)
    return {"wall": wall, "cpu": _children_cpu() - cpu0, "ends": ends, "read_mb": (read1 - read0) / 1e6,
            "written_mb": (written1 - written0) / 1e6, "load": load, "rc": max(rcs)}


def round_order(names: list[str], rnd: int) -> list[str]:
    """The round's order: ``names`` rotated by ``rnd`` (each command meets each position in turn)."""
    k = rnd % len(names)
    return names[k:] + names[:k]


def one_round(rnd: int, names: list[str], w: dict[str, Path], old: Path, args, checkouts: dict[str, str],
              drop: str) -> tuple[dict[str, dict], Path]:
    """Every command once, in this round's order, each after ``drop``; (the results, the newest copy)."""
    out: dict[str, dict] = {}
    for position, name in enumerate(round_order(names, rnd)):
        slug = "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")
        dst = w["work"] / f"r{rnd}-{slug}"
        writer, readers, sync_after = spec(name, w["src"], dst, old, args.jobs, checkouts, w["home"])
        subprocess.run(["sh", "-c", drop], check=True)
        r = run_one(writer, readers, sync_after, dst, w["work"] / "logs" / f"r{rnd}.log", args.timeout)
        r["old"], r["position"] = (str(old) if readers else ""), position
        out[name] = r
        parts = " ".join(f"{k} {v:.2f}" for k, v in sorted(r["ends"].items(), key=lambda kv: kv[1]))
        print(f"[{time.strftime('%H:%M:%S')}] round {rnd} {name:30} {r['wall']:7.2f} s wall {r['cpu']:6.2f} s CPU  "
              f"read {r['read_mb']:6.0f} MB written {r['written_mb']:6.0f} MB  ({parts})  rc {r['rc']}  "
              f"load {r['load']:.1f}", flush=True)
        if name in COPIES and r["rc"] == 0:
            old = dst   # the next (b) or (c) reads the tree written last: the host saw it lately too
    return {n: out[n] for n in names}, old


def device(work: Path, mib: int, drop: str, log: Path, src: Path) -> dict[str, dict]:
    """The drive's own speeds: ``mib`` MiB written with fdatasync, read cold, both at once (a cold
    read of that file beside a second write), and SHA-256 of the file from the page cache; and the
    source's largest file read cold (written before the run: whether the host still caches it)."""
    f, g = (shlex.quote(str(work / n)) for n in ("dd-1.bin", "dd-2.bin"))
    count = mib // 4
    big = max((p for p in src.rglob("*") if p.is_file() and not p.is_symlink()), key=lambda p: p.stat().st_size)
    mb = big.stat().st_size / 1e6
    steps = {
        f"read the source's largest file cold ({mb:.0f} MB, dd)": (f"dd if={shlex.quote(str(big))} of=/dev/null "
                                                                   "bs=4M status=none", []),
        f"write {mib} MiB, fdatasync (dd)": (f"dd if=/dev/zero of={f} bs=4M count={count} conv=fdatasync status=none",
                                            []),
        f"read {mib} MiB cold (dd)": (f"dd if={f} of=/dev/null bs=4M status=none", []),
        f"write {mib} MiB, fdatasync + read {mib} MiB cold, at once":
            (f"dd if=/dev/zero of={g} bs=4M count={count} conv=fdatasync status=none",
             [f"dd if={f} of=/dev/null bs=4M status=none"]),
        f"SHA-256 of {mib} MiB from the page cache ({SHA256.split()[0]})": (f"{SHA256} {f} > /dev/null", []),
    }
    out = {}
    for name, (writer, readers) in steps.items():
        if not name.startswith("SHA-256"):
            subprocess.run(["sh", "-c", drop], check=True)
        else:
            subprocess.run(["sh", "-c", f"cat {f} > /dev/null"], check=True)   # (warm: the hash alone)
        r = out[name] = run_one(writer, readers, False, work / "dd-1.bin", log, 600)
        size = mb if name.startswith("read the source") else mib * 1.048576
        print(f"device: {name}: {r['wall']:.2f} s ({size / r['wall']:.0f} MB/s), ends "
              + ", ".join(f"{k} {v:.2f}" for k, v in r["ends"].items()) + f", load {r['load']:.1f}", flush=True)
    for n in ("dd-1.bin", "dd-2.bin"):
        (work / n).unlink(missing_ok=True)
    return out


def prepare(args, w: dict[str, Path]) -> Path:
    """Untimed: the source (unless ``--src``) and a first copy of it for round 0's readers."""
    w["work"].mkdir(parents=True, exist_ok=True)
    (w["work"] / "logs").mkdir(exist_ok=True)
    if not w["src"].exists():
        if args.dataset == "standard":
            import make_dataset
            make_dataset.generate(w["src"], scale=args.scale, seed=args.seed)
        else:
            import make_scale
            make_scale.generate_small(w["src"], files=args.files, seed=args.seed)
    first = w["work"] / "old0"
    if not first.exists():
        subprocess.run(["cp", "-a", str(w["src"]), str(first)], check=True)
    return first


def ratios(rounds: list[dict[str, dict]], name: str, to: str) -> list[float]:
    """``name``'s wall over ``to``'s, per round where both ran."""
    return [r[name]["wall"] / r[to]["wall"] for r in rounds if name in r and to in r]


def table(rounds: list[dict[str, dict]]) -> str:
    """Markdown: per command the median wall and CPU, the drive's MB, the same-round ratios to the
    peer (the first command of round 0: ``cp -a``, restic's check) as median, min–max and each
    round's, and the medians of those to the next three commands ((a), (b), (c); the verify's floors)."""
    names = sorted(dict.fromkeys(n for r in rounds for n in r),
                   key=lambda n: COPIES.index(n) if n in COPIES else len(COPIES))   # (stable: in order met)
    peer = next((n for n in (PEER, VERIFY_PEER) if n in names), names[0])
    against = [n for n in (A, B, C) if n in names] if peer == PEER else [n for n in names if n != peer][:3]
    rows = [f"| command | wall s (median) | CPU s | read MB | written MB | / {peer}, same round: median (min–max) | "
            + " | ".join(f"/ {n.split()[0] if peer == PEER else n}" for n in against) + f" | / {peer}, each round | load |",
            "|---|---|---|---|---|---|" + "---|" * len(against) + "---|---|"]
    for name in names:
        mine = [r[name] for r in rounds if name in r]
        med = {k: statistics.median(x[k] for x in mine) for k in ("wall", "cpu", "read_mb", "written_mb")}
        to_cp = ratios(rounds, name, peer)
        spread = f"{statistics.median(to_cp):.2f}x ({min(to_cp):.2f}–{max(to_cp):.2f})" if to_cp else ""
        to = [f"{statistics.median(x):.2f}x" if x else "" for x in (ratios(rounds, name, n) for n in against)]
        bad = sum(1 for x in mine if x["rc"] != 0)
        rows.append(f"| {name}{f' ({bad} failed)' if bad else ''} | {med['wall']:.2f} | {med['cpu']:.2f} | "
                    f"{med['read_mb']:.0f} | {med['written_mb']:.0f} | {spread} | {' | '.join(to)} | "
                    f"{', '.join(f'{x:.2f}' for x in to_cp)} | "
                    f"{min(x['load'] for x in mine):.1f}–{max(x['load'] for x in mine):.1f} |")
    return "\n".join(rows)


def verify_commands(w: dict[str, Path], checkouts: dict[str, str]) -> dict[str, str]:
    """``--verify``: restic reading every pack (``check --read-data``), the set's files read cold as
    the set holds them (``cat``, 2 and 8 processes), hashed (``openssl``, 8), each checkout's
    ``verify --read-all`` (the set and the repository: ``floor_verify.py``'s, made on first use)."""
    import floor_verify

    env = "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in floor_verify.env_of(w).items()
                            if k.startswith("RESTIC_") or k == "PLUGBACK_HOME")
    bset = shlex.quote(str(w["set"]))
    out = {VERIFY_PEER: f"{env} restic check --read-data"}
    for jobs in (2, 8):
        out[f"cold read of the set's files (cat, {jobs} processes)"] = reader(w["set"], jobs, False)
    out["SHA-256 of the set's files (openssl, 8 processes)"] = reader(w["set"], 8, True)
    for name, path in checkouts.items():
        out[f"plugback {name}"] = (f"{env} PYTHONPATH={shlex.quote(path)} PYTHONDONTWRITEBYTECODE= "
                                   f"{shlex.quote(sys.executable)} -P -m core.cli verify {bset} --read-all")
    return out


def verify_rounds(args, work: Path, checkouts: dict[str, str], drop: str) -> list[dict[str, dict]]:
    """``--verify``: every command once per round, the order rotated, each after ``drop``."""
    import floor_verify

    w = {"work": work, "src": work / "src", "set": work / "set", "restic": work / "restic", "home": work / "home"}
    floor_verify.prepare(w, args.files, args.seed)
    (work / "logs").mkdir(exist_ok=True)
    commands = verify_commands(w, checkouts)
    rounds = []
    for rnd in range(args.first_round, args.first_round + args.rounds):
        out = {}
        for name in round_order(list(commands), rnd):
            subprocess.run(["sh", "-c", drop], check=True)
            r = out[name] = run_one(commands[name], [], False, w["set"], work / "logs" / f"v{rnd}.log", args.timeout)
            print(f"[{time.strftime('%H:%M:%S')}] round {rnd} {name:50} {r['wall']:7.2f} s wall {r['cpu']:6.2f} s CPU  "
                  f"read {r['read_mb']:6.0f} MB  rc {r['rc']}  load {r['load']:.1f}", flush=True)
        rounds.append({n: out[n] for n in commands})   # (the peer first: the table's ratios)
    return rounds


def run(args) -> dict:
    work = Path(args.workdir).resolve()
    w = {"work": work, "src": Path(args.src).resolve() if args.src else work / "src", "home": work / "home"}
    checkouts = dict(c.split("=", 1) for c in args.checkout) or {"this": str(REPO)}
    checkouts = {k: str(Path(v).resolve()) for k, v in checkouts.items()}
    drop = "sync" if args.warm else DROP
    result: dict = {"meta": {"src": str(w["src"]), "jobs": args.jobs, "checkouts": checkouts,
                             "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}, "rounds": []}
    if args.verify:
        result["rounds"] = verify_rounds(args, work, checkouts, drop)
        return result
    old = prepare(args, w)
    names = [n for n in COPIES if n not in args.skip] + [f"plugback {k}" for k in checkouts]
    bin_ = trash.Trash(work / "trash")
    trash.settle(work, args.settle, lambda msg: print(msg, flush=True), source=w["src"])
    try:
        if args.device:
            result["device"] = device(work, args.device_mib, drop, work / "logs" / "device.log", w["src"])
        for rnd in range(args.first_round, args.first_round + args.rounds):
            out, old = one_round(rnd, names, w, old, args, checkouts, drop)
            result["rounds"].append(out)
    finally:
        if not args.keep:
            for entry in sorted(work.glob("r[0-9]*-*")):
                bin_.put(entry)
            bin_.empty()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", choices=("standard", "small"), default="standard",
                   help="the source made on first use: make_dataset.py's (--scale) or make_scale.py small (--files)")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--src", default="", help="an existing source folder instead (read only)")
    p.add_argument("--workdir", default="/var/tmp/pb-floor-strict")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--first-round", type=int, default=0, help="the first round's number (its order's rotation): "
                   "a second run continues the first's rotation")
    p.add_argument("--jobs", type=int, default=2, help="processes reading (hashing) the old copy")
    p.add_argument("--checkout", action="append", default=[], metavar="NAME=DIR",
                   help="a checkout whose full backup is timed in each round (default: this one)")
    p.add_argument("--skip", default=[], type=lambda v: [n for n in COPIES if n.split()[0] in v.split(",")],
                   help="leave out these commands, by their tag: (a'),(b') ...")
    p.add_argument("--verify", action="store_true", help="instead: verify --read-all of a small-files set "
                   "(--files; floor_verify.py's, made in WORKDIR on first use) against restic check --read-data and "
                   "the set's files read cold")
    p.add_argument("--device", action="store_true", help="first time the drive's own speeds (--device-mib)")
    p.add_argument("--device-mib", type=int, default=1024)
    p.add_argument("--keep", action="store_true", help="keep the copies and sets (default: deleted at the end)")
    p.add_argument("--settle", type=float, default=trash.SHADOW_SECONDS, help="first wait until this many seconds "
                   "after the last big deletion noted on WORKDIR's file system (0: do not wait)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--warm", action="store_true", help="do not drop the page cache (not root; a smoke test)")
    p.add_argument("--report", nargs="+", metavar="JSON", help="print the table of these runs' rounds together")
    args = p.parse_args(argv)
    if args.report:
        print(table([r for f in args.report for r in json.loads(Path(f).read_text())["rounds"]]))
        return 0
    if not args.warm and os.geteuid() != 0:
        p.error("must run as root: the page cache is dropped before every timed command (or --warm)")
    result = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(table(result["rounds"]))
    return 0 if all(r["rc"] == 0 for rnd in result["rounds"] for r in rnd.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
