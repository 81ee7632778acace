"""bench/remote_run_thread.py (issue #13) must not rot: one round on a tiny tree prints the run
thread's CPU and wall seconds (never asserted as speed) and leaves no set behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.env import subprocess_env

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "remote_run_thread.py"


def test_the_run_thread_benchmark_backs_up_into_an_existing_set_and_reports_its_cpu(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"f{i}.txt").write_bytes(b"some words %d " % i * 40 if i % 2 else os.urandom(200 + i))
    proc = subprocess.run([sys.executable, "-P", str(SCRIPT), str(src), str(tmp_path / "work"), "--rounds", "2",
                           "--unlock", "0.05"], capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    rounds = re.fullmatch(r"(\d+\.\d{3}/\d+\.\d{3}) (\d+\.\d{3}/\d+\.\d{3}) median cpu (\d+\.\d{3}) wall (\d+\.\d{3})\n",
                          proc.stdout)
    assert rounds, proc.stdout
    cpu, wall = (float(x) for x in rounds.group(1).split("/"))
    assert 0 < cpu and 0.05 <= wall      # (the unlock's sleep is inside the wall)
    assert not (tmp_path / "work" / "set").exists()
