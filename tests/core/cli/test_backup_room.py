"""`plugback backup` on a drive that is too small (issue #14): it stops before writing and names the real
set and the flag; with --make-room it forgets the oldest snapshots instead."""

from __future__ import annotations

import os

from core.engine.repo import BackupSet
from tests.support import run_cli

MB = 1 << 20


def test_backup_that_does_not_fit_names_the_set_and_the_flag(make_drive, tmp_path):
    drive = make_drive("ext4", size_mb=40)
    src = tmp_path / "Data"
    src.mkdir()
    set_path = drive.mount_point / "my set"
    for _ in range(3):
        (src / "big.bin").write_bytes(os.urandom(9 * MB))
        done = run_cli("backup", str(src), "--to", str(set_path), "--no-verify")
        assert done.returncode == 0, done.stderr
    (src / "big.bin").write_bytes(os.urandom(9 * MB))
    ids = BackupSet.open(set_path).snapshot_ids()
    done = run_cli("backup", str(src), "--to", str(set_path), "--no-verify")
    assert done.returncode == 1
    assert "needs about" in done.stderr and "The last complete backup is intact" in done.stderr, done.stderr
    assert f"'{set_path}'" in done.stderr and "--make-room" in done.stderr and " SET " not in done.stderr
    assert BackupSet.open(set_path).snapshot_ids() == ids             # nothing forgotten without the flag
    done = run_cli("backup", str(src), "--to", str(set_path), "--no-verify", "--make-room")
    assert done.returncode == 0, done.stderr
    assert f"Made room: forgot the 1 oldest snapshot(s) ({ids[0]})" in done.stderr
    assert BackupSet.open(set_path).snapshot_ids()[:-1] == ids[1:]
