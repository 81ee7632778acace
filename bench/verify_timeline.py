"""Where one ``verify --read-all`` spends its wall time (issue #11): a timeline per 50 ms of each
process's CPU and the drive's reads, with the verify's own steps marked.

The verify runs as ``python -P -m core.cli verify SET --read-all`` would, in a child process of
this script (the checkout's code: ``--checkout DIR``, default this one), with timers around its
steps (the imports, ``verify``'s manifest work, the ``Latest/`` readers' first batch handed out and
last answer taken, the report). This script samples, every ``--step`` seconds: the CPU of each thread of
the verify process (``/proc/PID/task/TID/stat``: the main thread, ``verify-latest``, the rest),
of its reader processes (``/proc/PID/stat``), and the drive's reads (``/proc/diskstats``: requests
completed, bytes, requests in flight). From those it prints where a core stands idle (2 cores:
``2 x step`` less the CPU of the slice) and the phases: start-up (to ``verify`` called), manifest
work before the first batch, readers at work, after the last answer.

    flock /tmp/pb/bench.lock nice -n 5 .venv/bin/python bench/verify_timeline.py /var/tmp/pb-fv/set \\
        --home /var/tmp/pb-fv/home --runs 2 [--checkout before=DIR --checkout after=DIR]

Root drops the page cache before each run (``--warm``: not; for a smoke test). The times are CLOCK_MONOTONIC
in both processes; CPU is in clock ticks (10 ms), so a slice's CPU is good to ±1 tick per thread.
"""

from __future__ import annotations

import os
import sys
import time

# (only these at the top: the child, which runs the verify, imports nothing else before it starts)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
CORES = os.cpu_count() or 1


# ---------------------------------------------------------------- the child: the verify, its steps marked

def child(set_path: str, out: str, quick: bool, pool_from: int | None = None) -> int:
    """Run the CLI's verify in this process with its steps marked; the marks written to ``out`` (JSON)."""
    t0 = time.monotonic()
    marks: list[tuple[float, float, str, str]] = [(t0, t0, "process started (python up)", "MainThread")]
    import json
    import threading

    def mark(label: str, start: float, end: float | None = None) -> None:
        marks.append((start, end if end is not None else start, label, threading.current_thread().name))

    def timed(owner, name: str, label: str | None = None) -> None:
        fn = getattr(owner, name)

        def wrapper(*a, **k):
            start = time.monotonic()
            try:
                return fn(*a, **k)
            finally:
                mark(label or name, start, time.monotonic())

        setattr(owner, name, wrapper)

    def timed_gen(owner, name: str, label: str) -> None:
        """A generator function: its first and last item marked."""
        fn = getattr(owner, name)

        def wrapper(*a, **k):
            start, n, first = time.monotonic(), 0, None
            try:
                for item in fn(*a, **k):
                    if n == 0:
                        first = time.monotonic()
                        mark(f"{label}: first", first)
                    n += 1
                    yield item
            finally:
                mark(f"{label}: last ({n})", time.monotonic())
                mark(f"{label}", start, time.monotonic())

        setattr(owner, name, wrapper)

    from core.cli import main
    mark("core.cli imported", t0, time.monotonic())
    from core.engine import rawlines, readpool, verify, verify_latest, verify_merge
    mark("engine imported", t0, time.monotonic())
    tids: dict[str, int] = {"MainThread": threading.get_native_id()}
    run = verify_latest.Early._run

    def early_run(self, *a, **k):
        tids["verify-latest"] = threading.get_native_id()
        return run(self, *a, **k)

    verify_latest.Early._run = early_run   # type: ignore[method-assign]
    if pool_from is not None:   # (a small set's Latest/ read by the reader processes too: the smoke test)
        verify_latest.POOL_FROM = verify_latest.QUICK_POOL_FROM = pool_from
    timed(readpool.HashPool, "__init__", "HashPool started (readers spawned)")
    timed_gen(readpool.HashPool, "map", "readers' answers")
    timed_gen(verify_latest, "batches", "batches handed out")
    timed_gen(rawlines, "file_items", "newest's items (file_items)")
    timed(rawlines, "same_as_newest")
    timed(verify, "_read_manifests")
    timed(verify, "_read_each")
    timed(verify, "_add_proven")
    timed(verify, "_run_checks")
    timed(verify._Contents, "add_kept")
    timed(verify._Contents, "held_by_latest")
    timed(verify_merge.Merge, "same_file")
    timed(verify_latest.Early, "finish", "Early.finish (waits for the readers)")
    timed(verify, "verify", "verify()")
    rc = 1
    try:
        rc = main(["verify", set_path] + ([] if quick else ["--read-all"]))
    finally:
        mark("main returned", time.monotonic())
        with open(out, "w") as f:
            json.dump({"marks": marks, "tids": tids, "rc": rc}, f)
    return rc


