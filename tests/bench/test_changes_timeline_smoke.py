"""bench/changes_timeline.py must not rot: a day of changes of a tiny set, its steps timed (speed is
never asserted)."""

import re
import subprocess
import sys
from pathlib import Path

from tests.support.env import subprocess_env

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _timeline(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", str(BENCH / "changes_timeline.py"), *map(str, args)],
                          capture_output=True, text=True, env=subprocess_env(), timeout=120)


def test_the_changes_timeline_times_a_day_of_changes(tmp_path):
    src = tmp_path / "src"
    for d in range(3):
        for f in range(5):
            (src / f"d{d}" / f"e{f}").mkdir(parents=True, exist_ok=True)
            (src / f"d{d}" / f"e{f}" / "x.txt").write_bytes(b"x" * (d * 100 + f))
    first = _timeline(src, tmp_path / "set")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    (src / "d1" / "e2" / "x.txt").write_bytes(b"changed")
    (src / "d2" / "new.txt").write_bytes(b"new")
    run = _timeline(src, tmp_path / "set")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    steps = ["engine imported", "the parent's manifest proven", "pass (scan + copies)", "flush_volume",
             "commit (flush + manifest)", "after the commit (step 5)", "Latest.sha256", "read-back"]
    if sys.platform.startswith("linux"):
        steps.append("child forked")   # (the walkers' own marks only when they end before the scan does)
    for step in steps:
        assert step in run.stdout, step
    cpu = re.search(r"pass CPU [0-9.]+ s .*, of which .* [0-9.]+ s \((\d+) items\)", run.stdout)
    assert cpu is not None and int(cpu.group(1)) > 0
    assert run.stdout.rstrip().endswith("rc 0")
    assert (tmp_path / "set" / "Latest" / "src" / "d2" / "new.txt").read_bytes() == b"new"


def test_the_changes_timeline_says_how_to_run_it():
    run = _timeline()
    assert run.returncode == 2 and "changes_timeline.py SRC SET" in run.stderr
