"""The floors under issue #11's standard-set goals for the full backup and the restore: the least
work each must do, done by native tools, timed beside ``cp -a`` and plugback in one run on the
standard data set (``make_dataset.py``, ~1 GiB), plus the machine's own speeds they rest on.

The floors are ``floor_small.py``'s, on the standard set instead of many tiny files, hashing with
``openssl dgst -sha256`` (the SHA-NI code Python's hashlib uses) rather than ``sha256sum``:

* **full backup** (goal ≤ 1.2× ``cp -a``): ``cp -a`` the source, ``sha256sum`` every source byte,
  ``sync``, drop the cache, ``sha256sum`` every copied byte (the read-back). Serial, and
  overlapped (source hashing beside the copy, the read-back with two processes).
* **restore** (goal ≤ 1.2× ``cp -a``): ``cp -a`` the set's ``Latest/`` out and ``sha256sum``
  every byte read. Serial, and overlapped (the hashing beside the copy).

The no-change and day-of-changes goals (``--phases nochange,changed``; goal ≤ 1.0× ``rsync -a``):
``rsync -a --delete`` into its mirror, then plugback into its set, each after a cache drop; with
``--before DIR`` (an export of another commit: ``git archive main | tar -x -C DIR``) that
checkout's plugback too, into a set of its own, between the two (interleaved, same run). The
set, the mirror and the before-set are made once (untimed); ``changed`` applies one day of
``make_dataset.mutate`` before each repetition (the days continue across runs in one workdir).

And the machine (``--phases device``): sequential write of 1 GiB (``dd ... conv=fdatasync``),
sequential read of it with the cache dropped (``dd``), and SHA-256 of 1 GiB from memory
(``openssl dgst -sha256`` of zeros through a pipe): the three speeds a read-back backup rests on.
If a floor by itself exceeds 1.2× ``cp -a``, the goal is bounded by the machine.

Nothing is deleted between timed commands: what a repetition replaces goes to WORKDIR/trash,
deleted at the end, and a run first waits until the last big deletion on its file system is out of
the way of new files (``--settle``; ext4 without a journal: see trash.py).

    flock /tmp/pb/bench.lock nice -n 5 .venv/bin/python bench/floor_standard.py --workdir /var/tmp/pb-floor
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import floor_small  # noqa: E402
import make_dataset  # noqa: E402
import trash  # noqa: E402
from tools import PASSWORD, plugback_argv, plugback_env, rmtree  # noqa: E402

PHASES = ("device", "full", "restore", "nochange", "changed")
DEFAULT_PHASES = PHASES[:3]   # (the no-change and day-of-changes phases when asked)
SHA256, hash_tree = floor_small.SHA256, floor_small.hash_tree
floor_beside, beside = floor_small.floor_beside, floor_small.beside


def device(w: dict[str, Path], mib: int, drop: str) -> dict[str, str]:
    """The machine's speeds: write ``mib`` MiB to the drive, read it back cold, hash it warm."""
    f = shlex.quote(str(w["work"] / "dd.bin"))
    return {
        f"write {mib} MiB (dd, fdatasync)": f"dd if=/dev/zero of={f} bs=4M count={mib // 4} conv=fdatasync status=none",
        f"read {mib} MiB cold (dd)": f"{drop} && dd if={f} of=/dev/null bs=4M status=none",
        f"SHA-256 of {mib} MiB from memory ({SHA256.split()[0]})":
            f"dd if=/dev/zero bs=4M count={mib // 4} status=none | {SHA256} > /dev/null",
    }


def incremental(w: dict[str, Path], before: str) -> dict[str, str]:
    """The no-change and day-of-changes commands: rsync, ``before``'s plugback (if given), plugback."""
    q = {k: shlex.quote(str(v)) for k, v in w.items()}
    cli = " ".join(shlex.quote(a) for a in plugback_argv())
    old = (f"env PYTHONPATH={shlex.quote(before)} PLUGBACK_HOME={q['home']}-before "
           f"{shlex.quote(sys.executable)} -P -m core.cli")
    return {"peer: rsync -a": f"rsync -a --delete {q['src']}/ {q['mirror']}/",
            **({"plugback before": f"{old} backup {q['src']} --to {q['set']}-before"} if before else {}),
            "plugback": f"{cli} backup {q['src']} --to {q['set']}"}


def restic_env(w: dict[str, Path]) -> dict[str, str]:
    """restic's repository of the source (``--restic``), as bench/tools.py's Restic keeps one."""
    return {"RESTIC_REPOSITORY": str(w["restic"]), "RESTIC_PASSWORD": PASSWORD,
            "RESTIC_CACHE_DIR": str(w["home"] / "restic-cache")}


