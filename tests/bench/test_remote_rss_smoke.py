"""bench/remote_rss.py (issue #13) must not rot: one round of each tool on a tiny source prints each
backup's peak RSS (never asserted as a size: the machine decides it) and when it was sampled."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.env import subprocess_env
from tests.support.tools import need

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_rss_benchmark_reports_each_backups_peak(tmp_path):
    need("rclone")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"f{i}.txt").write_bytes(os.urandom(300 + i))
    proc = subprocess.run([sys.executable, "-P", str(BENCH / "remote_rss.py"), "--checkout", str(BENCH.parent),
                           "--source", str(src), "--rounds", "1", "--mode", "existing", "--curve"],
                          capture_output=True, text=True, env={**subprocess_env(), "TMPDIR": str(tmp_path)}, timeout=180)
    assert proc.returncode == 0, proc.stderr
    peaks = re.findall(r"^(before|plugback) +round 0: wall [\d.]+ s, peak RSS ([\d.]+) MiB", proc.stdout, re.M)
    assert [tool for tool, _ in peaks] == ["before", "plugback"], proc.stdout
    assert all(float(mib) > 10 for _, mib in peaks), proc.stdout     # (a Python process, at least)
