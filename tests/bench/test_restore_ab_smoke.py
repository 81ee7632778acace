"""bench/restore_ab.sh must not rot: one round on a tiny set — a checkout's plugback restore,
restic's, borg's and `cp -a`, each succeeding and timed (speed is never asserted). Root only (the
script drops the page cache)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import subprocess_env
from tests.support.tools import need

ROOT = Path(__file__).resolve().parents[2]
LINE = r"{} [\d.]+ [\d.]+ [\d.]+ \d+ load=[\d.]+$"


def _run(cmd, cwd, **env):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**subprocess_env(), **env})
    assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="drops the page cache: root only")
def test_restore_ab_restores_with_plugback_restic_borg_and_cp(tmp_path):
    need("restic", "borg")
    work = tmp_path / "work"
    for d in range(3):
        (work / "src" / f"d{d}").mkdir(parents=True)
        for f in range(4):
            (work / "src" / f"d{d}" / f"f{f}.txt").write_bytes(b"x" * (d * 1000 + f))
    _run([sys.executable, "-P", "-m", "core.cli", "backup", "src", "--to", "set"], work, PYTHONPATH=str(ROOT))
    _run(["restic", "-q", "init", "-r", "restic"], work, RESTIC_PASSWORD="bench")
    _run(["restic", "-q", "-r", "restic", "backup", "src"], work, RESTIC_PASSWORD="bench",
         RESTIC_CACHE_DIR=str(work / "restic-cache"))
    borg = {"BORG_REPO": str(work / "borg"), "BORG_BASE_DIR": str(work / "borg-base"),
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}
    _run(["borg", "init", "--encryption=none"], work, **borg)
    _run(["borg", "create", "::a1", "src"], work, **borg)
    out = _run(["bash", str(ROOT / "bench" / "restore_ab.sh"), str(work), "1", f"this={ROOT}"], tmp_path,
               PYTHON=sys.executable).stdout
    assert "FAIL" not in out, out
    lines = out.splitlines()
    assert lines[0].startswith("round 1 "), out
    for name, line in zip(["this", "restic", "borg", "cp"], lines[1:], strict=True):
        assert re.match(LINE.format(name), line), out
    assert not (work / "out").exists()   # the script leaves no restore behind