def full_peers_env(w: dict[str, Path]) -> dict[str, dict[str, str]]:
    """restic's and borg's repositories for the full phase's peers (``--full-peers``): made empty,
    untimed, before each repetition (:func:`_clear`)."""
    return {"restic": {**restic_env(w), "RESTIC_REPOSITORY": str(w["rfull"])},
            "borg": {"BORG_REPO": str(w["bfull"]), "BORG_BASE_DIR": str(w["home"] / "borg-base"),
                     "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes", "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}}


def _env_prefix(env: dict[str, str]) -> str:
    return "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


def full(w: dict[str, Path], drop: str, old: str, peers: tuple[str, ...]) -> dict[str, str]:
    """The full phase: ``cp -a`` (the goal's peer), ``old``'s plugback (an export: ``--before``),
    this checkout's, restic's and borg's first backups (``peers``), then the floors."""
    q = {k: shlex.quote(str(v)) for k, v in w.items()}
    cli = " ".join(shlex.quote(a) for a in plugback_argv())
    envs = full_peers_env(w)
    return {
        "peer: cp -a": f"cp -a {q['src']} {q['copy']}",
        **({"plugback before": f"{old} backup {q['src']} --to {q['set2']}-before"} if old else {}),
        "plugback": f"{cli} backup {q['src']} --to {q['set2']}",
        **({"restic": f"{_env_prefix(envs['restic'])} restic backup --host bench {q['src']}"}
           if "restic" in peers else {}),
        **({"borg": f"{_env_prefix(envs['borg'])} borg create ::a {q['src']}"} if "borg" in peers else {}),
        "floor serial": (f"cp -a {q['src']} {q['floor']} && {hash_tree(w['src'])} && {drop} && "
                         f"{hash_tree(w['floor'])}"),
        "floor overlapped": (f"( cp -a {q['src']} {q['floor']} & {hash_tree(w['src'])} & wait ) && {drop} && "
                             f"{hash_tree(w['floor'], 2)}"),
        "floor beside": floor_beside(w["src"], beside(w), drop),
    }


def commands(w: dict[str, Path], drop: str, mib: int, before: str = "",
             restic: bool = False, peers: tuple[str, ...] = ()) -> dict[str, dict[str, str]]:
    """Per phase: the peer first, then the floors and plugback (each run after ``drop``).

    ``before``: another checkout (an export of main) whose full backup and restore are timed too,
    beside this one's in each repetition (before it, then after it in every other: :func:`rotated`);
    ``restic``: restic's restore of the same source, after plugback's; ``peers``: restic's and
    borg's full backups (into new repositories)."""
    q = {k: shlex.quote(str(v)) for k, v in w.items()}
    cli = " ".join(shlex.quote(a) for a in plugback_argv())
    # -P: the current folder is not put first on sys.path (run from a checkout, it would shadow ``before``)
    old = f"env PYTHONPATH={shlex.quote(before)} {shlex.quote(sys.executable)} -P -m core.cli" if before else ""
    restic_cmd = "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in restic_env(w).items()) + " restic"
    return {
        "device": device(w, mib, drop),
        "full": full(w, drop, old, peers),
        "restore": {
            # The full phase's copy when it ran (else the source: the same bytes, on the same disk).
            "peer: cp -a": f"cp -a {q['copy'] if w['copy'].exists() else q['src']} {q['out']}/peer",
            "floor serial": f"cp -a {q['latest']} {q['out']}/floor && {hash_tree(w['latest'])}",
            "floor overlapped": f"cp -a {q['latest']} {q['out']}/floor & {hash_tree(w['latest'])} & wait",
            **({"plugback before": f"{old} restore {q['set']} {q['out']}/before"} if old else {}),
            "plugback": f"{cli} restore {q['set']} {q['out']}/plugback",
            **({"restic": f"{restic_cmd} restore latest --target {q['out']}/restic"} if restic else {}),
        },
        "nochange": incremental(w, before),
        "changed": incremental(w, before),
    }


def prepare(args, w: dict[str, Path]) -> dict:
    """Untimed: the standard data set as the source and a plugback set of it (its ``Latest/``)."""
    stats: dict = {}
    w["work"].mkdir(parents=True, exist_ok=True)
    if not w["src"].exists():
        stats = make_dataset.generate(w["src"], scale=args.scale, seed=args.seed).as_dict()
    if not (w["set"] / "Latest").exists():
        env = {**os.environ, **plugback_env(), "PLUGBACK_HOME": str(w["home"])}
        subprocess.run(plugback_argv() + ["backup", str(w["src"]), "--to", str(w["set"])],
                       env=env, check=True, capture_output=True)
    if args.restic and not (w["restic"] / "config").exists():
        env = {**os.environ, **restic_env(w)}
        subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
        subprocess.run(["restic", "backup", "--host", "bench", str(w["src"])], env=env, check=True,
                       capture_output=True)
    return stats


def prepare_incremental(args, w: dict[str, Path]) -> None:
    """Untimed: rsync's mirror, and ``--before``'s own set (its first backup by its own code)."""
    if not w["mirror"].exists():
        subprocess.run(["rsync", "-a", f"{w['src']}/", f"{w['mirror']}/"], check=True)
    before_set = w["set"].with_name(w["set"].name + "-before")
    if args.before and not (before_set / "Latest").exists():
        env = {**os.environ, "PYTHONPATH": args.before, "PLUGBACK_HOME": f"{w['home']}-before"}
        subprocess.run([sys.executable, "-P", "-m", "core.cli", "backup", str(w["src"]), "--to", str(before_set)],
                       env=env, check=True, capture_output=True)


def next_day(w: dict[str, Path], seed: int) -> dict:
    """Untimed, before each repetition of ``changed``: the next day of changes to the source."""
    days = w["work"] / "days"
    day = int(days.read_text()) + 1 if days.exists() else 1
    days.write_text(str(day))
    return make_dataset.mutate(w["src"], day=day, seed=seed)


def _clear(phase: str, w: dict[str, Path], bin_: trash.Trash, peers: tuple[str, ...] = ()) -> None:
    """Untimed, before each repeat: what the phase's commands must find absent, moved to the trash
    (the full phase's ``copy`` stays until the end: the restore's peer copies it back)."""
    if phase in ("full", "done"):
        for key in ("copy", "floor", "set2", "rfull", "bfull"):
            bin_.put(w[key])
        bin_.put(w["set2"].with_name(w["set2"].name + "-before"))
        bin_.put(beside(w))
    if phase == "full" and peers:   # (empty repositories: their init is not timed)
        envs = full_peers_env(w)
        for tool, init in (("restic", ["restic", "init"]), ("borg", ["borg", "init", "--encryption=none"])):
            if tool in peers:
                subprocess.run(init, env={**os.environ, **envs[tool]}, check=True, capture_output=True)
    bin_.put(w["out"])
    w["out"].mkdir()
    rmtree(w["work"] / "dd.bin")   # (one file: one inode freed)


def run(args) -> dict:
    work = Path(args.workdir).resolve()
    w = {k: work / k for k in ("src", "set", "set2", "copy", "floor", "out", "home", "mirror", "restic", "rfull",
                               "bfull")}
    w["work"] = work
    print(json.dumps(prepare(args, w)), flush=True)
    w["latest"] = w["set"] / "Latest"
    env = {**os.environ, **plugback_env(), "PLUGBACK_HOME": str(w["home"])}
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    drop = "sync" if args.warm else floor_small.DROP
    chosen = args.phases.split(",") if args.phases else list(DEFAULT_PHASES)
    if {"nochange", "changed"} & set(chosen):
        prepare_incremental(args, w)
    results: dict[str, dict[str, list]] = {}
    peers = tuple(p for p in args.full_peers.split(",") if p)
    bin_ = trash.Trash(work / "trash")
    trash.settle(work, args.settle, lambda msg: print(msg, flush=True), source=w["src"])
    try:
        for phase, by_name in commands(w, drop, args.device_mib, args.before, args.restic, peers).items():
            if phase not in chosen:
                continue
            if args.no_floors:   # (an A/B: the peer and the plugbacks only, shorter under the lock)
                by_name = {k: v for k, v in by_name.items() if not k.startswith("floor ")}
            for rep in range(args.repeat):
                _clear(phase, w, bin_, peers)
                if phase == "changed":
                    print(json.dumps(next_day(w, args.seed)), flush=True)
                floor_small.time_commands(phase, rotated(by_name, rep), rep, drop, logs, args.timeout, env, results,
                                          width=8)
        _clear("done", w, bin_)
    finally:
        bin_.empty()
    return results


rotated = floor_small.rotated   # (before and this one in turn: one rule for both floor scripts)


def speeds(results: dict, mib: int) -> str:
    """The device rows as MB/s (median wall)."""
    lines = []
    for name, runs in results.get("device", {}).items():
        wall = sorted(r["wall"] for r in runs)[len(runs) // 2]
        lines.append(f"{name}: {mib * 1.048576 / wall:.0f} MB/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--no-floors", action="store_true", help="leave out the floors (an A/B of --before and this "
                   "checkout against the peer)")
    p.add_argument("--scale", type=float, default=1.0, help="the standard data set's size; 1.0 is about 1 GiB")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--workdir", default="/var/tmp/pb-floor-standard")
    p.add_argument("--phases", default="", help=f"comma-separated subset of {','.join(PHASES)} "
                   f"(default {','.join(DEFAULT_PHASES)}; restore alone: its peer copies the source, else full's copy)")
    p.add_argument("--device-mib", type=int, default=1024, help="how much the device phase writes and reads")
    p.add_argument("--before", default="", help="full, restore, nochange, changed: also time this checkout's plugback (an "
                   "export of main: git archive main | tar -x -C DIR) beside this one's in each repetition, "
                   "before and after it in turn (nochange, changed: into a set of its own)")
    p.add_argument("--restic", action="store_true", help="restore phase: also time restic's restore of the "
                   "source (its repository made, untimed, in WORKDIR/restic)")
    p.add_argument("--full-peers", default="", help="full: also time restic's and/or borg's first backup "
                   "(restic,borg: into new repositories in WORKDIR, made untimed before each repetition)")
    p.add_argument("--settle", type=float, default=trash.SHADOW_SECONDS, help="first wait until this many seconds "
                   "after the last big deletion noted on WORKDIR's file system (ext4 without a journal; 0: do not wait)")
    args = floor_small.cold_args(p, argv)
    results = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(floor_small.table(results))
    print(speeds(results, args.device_mib))
    return 0 if all(r["rc"] == 0 for by in results.values() for runs in by.values() for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
