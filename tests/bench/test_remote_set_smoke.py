"""bench/remote_set.py must not rot: one round of plugback and restic through rclone to a loopback
WebDAV server on a tiny source, every restore identical (speed is never asserted)."""

import re
import subprocess
import sys
from pathlib import Path

from tests.support.env import subprocess_env
from tests.support.tools import need

BENCH = Path(__file__).resolve().parents[2] / "bench"
ROW = r"\| {} \| [\d.]+ \([\d.]+\) \| [\d.]+ \([\d.]+\) \| [\d.]+ \([\d.]+\) \| [\d.]+ \| True \|"


def test_remote_set_backs_up_and_restores_with_plugback_and_restic():
    need("rclone", "restic")
    proc = subprocess.run([sys.executable, str(BENCH / "remote_set.py"), "--small", "20", "--big", "1",
                           "--rounds", "1", "--tools", "plugback,restic", "--markdown"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for tool in ("plugback", "restic"):
        assert re.search(ROW.format(tool), proc.stdout), proc.stdout
