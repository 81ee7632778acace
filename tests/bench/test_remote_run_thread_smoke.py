"""bench/remote_run_thread.py (issue #13) must not rot: two rounds on a tiny tree print the run
thread's CPU and wall seconds (never asserted as speed), delete no round's set before the last round
ended, and leave no set behind."""

from __future__ import annotations

import os
import re

from tests.bench.kept import deleted_between, run_watched


def test_the_run_thread_benchmark_backs_up_into_an_existing_set_and_reports_its_cpu(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"f{i}.txt").write_bytes(b"some words %d " % i * 40 if i % 2 else os.urandom(200 + i))
    work = tmp_path / "work"
    proc, events = run_watched(tmp_path, work, 1, ":backup", "remote_run_thread.py", src, work, "--rounds", 2,
                               "--unlock", "0.05")
    assert deleted_between(events, 1) == [] and len(events) == 2 * 2 * 2, events   # (the old script deleted each set)
    rounds = re.fullmatch(r"(\d+\.\d{3}/\d+\.\d{3}) (\d+\.\d{3}/\d+\.\d{3}) median cpu (\d+\.\d{3}) wall (\d+\.\d{3})\n",
                          proc.stdout)
    assert rounds, proc.stdout
    cpu, wall = (float(x) for x in rounds.group(1).split("/"))
    assert 0 < cpu and 0.05 <= wall      # (the unlock's sleep is inside the wall)
    assert sorted(os.listdir(work)) == ["empty"]
