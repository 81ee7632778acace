"""The change-journal scenario (issue #12): a backup that rescans only the folders a hint names,
against a full scan, with 10 files changed in a big tree of tiny files.

    .venv/bin/python bench/run.py --scenario journal --files 100000 --workdir /tmp/pb-bench
    .venv/bin/python bench/run.py --scenario journal --files 1000000 --workdir /tmp/pb-bench   # opt-in

The source is ``make_scale.generate_small`` (tiny files, 50 to a folder). After one full backup
(timed too), each repeat changes ``--changed`` files (new bytes, one per folder, seeded) and
backs up with a hint naming their folders ("journal"), then changes as many other files and
backs up with a full scan ("full scan"). Every backup gets a cache folder, as the agent gives
one (``BackupOptions.cache``): each parent is then one this computer wrote, and a journal
run splices its lines (core/engine/splice.py). Each backup is one process
(``bench/journal_backup.py``): wall time, CPU and peak RSS of the process as for every
benchmark (measure.py), and the engine call alone as the process reports it (what the
running agent waits for after the connect delay: no interpreter start, no imports). The
page cache is dropped before each (cold, as root) unless ``--warm``.

At the end an untimed full-scan backup must find nothing to copy: the journal snapshots
were what a full scan gives (tests/core/engine/test_changes_property.py checks that
exactly; this checks it at scale).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

import make_scale
import measure
from tools import plugback_env, rmtree

HELPER = Path(__file__).resolve().parent / "journal_backup.py"
GOAL_S = {100_000: 1.0, 1_000_000: 2.0}   # issue #12: connect delay -> committed snapshot


def change_files(src: Path, files: int, count: int, seed: int, tag: str) -> dict:
    """Rewrite ``count`` files, each in another folder; the hint an agent would give for them."""
    rng = random.Random(f"{seed}-journal-{tag}")
    folders: set[str] = set()
    while len(folders) < min(count, files // make_scale.FILES_PER_FOLDER):
        i = rng.randrange(files)
        path = make_scale._tiny_path(src, i)
        if str(path.parent) in folders:
            continue
        path.write_bytes(rng.randbytes(rng.randrange(1, make_scale.MAX_TINY)))
        folders.add(str(path.parent))
    return {"dirs": sorted(folders), "trees": []}


def one_backup(ctx: dict, name: str, hint: dict | None) -> dict:
    """Time one backup process; its own report (engine-call seconds, scan kind) merged in."""
    argv = [sys.executable, str(HELPER), str(ctx["src"]), str(ctx["set"]), "--cache", str(ctx["run"] / "cache")]
    if hint is not None:
        hint_file = ctx["run"] / "hint.json"
        hint_file.write_text(json.dumps(hint))
        argv += ["--hint", str(hint_file)]
    ctx["prepare"](ctx["cold"], [ctx["src"], ctx["set"]])
    log_file = ctx["run"] / f"{name}.log"
    result = measure.timed(argv, log_file, ctx["timeout"], env={**os.environ, **plugback_env()})
    text = log_file.read_text(errors="replace").strip()
    if result["rc"] != 0:
        raise RuntimeError(f"{name} failed ({result['rc']}): {text[-800:]}")
    result.update(json.loads(text.splitlines()[-1]))
    ctx["log"](f"  {name:22} {result['wall']:7.2f} s wall, engine call {result['backup']:6.2f} s, "
               f"{result['rss'] / 1e6:6.1f} MB peak RSS, scan {result['scan']}, copied {result['copied']}; "
               + ", ".join(f"{k} {v:.2f} s" for k, v in result["steps"].items()))
    return result


def run(args) -> int:
    from run import can_drop_caches, log, machine_info, prepare_cache  # (run.py calls this module)

    work = args.workdir / "run-journal"
    rmtree(work)
    work.mkdir(parents=True)
    ctx = {"src": work / "src", "set": work / "set", "run": work, "timeout": args.timeout, "log": log,
           "prepare": prepare_cache, "cold": not args.warm and can_drop_caches()}
    started = datetime.now(timezone.utc)
    log(f"journal scenario, {args.files:,} files, {args.changed} changed per backup; making the source ...")
    stats = make_scale.generate_small(ctx["src"], files=args.files, seed=args.seed)
    runs: dict[str, list] = {"full": [one_backup(ctx, "first full backup", None)], "journal": [], "fullscan": []}
    for rep in range(args.repeat):
        hint = change_files(ctx["src"], args.files, args.changed, args.seed, f"j{rep}")
        runs["journal"].append(one_backup(ctx, f"journal-{rep}", hint))
        change_files(ctx["src"], args.files, args.changed, args.seed, f"f{rep}")
        runs["fullscan"].append(one_backup(ctx, f"fullscan-{rep}", None))
    check = one_backup(ctx, "check (full scan)", None)
    failures = [] if check["copied"] == 0 else [f"a full scan after the journal runs copied {check['copied']} files"]
    failures += [f"{r['scan']} scan where a journal scan was expected" for r in runs["journal"] if r["scan"] != "journal"]
    data = {"scenario": "journal", "files": args.files, "changed": args.changed, "dataset": stats,
            "started": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_info(args.workdir),
            "cache": "cold" if ctx["cold"] else "warm", "load": os.getloadavg()[0], "runs": runs,
            "failures": failures}
    out = args.results_dir / f"bench-journal-{started.strftime('%Y%m%dT%H%M%SZ')}-{args.files}.json"
    out.write_text(json.dumps(data, indent=1))
    print(render(data, markdown=args.markdown))
    print(f"\nresults: {out}")
    if not args.keep:
        rmtree(work)
    if failures:
        print("\nFAILURES:\n" + "\n".join(f"* {f}" for f in failures))
    return 1 if failures else 0


def render(data: dict, markdown: bool = False) -> str:
    """The scenario's table: median wall / engine-call seconds, CPU and worst peak RSS per kind."""
    rows = [("backup", "process wall s", "engine call s", "engine CPU s", "process CPU s", "peak RSS MB")]
    labels = {"full": "first full backup", "journal": f"{data['changed']} changed, journal scan",
              "fullscan": f"{data['changed']} changed, full scan"}
    notes: list[str] = []
    for kind, label in labels.items():
        rs = data["runs"][kind]
        if rs:
            med = lambda k, rs=rs: statistics.median(r[k] for r in rs)  # noqa: E731
            rows.append((label, f"{med('wall'):.2f}", f"{med('backup'):.2f}", f"{med('backup_cpu'):.2f}",
                         f"{med('cpu'):.2f}", f"{max(r['rss'] for r in rs) / 1e6:.0f}"))
            steps = {k: statistics.median(r["steps"].get(k, 0.0) for r in rs) for k in rs[0]["steps"]}
            notes.append(f"{label}: " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()))
    m = data["machine"]
    head = (f"journal scenario: {data['files']:,} tiny files in {data['dataset']['dirs']:,} folders, "
            f"{data['changed']} changed per backup, {len(data['runs']['journal'])} repeats (medians), "
            f"{data['cache']} cache; {m['cpu']} x {m['nproc']}, {m['fs']}; load {data['load']:.1f}")
    goal = GOAL_S.get(data["files"])
    journal = data["runs"]["journal"]
    if goal and journal:
        best = statistics.median(r["backup"] for r in journal)
        head += f"\ngoal: committed snapshot <= {goal:g} s after the connect delay: engine call {best:.2f} s, " + \
            ("met" if best <= goal else "MISSED")
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    else:
        lines = ["  ".join(c.ljust(22 if i == 0 else 14) for i, c in enumerate(r)) for r in rows]
    return head + "\n\n" + "\n".join(lines) + "\n\nSteps (medians, seconds of the engine call):\n" + \
        "\n".join(f"* {n}" for n in notes)
