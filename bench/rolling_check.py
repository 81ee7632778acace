"""The rolling check's ``check`` phase (the quick verify the agent's pass ends with) with and without
this computer's engine folder (``scrub_slice(cache=)``, issue #11): with it, the newest manifest,
recorded by the backup that wrote it, is read proven instead of decoded.

    python bench/rolling_check.py --files 20000 --rounds 3 --work /var/tmp/pb-bench

Makes a plain set of FILES small files (one backup, recorded in WORK/cache), then times the check
phase alone (cursor at "check"), without and with the cache in turn (the order alternating), in this process: CPU seconds
(user+sys, ``os.times``) and wall per run, and the same-round ratio with/without.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.engine.backup import backup  # noqa: E402
from core.engine.backup_options import BackupOptions  # noqa: E402
from core.engine.pass_cursor import Cursor  # noqa: E402
from core.engine.repo import BackupSet  # noqa: E402
from core.engine.scrub import scrub_slice  # noqa: E402


def make(work: Path, files: int) -> tuple[Path, Path]:
    src, set_path, cache = work / "src" / "Data", work / "set", work / "cache"
    for i in range(files):
        d = src / f"d{i // 500:03}"
        if i % 500 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:06}.txt").write_bytes(f"file {i}\n".encode() * (1 + i % 7))
    opts = BackupOptions(cache=cache)
    bset = BackupSet.create(set_path, opts.clock.now(), job="Data", host="bench")
    backup(bset, [src], opts)
    return set_path, cache


def check(set_path: Path, cache: Path | None) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), os.times()
    result = scrub_slice(BackupSet.open(set_path), Cursor("check"), None, cache=cache)
    c1 = os.times()
    assert result.cursor.done and not result.damaged, result.damaged
    return max(0.0, c1.user + c1.system - c0.user - c0.system), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/pb-rolling-check"))
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    try:
        set_path, cache = make(args.work, args.files)
        print(f"{args.files} files; load {os.getloadavg()[0]:.2f}")
        for n in range(args.rounds):   # (the order alternates: neither always runs on a warmer cache)
            if n % 2:
                with_, without = check(set_path, cache), check(set_path, None)
            else:
                without, with_ = check(set_path, None), check(set_path, cache)
            ratio = with_[0] / without[0] if without[0] else float("nan")
            print(f"round {n + 1}: without cache CPU {without[0]:.2f} s wall {without[1]:.2f} s; "
                  f"with cache CPU {with_[0]:.2f} s wall {with_[1]:.2f} s; CPU ratio {ratio:.2f}; "
                  f"load {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
