"""Peak memory of one remote backup, and when it peaks (issue #13; #11's line: 200 MB for every backup).

    .venv/bin/python bench/remote_rss.py --dataset 0.1 --mode existing --checkout DIR --rounds 2

Runs ``plugback backup SRC --to rclone:wd:NAME`` (``python -P -m core.cli``, as bench/remote_full.py
runs it) against a loopback ``rclone serve webdav``, this checkout and ``--checkout``'s in turn, each
into a new remote folder (``existing``: the set made first by a backup of an empty folder, untimed),
and samples the process's resident memory (``/proc/PID/status`` VmRSS) every 5 ms: prints the peak
(``ru_maxrss``, what ``/usr/bin/time -f %M`` says: rclone's processes are not in it) and, with
``--curve``, the RSS every 50 ms, so what was held at the peak can be told (scrypt's 128 MiB, packs).
Each backup's remote folder goes to the work folder's trash, deleted with it after the last round
(nothing deleted between timed commands: bench/remote_set.py ``work_folder``; ``--settle``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from bench import remote_set  # noqa: E402
from bench.remote_set import ROOT, _commands, compile_checkouts, make_dataset, make_source  # noqa: E402
from tests.support.rclone import RcloneWorld  # noqa: E402


def sampled(cmd: list[str], env: dict) -> tuple[float, int, list[tuple[float, int]]]:
    """(wall seconds, peak RSS in KB from ru_maxrss, [(seconds, VmRSS KB)] every ~5 ms) of one run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    curve: list[tuple[float, int]] = []
    status = f"/proc/{proc.pid}/status"
    while True:
        pid, code, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            with open(status) as f:
                rss = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except (OSError, ValueError):
            rss = 0
        curve.append((time.perf_counter() - t0, rss))
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(code)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    peak = usage.ru_maxrss
    return wall, peak, curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkout", type=Path, required=True, help="another checkout of plugback: the tool 'before'")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dataset", type=float, metavar="SCALE", help="bench/make_dataset.py's tree at SCALE")
    ap.add_argument("--source", type=Path, help="back up this folder instead")
    ap.add_argument("--mode", choices=("first", "existing"), default="existing")
    ap.add_argument("--curve", action="store_true", help="print the RSS every 50 ms")
    remote_set.settle_arg(ap)
    args = ap.parse_args()
    with remote_set.work_folder("pb-remote-rss-") as (work, bin_):
        source = args.source or work / "src" / "data"
        if args.source is None:
            make_dataset(source, args.dataset) if args.dataset else make_source(source, 300, 4)
        compile_checkouts(ROOT, args.checkout)
        world = RcloneWorld(work / "rclone")
        server = world.serve_webdav(work / "served")
        world.add_webdav("wd", server)
        env = {**os.environ, "RCLONE_CONFIG": str(world.config), "PLUGBACK_PASSPHRASE": "bench passphrase",
               "PLUGBACK_HOME": str(work / "home")}
        (work / "empty").mkdir()
        remote_set.settle(work, args.settle, source)
        print(f"load before: {os.getloadavg()[0]:.1f}")
        try:
            for i in range(args.rounds):
                for tool in ("before", "plugback"):
                    out = work / f"{tool}{i}"
                    backup, _, extra = _commands(tool, source, out, args.checkout)
                    if args.mode == "existing":
                        subprocess.run(_commands(tool, work / "empty", out, args.checkout)[0], env={**env, **extra},
                                       check=True, capture_output=True)
                    wall, peak, curve = sampled(backup, {**env, **extra})
                    top = max(curve, key=lambda c: c[1]) if curve else (0.0, 0)
                    print(f"{tool:9} round {i}: wall {wall:.2f} s, peak RSS {peak / 1024:.1f} MiB "
                          f"({peak * 1024 / 1e6:.1f} MB), sampled peak at {top[0]:.2f} s")
                    if args.curve:
                        print("   " + " ".join(f"{t:.2f}:{r // 1024}" for t, r in curve[::10]))
                    bin_.put(work / "served" / out.name)
        finally:
            world.close()
        print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
