"""bench/readers.py must not rot: on a small real set, one warm round of this checkout's readers
(``HashPool`` over the newest's files), every file checked out (speed is never asserted)."""

import json
import subprocess
import sys
from pathlib import Path

from tests.support.engine import backup_path
from tests.support.env import subprocess_env
from tests.support.trees import make_tree

ROOT = Path(__file__).resolve().parents[2]


def test_the_readers_bench_times_the_pool_over_the_newest(tmp_path):
    src = make_tree(tmp_path / "src" / "Data", {f"d{d}/f{i}.txt": f"{d} {i} ".encode() * (i + 1)
                                                for d in range(3) for i in range(40)})
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "readers.py"), str(set_path), "--warm",
                           "--rounds", "1", "--json", str(out)], capture_output=True, text=True, timeout=120,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = json.loads(out.read_text())["this"]
    assert run["files"] == 120 and run["problems"] == 0
    assert run["wall"] > 0 and run["cpu"] > 0
    assert "| this |" in proc.stdout
