"""The change journal's costs and gains (issue #12): not a test, a measurement (docs/performance.md).

    # idle agent (plugback-tray --no-icon) watching a 100,000-file source, vs. the same agent with no job
    .venv/bin/python bench/agent_journal.py idle --files 100000 --seconds 60 --workdir /tmp/pb-journal
    # plug-in -> committed snapshot with 10 changed files (root: a loop-mounted ext4 drive)
    .venv/bin/python bench/agent_journal.py plugin --files 100000 --workdir /tmp/pb-journal

The source is bench/make_scale.py's seeded small-files tree (kept in --workdir between runs).
It reports only; nothing here fails on a threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]   # a script run from the checkout measures this checkout's code

import psutil  # noqa: E402

from bench.make_scale import generate_small  # noqa: E402


def source(workdir: Path, files: int) -> Path:
    src = workdir / f"src-{files}"
    if not src.exists():
        print(f"making {files:,} files in {src} ...", flush=True)
        generate_small(src, files=files)
    return src


def inotify_watches(pid: int) -> int:
    total = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                total += Path(f"/proc/{pid}/fdinfo/{fd}").read_text().count("inotify wd:")
        except OSError:
            pass
    return total


def idle_once(home: Path, src: Path | None, seconds: float, warmup: float = 5) -> dict:
    """Start the headless agent on ``home`` (one job on an absent drive watching ``src``, or none)."""
    import shutil

    shutil.rmtree(home, ignore_errors=True)   # a fresh state: "ready" is this agent's start
    home.mkdir(parents=True)
    jobs = [] if src is None else [{"name": "Docs", "sources": [str(src)],
                                    "destination": {"drive_id": "11111111-1111-4111-8111-111111111111"},
                                    "triggers": {"on_connect": True, "schedule": "daily@09:30"}}]
    drives = [{"drive_id": "11111111-1111-4111-8111-111111111111", "label": "Blue"}] if jobs else []
    (home / "config.json").write_text(json.dumps({"version": 1, "jobs": jobs, "drives": drives,
                                                  "prefs": {"start_at_login": False}}))
    env = {**os.environ, "PLUGBACK_HOME": str(home), "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "tray", "--no-icon"], env=env, cwd=str(ROOT),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        log = home / "logs" / "agent.log"
        journal_dir = home / "journal"
        while not (log.exists() and "agent started" in log.read_text()) or \
                (src is not None and not any(journal_dir.glob("*.json"))):
            if proc.poll() is not None or time.monotonic() - started > 300:
                raise SystemExit("the agent did not start")
            time.sleep(0.05)
        ready = time.monotonic() - started
        time.sleep(warmup)
        p = psutil.Process(proc.pid)
        cpu0, t0 = sum(p.cpu_times()[:2]), time.monotonic()
        time.sleep(seconds)
        cpu = 100 * (sum(p.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
        mem = p.memory_full_info()
        return {"ready_s": round(ready, 2),
                "rss_mb": round(mem.rss / 2**20, 1), "uss_mb": round(mem.uss / 2**20, 1),
                "cpu_percent": round(cpu, 3), "threads": p.num_threads(), "inotify_watches": inotify_watches(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(30)


def cmd_idle(args) -> None:
    src = source(args.workdir, args.files)
    for label, folder in (("no job", None), (f"one job, {args.files:,} files watched", src)):
        result = idle_once(args.workdir / f"home-{'none' if folder is None else 'watch'}", folder, args.seconds,
                           args.warmup)
        print(f"{label}: {json.dumps(result)}", flush=True)


def _run_until_done(agent, n: int, timeout: float = 900, phases: dict | None = None) -> object:
    """Wait for the n-th finished run; ``phases``: when each progress phase was first seen (s from now)."""
    start = time.monotonic()
    while time.monotonic() < start + timeout:
        for r in agent.running():
            if phases is not None:
                phases.setdefault(r["phase"], round(time.monotonic() - start, 2))
        runs = [r for r in agent.history.runs("Docs") if r.status != "running"]
        if len(runs) >= n and not agent.running() and not agent.queued():
            return runs[0]
        time.sleep(0.005)
    raise SystemExit("the backup did not finish")


def cmd_plugin(args) -> None:
    """Connect -> snapshot with 10 changed files, through the real agent, watching, on a real drive."""
    import shutil

    shutil.rmtree(args.workdir / "home-plugin", ignore_errors=True)   # a fresh agent state each time
    os.environ["PLUGBACK_HOME"] = str(args.workdir / "home-plugin")
    from core.agent.agent import Agent, AgentOptions
    from core.agent.config import Paths
    from tests.support.agent import add_drive_job
    from tests.support.drives import LoopDrive

    src = source(args.workdir, args.files)
    paths = Paths.default()
    paths.ensure()
    drive = LoopDrive.create("ext4", args.workdir / "drive", size_mb=args.drive_mb, label="BENCH")
    try:
        drive_id = add_drive_job(paths, drive.mount_point, [src], delay=0)
        agent = Agent(paths, options=AgentOptions(battery=lambda: None))
        agent.start_watching()
        t0 = time.monotonic()
        agent.drive_connected(drive_id, str(drive.mount_point))
        _run_until_done(agent, 1)
        print(f"first backup: {time.monotonic() - t0:.1f} s", flush=True)
        for attempt in range(args.repeat):
            agent.drive_removed(drive_id)
            drive.unmount()
            files = sorted(src.glob("g0000/d00000*/f*.txt"))[attempt * 10:attempt * 10 + 10]
            for f in files:
                f.write_bytes(f.read_bytes() + b" changed")
            time.sleep(1)
            mount = drive.mount()
            t0 = time.monotonic()
            agent.drive_connected(drive_id, str(mount))
            phases: dict = {}
            run = _run_until_done(agent, 2 + attempt, phases=phases)
            took = time.monotonic() - t0
            log = agent.history.log(run.id) or ""
            scan = next((line for line in log.splitlines() if line.startswith("scan:")), "")
            print(f"plug-in -> run recorded, 10 changed: {took:.2f} s ({run.status}, {run.files_copied} copied; "
                  f"{scan}); phases first seen at {phases}; run {(run.ended - run.started).total_seconds():.2f} s",
                  flush=True)
        agent.shutdown()
    finally:
        drive.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("idle", "plugin"):
        p = sub.add_parser(name)
        p.add_argument("--files", type=int, default=100_000)
        p.add_argument("--workdir", type=Path, default=Path("/tmp/pb-journal"))
        p.add_argument("--seconds", type=float, default=60, help="idle: how long the CPU is measured")
        p.add_argument("--warmup", type=float, default=5, help="idle: seconds after the start not measured")
        p.add_argument("--repeat", type=int, default=3)
        p.add_argument("--drive-mb", type=int, default=2048)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    {"idle": cmd_idle, "plugin": cmd_plugin}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
