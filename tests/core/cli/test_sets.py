"""``plugback sets [MOUNT] [--json]`` (issue #15) and the recovery-key hint of ``backup --encrypt``,
through the real console script."""

import json

import pytest

from core.agent.drives import enroll
from core.engine.layout import drive_set_path
from tests.support.cli import run_cli
from tests.support.engine import backup_path
from tests.support.trees import make_tree


def old_sets(mount, tmp_path):
    """Two computers' sets on one drive: a plain one and an encrypted one."""
    src = make_tree(tmp_path / "src" / "Documents", {"a.txt": b"alpha"})
    plain = drive_set_path(mount, "old-laptop", "My files")
    backup_path(plain, [src], job="My files", host="old-laptop", parents=True)
    secret = drive_set_path(mount, "desk", "Work")
    backup_path(secret, [src], job="Work", host="desk", parents=True, passphrase="pw")
    return plain, secret


def test_sets_in_a_folder_grouped_by_computer(tmp_path):
    plain, secret = old_sets(tmp_path / "copy", tmp_path)
    proc = run_cli("sets", tmp_path / "copy")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Computer desk:" and lines[1].startswith("  Work  (encrypted, 1 snapshot(s), newest ")
    assert lines[2] == f"    {secret}"
    assert lines[3] == "Computer old-laptop:" and lines[5] == f"    {plain}"
    data = json.loads(run_cli("sets", tmp_path / "copy", "--json").stdout)
    assert [(s["computer"], s["job"], s["encrypted"], s["named_by"]) for s in data["sets"]] == [
        ("desk", "Work", True, "folders"), ("old-laptop", "My files", False, "set")]
    # The set can be restored from with the path it printed.
    out = tmp_path / "out"
    assert run_cli("restore", plain, out).returncode == 0
    assert (out / "Documents" / "a.txt").read_bytes() == b"alpha"


def test_sets_in_a_folder_without_backups_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli("sets", tmp_path / "empty")
    assert proc.returncode == 2
    assert proc.stdout.startswith("No backup sets found.") and "no Plugback backup was found" in proc.stderr


@pytest.mark.realdrive
def test_sets_on_connected_drives(ext4_drive, tmp_path):
    enroll(ext4_drive.mount_point, "Old drive")
    plain, _ = old_sets(ext4_drive.mount_point, tmp_path)
    data = json.loads(run_cli("sets", "--json").stdout)
    mine = [s for s in data["sets"] if s["where"] == str(ext4_drive.mount_point)]
    assert [s["path"] for s in mine] == [str(drive_set_path(ext4_drive.mount_point, "desk", "Work")), str(plain)]
    assert {s["drive_label"] for s in mine} == {"Old drive"}


def test_backup_encrypt_says_where_the_recovery_key_is(tmp_path):
    src = make_tree(tmp_path / "Documents", {"a.txt": b"alpha"})
    set_path = tmp_path / "set"
    proc = run_cli("backup", src, "--to", set_path, "--encrypt", env={"PLUGBACK_PASSPHRASE": "pw"})
    assert proc.returncode == 0, proc.stderr
    assert f"plugback key export {set_path}" in proc.stderr
    # Said when the set is made, not at every backup.
    again = run_cli("backup", src, "--to", set_path, env={"PLUGBACK_PASSPHRASE": "pw"})
    assert again.returncode == 0 and "recovery key" not in again.stderr
    key = run_cli("key", "export", set_path, env={"PLUGBACK_PASSPHRASE": "pw"})
    assert key.returncode == 0 and key.stdout.strip()
