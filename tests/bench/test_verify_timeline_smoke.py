"""bench/verify_timeline.py must not rot: one warm ``verify --read-all`` of a tiny set, its Latest/ read by
the reader processes (``--pool-from 0``), sampled and its steps marked (speed is never asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.engine import backup_path
from tests.support.env import subprocess_env
from tests.support.trees import make_tree

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="samples /proc")
def test_the_verify_timeline_samples_one_verify_and_marks_its_steps(tmp_path):
    src = make_tree(tmp_path / "src", {f"d{i}/f{j}.txt": f"{i} {j}".encode() * 50 for i in range(4) for j in range(5)})
    backup_path(tmp_path / "set", [src])
    (src / "d1" / "f2.txt").write_bytes(b"changed")
    backup_path(tmp_path / "set", [src])
    out = tmp_path / "raw.json"
    proc = subprocess.run([sys.executable, "-P", str(ROOT / "bench" / "verify_timeline.py"), str(tmp_path / "set"),
                           "--warm", "--pool-from", "0", "--rows", "--step", "0.01", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, env={**subprocess_env(), "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "rc 0" in proc.stdout
    for mark in ("HashPool started", "batches handed out: first", "readers' answers: last (", "_read_manifests",
                 "Early.finish", "main returned"):
        assert mark in proc.stdout, mark
    for phase in ("start-up (python, imports)", "first batch to the last answer", "after the last answer", "**all**"):
        assert f"| {phase} |" in proc.stdout, phase
    raw = json.loads(out.read_text())
    assert raw[0]["rc"] == 0 and raw[0]["samples"] and "verify-latest" in raw[0]["tids"]
