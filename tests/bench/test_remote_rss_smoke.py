"""bench/remote_rss.py (issue #13) must not rot: one round of each tool on a tiny source prints each
backup's peak RSS (never asserted as a size: the machine decides it) and when it was sampled; no
backup's remote folder is deleted before the last one ran."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.bench.kept import deleted_between, run_watched
from tests.support.tools import need

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_rss_benchmark_reports_each_backups_peak(tmp_path):
    need("rclone")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"f{i}.txt").write_bytes(os.urandom(300 + i))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc, events = run_watched(tmp_path, tmp, 3, ":sampled", "remote_rss.py", "--checkout", BENCH.parent, "--source",
                               src, "--rounds", 1, "--mode", "existing", "--curve", env={"TMPDIR": str(tmp)})
    assert deleted_between(events, 3) == [] and len(events) == 2 * 2, events
    peaks = re.findall(r"^(before|plugback) +round 0: wall [\d.]+ s, peak RSS ([\d.]+) MiB", proc.stdout, re.M)
    assert [tool for tool, _ in peaks] == ["before", "plugback"], proc.stdout
    assert all(float(mib) > 10 for _, mib in peaks), proc.stdout     # (a Python process, at least)
    assert os.listdir(tmp) == []
