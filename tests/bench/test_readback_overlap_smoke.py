"""bench/readback_overlap.py must not rot (issue #11, branch ``full5``): a tiny source, one round of
each variant, each run's line and the medians printed (speed is never asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.env import subprocess_env

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_readback_overlap_times_each_variant(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(40):
        (src / "d" / f"f{i}.txt").write_bytes(os.urandom(i * 50))
    proc = subprocess.run([sys.executable, str(BENCH / "readback_overlap.py"), str(src), str(tmp_path / "work"),
                           "--rounds", "1", "--variants", "on,off,every=0"], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for variant in ("on", "off", "every=0"):
        assert re.search(rf"^{re.escape(variant)} +0 +[\d.]+ +[\d.]+ .* 40 +0 ", proc.stdout, re.M), (variant, proc.stdout)
        assert re.search(rf"^  {re.escape(variant)} +[\d.]+ ", proc.stdout, re.M), proc.stdout
    assert not (tmp_path / "work" / "set").exists()
