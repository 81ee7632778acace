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
# Stands in for restic, borg, cp and (plugback's restores only) python: counts the entries below
# SHIM_WORK before and after the real command, in SHIM_LOG.
SHIM = r"""#!/bin/bash
name=$(basename "$0")
[ "$name" = python ] && { real=$SHIM_PYTHON; case "$*" in *core.cli*) ;; *) exec "$real" "$@";; esac; } || real=$name
echo "start $name $(find "$SHIM_WORK" | wc -l)" >> "$SHIM_LOG"
PATH=$SHIM_PATH "$real" "$@"
rc=$?
echo "end $name $(find "$SHIM_WORK" | wc -l)" >> "$SHIM_LOG"
exit $rc
"""


def _run(cmd, cwd, **env):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**subprocess_env(), **env})
    assert proc.returncode == 0 and "Error" not in proc.stderr, f"{cmd}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc


def _shims(folder: Path) -> Path:
    folder.mkdir()
    for name in ("restic", "borg", "cp", "python"):
        (folder / name).write_text(SHIM)
        (folder / name).chmod(0o755)
    return folder


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="drops the page cache: root only")
def test_restore_ab_restores_with_plugback_restic_borg_and_cp_and_deletes_nothing_between(tmp_path):
    """Each command's restored tree is kept (moved to WORKDIR/trash) until the last round ends: the
    entries below WORKDIR never drop between two timed commands (the old script ran `rm -rf out`
    before each, on ext4 without a journal the next command's files paid for it)."""
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
    shims, log = _shims(tmp_path / "shims"), tmp_path / "shim.log"
    path = subprocess_env()["PATH"]
    # (run as its usage says, from the checkout: the script finds bench/trash.py from its own path)
    out = _run(["bash", "bench/restore_ab.sh", str(work), "1", f"this={ROOT}"], ROOT,
               PYTHON=str(shims / "python"), PATH=f"{shims}:{path}", SHIM_PATH=path, SHIM_PYTHON=sys.executable,
               SHIM_WORK=str(work), SHIM_LOG=str(log)).stdout
    assert "FAIL" not in out, out
    lines = out.splitlines()
    assert lines[0].startswith("round 1 "), out
    for name, line in zip(["this", "restic", "borg", "cp"], lines[1:5], strict=True):
        assert re.match(LINE.format(name), line), out
    events = [line.split() for line in log.read_text().splitlines()]
    assert [(what, name) for what, name, _ in events[:2]] == [("start", "python"), ("end", "python")], events
    assert [name for what, name, _ in events if what == "start"] == ["python", "restic", "borg", "cp"], events
    counts = [int(n) for _, _, n in events]
    assert counts == sorted(counts), events   # nothing below WORKDIR deleted between timed commands
    assert re.fullmatch(r"deleted \d+ entries after the last round", lines[-1]), out
    assert sorted(os.listdir(work)) == ["borg", "borg-base", "restic", "restic-cache", "set", "src"]
    # KEEP_TRASH=1: the restored trees stay in trash/ for the next run (back-to-back runs on one file system)
    out = _run(["bash", "bench/restore_ab.sh", str(work), "1", f"this={ROOT}"], ROOT,
               PYTHON=str(shims / "python"), PATH=f"{shims}:{path}", SHIM_PATH=path, SHIM_PYTHON=sys.executable,
               SHIM_WORK=str(work), SHIM_LOG=str(log), KEEP_TRASH="1").stdout
    assert out.splitlines()[-1].startswith("kept trash/"), out
    assert len(os.listdir(work / "trash")) == 4   # plugback's, restic's, borg's and cp's trees
