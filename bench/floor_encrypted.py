"""Issue #11's "encrypted full backup ≤ restic's": plugback's encrypted full backup and restore of the
standard data set (``make_dataset.py``, ~1 GiB) beside restic's, with a second plugback checkout
(an export of main: the "before") interleaved, cache dropped before every command.

Each repetition runs, in this order: restic's backup into a new repository, each plugback's
``backup --encrypt`` into a new set (read-back included, a final ``sync`` inside the timing),
then restic's restore and each plugback's restore of its own set. CPU seconds (user + sys) and
same-run ratios count on a shared machine; the 1-minute load is printed beside each result.

Nothing is deleted between or inside timed commands (ext4 without a journal: files created right
after a big deletion cost more, see trash.py): what a command must find absent (the repository, the
set, the restore's target) is moved to WORKDIR/trash first, untimed, and the trash is deleted after
the last command; a run first waits until the last big deletion noted on WORKDIR's file system is
370 s old (``--settle``).

    git archive main | tar -x -C /var/tmp/pb-enc/before   # the "before" checkout
    git archive enc | tar -x -C /var/tmp/pb-enc/after     # the "after" checkout
    flock /tmp/pb/bench.lock nice -n 5 .venv/bin/python bench/floor_encrypted.py \\
        --workdir /var/tmp/pb-enc/bench --before /var/tmp/pb-enc/before --after /var/tmp/pb-enc/after
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import floor_small  # noqa: E402
import make_dataset  # noqa: E402
import trash  # noqa: E402
from tools import PASSWORD, REPO  # noqa: E402


def _plugback(code: Path, args: str) -> str:
    """Shell: plugback from the checkout ``code`` (``-P``: nothing from the working directory)."""
    return f"PYTHONPATH={shlex.quote(str(code))} {shlex.quote(sys.executable)} -P -m core.cli {args}"


def commands(w: dict[str, Path], checkouts: dict[str, Path]) -> dict[str, dict[str, tuple[str, Path]]]:
    """Per phase, the commands in the order they run: restic first, then each checkout's plugback;
    each with the path it must find absent (moved to the trash before it, untimed)."""
    q = {k: shlex.quote(str(v)) for k, v in w.items()}
    backup = {"restic backup": (f"restic init -q && restic backup -q --host bench {q['data']} && sync", w["restic"])}
    restore = {"restic restore": (f"restic restore -q latest --target {q['out']} && sync", w["out"])}
    for name, code in checkouts.items():
        s = w["work"] / f"set-{name}"
        run_backup = _plugback(code, f"backup {q['data']} --to {shlex.quote(str(s))} --encrypt")
        run_restore = _plugback(code, f"restore {shlex.quote(str(s))} {q['out']}")
        backup[f"plugback {name}"] = (f"{run_backup} > /dev/null && sync", s)
        restore[f"plugback {name}"] = (f"{run_restore} > /dev/null && sync", w["out"])
    return {"encrypted full": backup, "encrypted restore": restore}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="/var/tmp/pb-enc/bench")
    p.add_argument("--before", default="", help="a second checkout (an export of main), timed first")
    p.add_argument("--after", default=str(REPO), help="the checkout under test (default: this one; "
                   "an export of the branch: git archive BRANCH | tar -x -C DIR)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--warm", action="store_true", help="do not drop the page cache (not root; a smoke test)")
    p.add_argument("--settle", type=float, default=trash.SHADOW_SECONDS, help="first wait until this many seconds "
                   "after the last big deletion noted on WORKDIR's file system (ext4 without a journal; 0: do not wait)")
    args = p.parse_args(argv)
    if not args.warm and os.geteuid() != 0:
        p.error("must run as root: the page cache is dropped before every timed command (or --warm)")
    work = Path(args.workdir)
    w = {"work": work, "data": work / "data", "restic": work / "restic", "out": work / "out"}
    work.mkdir(parents=True, exist_ok=True)
    if not w["data"].exists():
        make_dataset.generate(w["data"], scale=args.scale, seed=42)
    checkouts = {"before": Path(args.before)} if args.before else {}
    checkouts["after"] = Path(args.after)
    env = {**os.environ, "PLUGBACK_PASSPHRASE": PASSWORD, "RESTIC_PASSWORD": PASSWORD,
           "RESTIC_REPOSITORY": str(w["restic"]), "PYTHONDONTWRITEBYTECODE": ""}
    results: dict[str, dict[str, list]] = {}
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    bin_ = trash.Trash(work / "trash")
    trash.settle(work, args.settle, lambda msg: print(msg, flush=True), source=w["data"])
    try:
        for rep in range(args.repeat):
            for phase, cmds in commands(w, checkouts).items():
                for name, (script, absent) in cmds.items():
                    bin_.put(absent)
                    floor_small.time_commands(phase, {name: script}, rep, "sync" if args.warm else floor_small.DROP,
                                              logs, args.timeout, env, results, 17)
        print(floor_small.table(results))
    finally:
        for name in ("out", "restic"):
            bin_.put(w[name])
        bin_.empty()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
