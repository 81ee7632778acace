"""Full backups only, into a new remote folder each, interleaved: before, plugback, restic (issue #13).

    flock /tmp/pb/bench.lock nice -n 5 .venv/bin/python bench/remote_full.py --checkout DIR --rounds 10
    flock /tmp/pb/bench.lock nice -n 5 .venv/bin/python bench/remote_full.py --checkout DIR --rounds 6 --dataset 0.1

The full-backup column of bench/remote_set.py with more rounds and nothing else (its
source, loopback WebDAV server, commands and timing), for a shared machine where single
runs spread as much as the tools differ: prints each tool's median wall and CPU seconds
and the median of the same-round ratios. Numbers: docs/performance.md, "Remote sets,
third pass" and "Remote sets, fourth pass". Each tool runs ``python -P -m core.cli`` with
its checkout on PYTHONPATH (bench/remote_set.py), so "before" is the checkout given, not
the folder the script runs from.

Where a set comes from (``--mode``): restic's repository is made by ``restic init`` before its
backup; plugback's first ``backup --to`` makes its set (the passphrase's scrypt, ``plugback.json``,
the lock) as part of the run. ``first`` (the default, as every earlier pass measured) times
plugback's first backup against restic's backup alone and also reports restic's ``init`` +
``backup``, the same work plugback's run does; ``existing`` makes every tool's set untimed first
(``restic init``; plugback backs up an empty folder) and times a full backup of the source into
it: each tool then opens its set (its KDF) and writes the whole source.

Nothing is deleted between timed commands: each backup's remote folder goes to the work folder's
trash, deleted with it after the last round (bench/remote_set.py ``work_folder``; ``--settle``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from bench import remote_set, trash  # noqa: E402
from bench.remote_set import ROOT, _commands, compile_checkouts, make_dataset, make_source, timed  # noqa: E402
from tests.support.rclone import RcloneWorld  # noqa: E402

TOOLS = ("before", "plugback", "restic")


def rounds(source: Path, work: Path, checkout: Path, n: int, mode: str,
           bin_: trash.Trash) -> dict[str, list[tuple[float, float]]]:
    world = RcloneWorld(work / "rclone")
    server = world.serve_webdav(work / "served")
    world.add_webdav("wd", server)
    assert server.proc is not None
    env = {**os.environ, "RCLONE_CONFIG": str(world.config), "PLUGBACK_PASSPHRASE": "bench passphrase",
           "RESTIC_PASSWORD": "bench passphrase", "PLUGBACK_HOME": str(work / "home")}
    res: dict[str, list[tuple[float, float]]] = {t: [] for t in (*TOOLS, "restic+init")}
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    try:
        for i in range(n):
            for tool in TOOLS:
                out = work / f"{tool}{i}"
                backup, _, extra = _commands(tool, source, out, checkout)
                if tool == "restic":
                    init = timed(["restic", "-r", f"rclone:wd:{out.name}", "init"], env, server.proc.pid)
                elif mode == "existing":
                    timed(_commands(tool, empty, out, checkout)[0], {**env, **extra}, server.proc.pid)
                res[tool].append(timed(backup, {**env, **extra}, server.proc.pid))
                if tool == "restic":
                    res["restic+init"].append((res[tool][-1][0] + init[0], res[tool][-1][1] + init[1]))
                bin_.put(work / "served" / out.name)
    finally:
        world.close()
    return res


def report(res: dict[str, list[tuple[float, float]]]) -> None:
    for tool, rows in res.items():
        w, c = [r[0] for r in rows], [r[1] for r in rows]
        print(f"{tool:9} wall median {statistics.median(w):.2f} [{min(w):.2f}-{max(w):.2f}]  "
              f"cpu median {statistics.median(c):.2f} [{min(c):.2f}-{max(c):.2f}]")
    for a, b in (("plugback", "before"), ("restic", "before"), ("plugback", "restic"), ("plugback", "restic+init")):
        if a not in res or b not in res:
            continue
        for i, what in ((0, "wall"), (1, "cpu")):
            ratios = [x[i] / y[i] for x, y in zip(res[a], res[b], strict=True)]
            print(f"{a}/{b} {what}: median {statistics.median(ratios):.2f}  " + " ".join(f"{r:.2f}" for r in ratios))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkout", type=Path, required=True, help="another checkout of plugback: the tool 'before'")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--dataset", type=float, metavar="SCALE", help="bench/make_dataset.py's tree at SCALE")
    ap.add_argument("--mode", choices=("first", "existing"), default="first",
                    help="first: plugback's backup makes its set (restic's init untimed, also reported added); "
                         "existing: every set made untimed first, then the full backup timed")
    remote_set.settle_arg(ap)
    args = ap.parse_args()
    with remote_set.work_folder("pb-remote-full-") as (tmp, bin_):
        source = tmp / "src" / "data"
        make_dataset(source, args.dataset) if args.dataset else make_source(source, 300, 4)
        compile_checkouts(ROOT, args.checkout)
        remote_set.settle(tmp, args.settle, source)
        print(f"load before: {os.getloadavg()[0]:.1f}", file=sys.stderr)
        res = rounds(source, tmp, args.checkout, args.rounds, args.mode, bin_)
        print(f"load after: {os.getloadavg()[0]:.1f}", file=sys.stderr)
    if args.mode == "existing":
        del res["restic+init"]      # restic's backup alone is the same work there
    report(res)


if __name__ == "__main__":
    main()
