"""bench/rolling_check.py must not rot: a tiny run times both ways (speed is never asserted)."""

import re
import subprocess
import sys
from pathlib import Path

from tests.support.env import subprocess_env

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_rolling_check_bench_times_the_check_with_and_without_the_cache(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "rolling_check.py"), "--files", "40", "--rounds", "2",
                           "--work", str(tmp_path / "work")], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    rounds = re.findall(r"^round \d: without cache CPU [\d.]+ s .* with cache CPU [\d.]+ s .* CPU ratio (?:[\d.]+|nan)",
                        done.stdout, re.M)
    assert len(rounds) == 2, done.stdout
    assert not (tmp_path / "work").exists()   # cleaned up