# ---------------------------------------------------------------- the sampler

def _threads(pid: int) -> dict[str, tuple[int, int, str]]:
    """Each thread of ``pid``: (ns on a CPU, ns waiting on a run queue, state letter); {} if it is gone."""
    out: dict[str, tuple[int, int, str]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run, wait = f.read().split()[:2]
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        out[tid] = (int(run), int(wait), raw[raw.rindex(")") + 2])
    return out


def _parent(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return 0
    return int(raw[raw.rindex(")") + 2:].split()[1])


def _disk(device: str) -> tuple[int, int, int]:
    """(reads completed, bytes read, requests in flight) of ``device``."""
    with open("/proc/diskstats") as f:
        for line in f:
            v = line.split()
            if v[2] == device:
                return int(v[3]), int(v[5]) * 512, int(v[11])
    return 0, 0, 0


def _device_of(path: str) -> str:
    """The whole disk under ``path``'s file system (``vda`` for ``/dev/vda1`` or ``/dev/vda``)."""
    if sys.platform == "win32":   # (Linux: /proc and /sys)
        return ""
    from pathlib import Path

    dev = os.stat(path).st_dev
    try:
        name = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}").resolve()
    except OSError:
        return ""
    return name.parent.name if (name / "partition").exists() else name.name


def sample_run(argv: list[str], env: dict, step: float, device: str, readers: int) -> list[dict]:
    """Start ``argv`` and sample it every ``step`` s until it ends: one dict per sample, with every
    thread's counters as last seen (a thread that ended keeps its last sample)."""
    import subprocess

    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    pid = proc.pid
    found: list[int] = []   # the reader processes
    mine: dict[str, tuple[int, int, str]] = {}
    theirs: dict[str, tuple[int, int, str]] = {}
    samples = []
    while True:
        now = time.monotonic()
        mine.update(_threads(pid))
        if len(found) < readers:   # (the /proc scan only until the readers are all seen)
            found += [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in found
                      and _parent(p) == pid]
        states = {"R": 0, "S": 0, "D": 0}
        for rpid in found:
            now_theirs = _threads(rpid)
            theirs.update(now_theirs)
            for _run, _wait, state in now_theirs.values():
                states[state if state in states else "S"] += 1
        samples.append({"t": now, "mine": dict(mine), "readers": (sum(v[0] for v in theirs.values()),
                        sum(v[1] for v in theirs.values())), "states": states, "disk": _disk(device)})
        if proc.poll() is not None:
            break
        time.sleep(max(0.0, step - (time.monotonic() - now)))
    samples[0]["start"] = start
    samples[-1]["end"] = time.monotonic()
    return samples


# ---------------------------------------------------------------- the report

def timeline(samples: list[dict], marks: list, tids: dict[str, int]) -> tuple[list[str], dict]:
    """The table (markdown lines) and the phases' sums. CPU and run-queue waits in ms per slice."""
    start = samples[0]["start"]
    main_tid, latest_tid = str(tids.get("MainThread")), str(tids.get("verify-latest"))
    rows = ["| t s | main thread | verify-latest | other threads | readers | readers waiting for a CPU | "
            "verify waiting for a CPU | idle core | readers' threads R/S/D | reads | MB | in flight | marks |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    prev: dict = {"mine": {}, "readers": (0, 0), "disk": samples[0]["disk"], "t": start}
    series = []
    for s in samples:
        def delta(tid: str, k: int = 0, s: dict = s, prev: dict = prev) -> float:
            return (s["mine"].get(tid, (0, 0))[k] - prev["mine"].get(tid, (0, 0))[k]) / 1e9

        d_main, d_latest = delta(main_tid), delta(latest_tid)
        d_all = sum(delta(t) for t in s["mine"])
        w_mine = sum(delta(t, 1) for t in s["mine"])
        d_readers = (s["readers"][0] - prev["readers"][0]) / 1e9
        w_readers = (s["readers"][1] - prev["readers"][1]) / 1e9
        wall = s["t"] - prev["t"]
        cpu = d_all + d_readers
        reads, size = s["disk"][0] - prev["disk"][0], s["disk"][1] - prev["disk"][1]
        at = []
        for m in marks:
            if prev["t"] < m[0] <= s["t"]:
                at.append(m[2] + (" begins" if m[1] != m[0] else ""))
            elif m[1] != m[0] and prev["t"] < m[1] <= s["t"]:
                at.append(f"{m[2]} ends")
        idle = max(0.0, CORES * wall - cpu)
        series.append((s["t"], wall, d_main, d_latest, d_all - d_main - d_latest, d_readers, cpu, reads, w_readers,
                       w_mine, idle))
        st = s["states"]
        rows.append(f"| {s['t'] - start:.2f} | {d_main * 1e3:.0f} | {d_latest * 1e3:.0f} | "
                    f"{(d_all - d_main - d_latest) * 1e3:.0f} | {d_readers * 1e3:.0f} | {w_readers * 1e3:.0f} | "
                    f"{w_mine * 1e3:.0f} | {idle * 1e3:.0f} | {st['R']}/{st['S']}/{st['D']} | {reads} | "
                    f"{size / 1e6:.1f} | {s['disk'][2]} | {'; '.join(at)} |")
        prev = s
    return rows, _phases(series, marks, start, samples[-1]["end"])


def _first(marks: list, label: str) -> float | None:
    for m in marks:
        if m[2].startswith(label):
            return m[0]
    return None


def _phases(series: list[tuple], marks: list, start: float, end: float) -> dict:
    """Wall, CPU (main thread, verify-latest, readers, all), run-queue waits and idle core-seconds between the
    marks (each slice counted in the phase where it ends: good to a step)."""
    found = [("start-up (python, imports)", start), ("verify() to the first batch", _first(marks, "verify()")),
             ("first batch to the last answer", _first(marks, "batches handed out: first")),
             ("after the last answer", _first(marks, "readers' answers: last")), ("end", end)]
    cuts = [(n, t) for n, t in found if t is not None]
    out = {}
    for (name, a), (_, b) in zip(cuts, cuts[1:], strict=False):
        part = [s for s in series if a < s[0] <= b]
        out[name] = {"wall": b - a, "main": sum(s[2] for s in part), "latest": sum(s[3] for s in part),
                     "other": sum(s[4] for s in part), "readers": sum(s[5] for s in part),
                     "cpu": sum(s[6] for s in part), "reads": sum(s[7] for s in part),
                     "rwait": sum(s[8] for s in part), "vwait": sum(s[9] for s in part),
                     "idle": sum(s[10] for s in part)}
    return out


def phase_table(runs: list[tuple[str, dict]]) -> list[str]:
    rows = ["| run | phase | wall s | main thread s | verify-latest s | other threads s | readers s | "
            "readers waiting for a CPU s | verify waiting s | idle core-s | reads |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = ("wall", "main", "latest", "other", "readers", "rwait", "vwait", "idle")
    for name, phases in runs:
        for phase, p in [*phases.items(), ("**all**", {k: sum(q[k] for q in phases.values())
                                                       for k in (*keys, "reads")})]:
            rows.append(f"| {name} | {phase} | " + " | ".join(f"{p[k]:.2f}" for k in keys) + f" | {p['reads']} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    if sys.platform == "win32":
        raise SystemExit("Linux only: it samples /proc")
    import argparse
    import json
    import statistics
    import subprocess
    from pathlib import Path

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("set")
    p.add_argument("--home", help="PLUGBACK_HOME (where the backups recorded the manifests they wrote)")
    p.add_argument("--checkout", action="append", default=[], metavar="NAME=DIR")
    p.add_argument("--runs", type=int, default=1, help="runs of each checkout, interleaved")
    p.add_argument("--step", type=float, default=0.05)
    p.add_argument("--readers", type=int, default=2, help="reader processes to look for")
    p.add_argument("--quick", action="store_true", help="a quick verify (no --read-all)")
    p.add_argument("--pool-from", type=int, help="read Latest/ in the reader processes from this many files "
                   "(verify_latest.POOL_FROM; for a small set)")
    p.add_argument("--warm", action="store_true", help="do not drop the page cache (not root; a smoke test)")
    p.add_argument("--rows", action="store_true", help="print every sample's row, not only the phases")
    p.add_argument("--json", help="also write the raw samples and marks here")
    args = p.parse_args(argv)
    if not args.warm and os.geteuid() != 0:
        p.error("must run as root: the page cache is dropped before each run (or --warm)")
    checkouts = [tuple(c.split("=", 1)) for c in args.checkout] or [("this", str(REPO))]
    device = _device_of(args.set)
    env = {**os.environ, **({"PLUGBACK_HOME": args.home} if args.home else {})}
    runs, raw = [], []
    for rnd in range(args.runs):
        for name, path in checkouts:
            out = Path(f"/tmp/verify_timeline.{os.getpid()}.json")
            if not args.warm:
                subprocess.run("sync; echo 3 > /proc/sys/vm/drop_caches", shell=True, check=True)
            load = os.getloadavg()[0]
            argv_ = [sys.executable, "-P", str(Path(__file__).resolve()), "--child", args.set, str(out)] + \
                (["--quick"] if args.quick else []) + \
                ([f"--pool-from={args.pool_from}"] if args.pool_from is not None else [])
            samples = sample_run(argv_, {**env, "PYTHONPATH": str(Path(path).resolve())}, args.step, device,
                                 0 if args.quick else args.readers)
            got = json.loads(out.read_text())
            out.unlink()
            rows, phases = timeline(samples, got["marks"], got["tids"])
            label = f"{name} {rnd + 1} (load {load:.1f})"
            print(f"\n### {label}: wall {samples[-1]['end'] - samples[0]['start']:.2f} s, rc {got['rc']}\n")
            if args.rows:
                print("\n".join(rows))
            start = samples[0]["start"]
            for m in sorted(got["marks"]):
                print(f"  {m[0] - start:6.3f}–{m[1] - start:6.3f} s  {m[2]} [{m[3]}]")
            runs.append((label, phases))
            raw.append({"run": label, "samples": samples, **got})
    print()
    print("\n".join(phase_table(runs)))
    for phase in runs[0][1] if runs else {}:
        walls = [r[1][phase]["wall"] for r in runs if phase in r[1]]
        print(f"  {phase}: wall median {statistics.median(walls):.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(raw))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        pool = [int(a.split("=", 1)[1]) for a in sys.argv[4:] if a.startswith("--pool-from=")]
        sys.exit(child(sys.argv[2], sys.argv[3], "--quick" in sys.argv[4:], pool[0] if pool else None))
    sys.exit(main())
