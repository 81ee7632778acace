"""``plugback versions SET PATH``: the distinct versions of one file, oldest first (issue #14)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from core.engine.progress import FakeClock
from core.engine.repo import BackupSet
from core.engine.versions import versions
from core.errors import NotFound, UsageError
from tests.support.cli import run_cli
from tests.support.engine import backup_path
from tests.support.trees import make_tree

PASS = {"PLUGBACK_PASSPHRASE": "correct horse battery staple"}


@pytest.fixture
def history(tmp_path):
    """A set with four snapshots in which Docs/a.txt goes A, A, B, A and Docs/b.txt is added last."""
    src = make_tree(tmp_path / "Docs", {"a.txt": b"version A", "sub/": None})
    set_path = tmp_path / "set"
    clock = FakeClock(datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc))
    ids = []
    for content in (b"version A", b"version A", b"version B, longer", b"version A"):
        (src / "a.txt").write_bytes(content)
        if len(ids) == 3:
            (src / "b.txt").write_bytes(b"new")
        ids.append(backup_path(set_path, [src], clock=clock).snapshot_id)
        clock.advance(timedelta(hours=1).total_seconds())
    return set_path, ids


def test_only_changed_contents_are_versions_oldest_first(history):
    set_path, ids = history
    found = versions(BackupSet.open(set_path), "Docs/a.txt")
    assert [v.snapshot_id for v in found] == [ids[0], ids[2], ids[3]]   # A, B, A again
    assert [v.size for v in found] == [9, 17, 9]
    assert found[0].sha256 == found[2].sha256 != found[1].sha256
    assert [v.snapshot_id for v in versions(BackupSet.open(set_path), "/Docs/b.txt/")] == [ids[3]]


def test_a_folder_a_missing_file_and_an_unsafe_path_are_clear_errors(history):
    bset = BackupSet.open(history[0])
    with pytest.raises(UsageError, match="is a folder"):
        versions(bset, "Docs/sub")
    with pytest.raises(NotFound, match="no file 'Docs/nope.txt'"):
        versions(bset, "Docs/nope.txt")
    with pytest.raises(UsageError, match="not a path inside the backup"):
        versions(bset, "Docs/../../etc/passwd")


def test_cli_prints_text_and_a_json_array(history):
    set_path, ids = history
    proc = run_cli("versions", set_path, "Docs/a.txt", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list) and [r["snapshot"] for r in rows] == [ids[0], ids[2], ids[3]]
    assert set(rows[0]) == {"snapshot", "time", "size", "sha256", "mtime_ns"}
    text = run_cli("versions", set_path, "Docs/a.txt")
    assert text.returncode == 0 and len(text.stdout.splitlines()) == 3 and ids[2] in text.stdout
    missing = run_cli("versions", set_path, "Docs/nope.txt")
    assert missing.returncode != 0 and "plugback ls" in missing.stderr and "Traceback" not in missing.stderr


def test_versions_of_an_encrypted_set(tmp_path):
    src = make_tree(tmp_path / "Docs", {"a.txt": b"one"})
    set_path = tmp_path / "set"
    assert run_cli("backup", src, "--to", set_path, "--encrypt", env=PASS).returncode == 0
    (src / "a.txt").write_bytes(b"two")
    assert run_cli("backup", src, "--to", set_path, env=PASS).returncode == 0
    proc = run_cli("versions", set_path, "Docs/a.txt", "--json", env=PASS)
    assert proc.returncode == 0, proc.stderr
    assert [r["size"] for r in json.loads(proc.stdout)] == [3, 3]
