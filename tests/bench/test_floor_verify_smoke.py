"""bench/floor_verify.py must not rot: on a tiny set (made by the script: a full backup, a no-change
one, a day of changes; restic likewise), one warm round of restic's check, the openssl and Python
floors and this checkout's verify --read-all, each succeeding (speed is never asserted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.env import subprocess_env
from tests.support.tools import need

ROOT = Path(__file__).resolve().parents[2]


def test_the_verify_floor_times_restic_the_floors_and_plugback(tmp_path):
    """As root, through a nodev bind mount of the workdir (``--nodev``), unmounted after."""
    need("restic")
    out = tmp_path / "r.json"
    nodev = ["--nodev"] if sys.platform.startswith("linux") and os.geteuid() == 0 else []
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "floor_verify.py"), "--warm", "--files", "120",
                           "--rounds", "1", "--floors", "openssl2,python2", "--workdir", str(tmp_path / "w"),
                           "--json", str(out), *nodev], capture_output=True, text=True, timeout=240,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = json.loads(out.read_text())["verify"]
    assert list(runs) == ["peer: restic check --read-data", "floor: openssl, 2 processes",
                          "floor: python, 2 processes x 4 threads", "plugback this"]
    assert all(r["rc"] == 0 for by in runs.values() for r in by)
    assert len(list((tmp_path / "w" / "set" / "snapshots").glob("*.json.gz"))) == 3
    assert "| plugback this |" in proc.stdout
    assert not (tmp_path / "w-nodev").exists()


def test_the_python_floor_reads_every_file_and_follows_no_symlink(tmp_path):
    """Its worker (``--hash-files``): every file read; a symlink among them is not followed (exit 1)."""
    (tmp_path / "a").write_bytes(b"a" * 5000)
    (tmp_path / "b").write_bytes(b"")
    script = [sys.executable, "-S", str(ROOT / "bench" / "floor_verify.py"), "--hash-files"]
    assert subprocess.run([*script, str(tmp_path / "a"), str(tmp_path / "b")]).returncode == 0
    (tmp_path / "l").symlink_to(tmp_path / "a")
    assert subprocess.run([*script, str(tmp_path / "a"), str(tmp_path / "l")]).returncode == 1
