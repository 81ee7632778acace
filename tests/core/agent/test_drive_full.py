"""Drive full through the real agent (issue #14): small real ext4 drives, the real engine, the notification log."""

from __future__ import annotations

import os
import shutil

import pytest

from core.engine.repo import BackupSet
from core.platform.notify import read_log
from tests.support.agent import add_drive_job, wait_for
from tests.support.engine import restore_path, verify_path
from tests.support.trees import read_tree

MB = 1 << 20


def finished(agent, n, job="Docs"):
    done = [r for r in agent.history.runs(job) if r.status != "running"]
    return done if len(done) >= n and not agent.running() else None


def the_set(mount):
    (found,) = (mount / "Plugback").glob("*/Docs")
    return found


@pytest.fixture
def src(tmp_path):
    folder = tmp_path / "Docs"
    folder.mkdir()
    (folder / "notes.txt").write_bytes(b"notes")
    return folder


def test_a_small_drive_filled_over_several_runs(paths, make_agent, make_drive, src, tmp_path):
    """Every run succeeds; the oldest backups go (notified, with what went), never the newest."""
    drive = make_drive("ext4", size_mb=40)
    add_drive_job(paths, drive.mount_point, [src], on_connect=False)
    agent, watcher = make_agent()
    watcher.poll()
    ids_seen: list[str] = []
    for n in range(1, 6):
        (src / "big.bin").write_bytes(os.urandom(9 * MB))    # a new version each run
        assert agent.run_job("Docs")
        runs = wait_for(lambda n=n: finished(agent, n), timeout=60, what=f"backup {n}")
        assert runs[0].status == "ok", runs[0].error
        bset = BackupSet.open(the_set(drive.mount_point))
        ids = bset.snapshot_ids()
        assert ids[-1] == runs[0].snapshot_id                      # the newest is this run's
        ids_seen.append(ids[-1])
        out = tmp_path / f"out{n}"
        restore_path(bset.root, out)
        assert read_tree(out / "Docs") == read_tree(src)
    kept = BackupSet.open(the_set(drive.mount_point)).snapshot_ids()
    gone = [i for i in ids_seen if i not in kept]
    assert gone and gone == ids_seen[:len(gone)]                    # the oldest went, in order
    made_room = [n for n in read_log(paths.notifications_log) if n["title"] == "Docs: made room on the drive"]
    assert made_room and all(n["kind"] == "info" for n in made_room)
    assert "oldest backup" in made_room[0]["message"] and "MB freed" in made_room[0]["message"]
    assert sum(1 for n in read_log(paths.notifications_log) if n["kind"] == "failed") == 0
    logs = [agent.history.log(r.id) or "" for r in finished(agent, 5)]
    assert any(f"room: removed {gone[0]}" in text for text in logs)      # the run's log names them
    assert verify_path(the_set(drive.mount_point), read_all=True).ok


def test_a_run_that_cannot_fit_fails_before_writing(paths, make_agent, make_drive, src):
    """A new 30 MB drive and a 58 MB folder: failed with the numbers and a code the window acts on."""
    drive = make_drive("ext4", size_mb=30)
    for i in range(4):
        (src / f"part{i}.bin").write_bytes(os.urandom(14_500_000))
    add_drive_job(paths, drive.mount_point, [src], on_connect=False)
    agent, watcher = make_agent()
    watcher.poll()
    free = shutil.disk_usage(drive.mount_point).free
    assert agent.run_job("Docs")
    (run,) = wait_for(lambda: finished(agent, 1), timeout=60, what="the failed run")
    assert run.status == "failed" and run.error_code == "drive_full"
    assert "needs about 59" in run.error and "MB free" in run.error, run.error
    assert "intact" not in run.error and "no complete backup" in run.error
    assert "plugback" not in run.error.lower() and "SET" not in run.error
    assert shutil.disk_usage(drive.mount_point).free >= free - 64 * 1024     # only the empty set's folders
    assert BackupSet.open(the_set(drive.mount_point)).snapshot_ids() == []
    (note,) = [n for n in read_log(paths.notifications_log) if n["kind"] == "failed"]
    assert note["title"] == "Docs: backup failed" and "needs about 59" in note["message"]
    status = agent.status()
    (job,) = status["jobs"]
    assert job["last_attempt"]["error_code"] == "drive_full"
