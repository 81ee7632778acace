"""Issue 3's "done when", as a new user would do it, on ext4 and on exFAT through FUSE.

plugback-tray runs (headless, in its own process, default settings); a drive
image is loop-mounted and enrolled with the CLI; a job with --on-connect is
added with the CLI. Unplug and plug the drive in at a different mount point:
the backup starts within 5 s, finishes, a new snapshot is on the drive, the
history has the run and "safe to unplug" was sent. Then the drive is pulled
mid-backup (lazy unmount): the run ends "drive removed", nothing committed is
damaged, and the next connect finishes the work.
"""

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from core.agent.config import Paths
from core.agent.ipc import call
from core.engine.repo import BackupSet
from core.errors import AgentUnavailable
from core.platform.notify import read_log
from tests.support.agent import wait_for
from tests.support.cli import run_cli
from tests.support.drives import _device_open
from tests.support.engine import verify_path
from tests.support.env import subprocess_env
from tests.support.trees import make_tree

pytestmark = pytest.mark.slow


def status(paths):
    try:
        return call("status", paths)
    except AgentUnavailable:
        return None


def runs(paths):
    return call("history", paths, job="Docs")


def done_runs(paths):
    st = call("status", paths)
    job = st["jobs"][0] if st["jobs"] else None
    if job is None or job["running"] or job["queued"] or st["pending"]:
        return None
    return [r for r in runs(paths) if r["status"] != "running"]


def plug_back_in(drive):
    if drive.kind.fuse:
        # The FUSE daemon of a yanked exFAT mount must let go of the device first.
        wait_for(lambda: not _device_open(drive.device), 30, "the old FUSE daemon to exit")
    return drive.mount()


@pytest.mark.parametrize("fstype", ["ext4", "exfat"])
def test_plug_in_backs_up_and_pulling_it_is_survived(make_drive, tmp_path, fstype):
    paths = Paths.default()
    drive = make_drive(fstype, size_mb=256, label="BLUE")
    src = make_tree(tmp_path / "Documents", {"letter.txt": b"Dear ...", "photos/cat.jpg": b"\xff\xd8" * 5000})
    agent = subprocess.Popen([str(Path(sys.executable).parent / "plugback-tray"), "--no-icon"],
                             env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: status(paths) or agent.poll() is not None, 30, "the agent")
        assert agent.poll() is None
        r = run_cli("drive", "init", drive.mount_point, "--label", "Blue")
        assert r.returncode == 0, r.stderr
        r = run_cli("job", "add", "Docs", "--source", src, "--drive", "Blue", "--on-connect")
        assert r.returncode == 0, r.stderr
        # The agent notices the new job and the connected drive by itself.
        first = wait_for(lambda: done_runs(paths), 60, "the first backup")
        assert [x["status"] for x in first] == ["ok"]

        # Unplug, change a file, plug in at a different mount point.
        old_mount = drive.mount_point
        drive.unmount()
        (src / "letter.txt").write_bytes(b"Dear Sir, ...")
        plugged = datetime.now(timezone.utc)
        new_mount = plug_back_in(drive)
        assert new_mount != old_mount
        started = wait_for(lambda: [x for x in runs(paths)
                                    if datetime.fromisoformat(x["started"]) >= plugged], 10, "the backup to start")
        delay = (datetime.fromisoformat(started[0]["started"]) - plugged).total_seconds()
        assert delay < 5.0, f"the backup started {delay:.1f} s after plugging in"
        print(f"{fstype}: backup started {delay:.1f} s after the mount command began")
        second = wait_for(lambda: (done_runs(paths) or [None])[0] if len(done_runs(paths) or []) >= 2 else None,
                          60, "the second backup")
        assert second["id"] == started[0]["id"] and second["status"] == "ok" and second["files_copied"] == 1
        set_path = next((new_mount / "Plugback").glob("*/Docs"))
        bset = BackupSet.open(set_path)
        assert len(bset.snapshot_ids()) == 2 and bset.snapshot_ids()[-1] == second["snapshot_id"]
        notes = [n for n in read_log(paths.notifications_log)   # other drives mounted meanwhile are offered
                 if datetime.fromisoformat(n["time"]) >= plugged and n["kind"] != "offer"]
        assert [n["kind"] for n in notes] == ["finished", "safe_to_unplug"]
        assert "safe to unplug" in notes[-1]["title"]

        # Pull the drive in the middle of a bigger backup.
        make_tree(src / "many", {f"f{i:04}.bin": bytes([i % 256]) * 30_000 for i in range(3000)})
        drive.unmount()
        pulled_from = plug_back_in(drive)
        wait_for(lambda: any(((j["progress"] or {}).get("files_done") or 0) > 100
                             for j in (status(paths) or {"jobs": []})["jobs"]), 60, "the copy to be under way")
        drive.unmount(lazy=True)
        third = wait_for(lambda: (done_runs(paths) or [None])[0] if len(done_runs(paths) or []) >= 3 else None,
                         60, "the interrupted run to end")
        assert third["status"] == "drive_removed", third
        assert "removed" in third["error"]

        # Plug it in again: what was committed is intact, and the work is finished.
        mount = plug_back_in(drive)
        assert mount != pulled_from
        set_path = next((mount / "Plugback").glob("*/Docs"))
        fourth = wait_for(lambda: (done_runs(paths) or [None])[0] if len(done_runs(paths) or []) >= 4 else None,
                          120, "the run after reconnecting")
        assert fourth["status"] == "ok", call("run_log", paths, run_id=fourth["id"])
        bset = BackupSet.open(set_path)
        assert len(bset.snapshot_ids()) == 3
        assert verify_path(set_path, read_all=True).damaged == []
        manifest = bset.manifest(bset.snapshot_ids()[-1])
        assert sum(1 for e in manifest.entries if e.path.startswith("Documents/many/")) == 3000
        assert call("quit", paths) == {}
        assert agent.wait(30) == 0
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.wait(30)
