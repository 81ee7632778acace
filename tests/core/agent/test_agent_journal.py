"""The change journal in the real agent on a real drive (issue #12): which scan each run gets, and the
status and history saying why — across a restart, an overflow, a watch limit and "Full check now";
and live mode: a new file backed up within the quiet period + 5 s, one run of a job at a time."""

from __future__ import annotations

import sys
import time

import pytest

from core.agent.config_file import update_config
from core.agent.handlers import Handlers
from core.agent.history import Trigger
from core.agent.jobs import engine_cache
from core.engine.repo import BackupSet
from core.engine.trust import TrustRecord
from tests.support.agent import add_drive_job, wait_for
from tests.support.trees import make_tree

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="real inotify: Linux only")


@pytest.fixture
def src(tmp_path):
    return make_tree(tmp_path / "Docs", {"a.txt": b"alpha", "sub/b.txt": b"bravo", "other/c.txt": b"c"})


def done(agent, n, job="Docs"):
    runs = [r for r in agent.history.runs(job) if r.status != "running"]
    return runs if len(runs) >= n and not agent.running() and not agent.queued() else None


def job_status(agent, name="Docs"):
    return next(j for j in Handlers(agent).status({})["jobs"] if j["name"] == name)


def latest_paths(mount, job="Docs"):
    """The newest snapshot's file paths, read back from the drive."""
    (set_path,) = [p for p in (mount / "Plugback").glob("*/" + job)]
    bset = BackupSet.open(set_path, None)
    newest = bset.snapshots()[-1].id
    with bset.open_manifest(newest) as reader:
        return {e.path for e in reader}


def start(make_agent, **kw):
    agent, watcher = make_agent(**kw)
    agent.start_watching()
    watcher.poll()
    return agent, watcher


def test_second_run_uses_the_journal_and_a_restart_means_a_full_scan(paths, make_agent, ext4_drive, src):
    add_drive_job(paths, ext4_drive.mount_point, [src])
    agent, watcher = start(make_agent)
    (first,) = wait_for(lambda: done(agent, 1), what="the first backup")
    assert "scan: every folder, because this is the job's first backup" in agent.history.log(first.id)
    assert job_status(agent)["scan"] == "full"
    (src / "sub/b.txt").write_bytes(b"edited")
    wait_for(lambda: job_status(agent)["changed_folders"], what="the edit in the journal")
    assert job_status(agent)["next_scan"] == "journal"
    agent.run_job("Docs")
    second = wait_for(lambda: done(agent, 2), what="the second backup")[0]
    assert second.snapshot_id and "scan: only what changed since snapshot" in agent.history.log(second.id)
    st = job_status(agent)
    assert (st["scan"], st["full_scan_reason"]) == ("journal", "this is the job's first backup")
    assert "Docs/sub/b.txt" in latest_paths(ext4_drive.mount_point)
    (set_path,) = (ext4_drive.mount_point / "Plugback").glob("*/Docs")
    record = TrustRecord(engine_cache(paths), BackupSet.open(set_path, None).set_id)   # the engine got a cache
    assert record.hash_of(first.snapshot_id) and record.hash_of(second.snapshot_id)
    agent.shutdown()

    again, _ = start(make_agent)                 # a new agent: nobody watched in between
    st = job_status(again)
    assert st["next_scan"] == "full" and "was not watching" in st["next_scan_reason"]
    again.run_job("Docs")
    third = wait_for(lambda: done(again, 3), what="the backup after the restart")[0]
    assert "because Plugback was not watching the folders" in again.history.log(third.id)
    assert job_status(again)["scan"] == "full"
    assert "was not watching" in job_status(again)["full_scan_reason"]


def test_overflow_and_full_check_are_said_in_status(paths, make_agent, ext4_drive, src):
    add_drive_job(paths, ext4_drive.mount_point, [src])
    agent, _ = start(make_agent)
    wait_for(lambda: done(agent, 1), what="the first backup")
    agent.changes.watches["Docs"]._report("overflow")      # what the inotify overflow hook calls
    assert "dropped change events" in job_status(agent)["next_scan_reason"]
    agent.run_job("Docs")
    run = wait_for(lambda: done(agent, 2), what="the run after the overflow")[0]
    assert "dropped change events" in agent.history.log(run.id)
    assert job_status(agent)["next_scan"] == "journal"     # trusted again from that snapshot on

    Handlers(agent).full_check({"name": "Docs"})
    run = wait_for(lambda: done(agent, 3), what="the full check")[0]
    assert "a full check was asked for" in agent.history.log(run.id)
    assert job_status(agent)["full_scan_reason"].startswith("a full check was asked for")



def test_the_watch_limit_means_full_scans_and_status_says_how_to_raise_it(paths, make_agent, ext4_drive, src,
                                                                          monkeypatch):
    """The kernel's ENOSPC from inotify_add_watch past fs.inotify.max_user_watches, after the first watch
    (the limit is per user: lowering the real one would break every other inotify user on this machine)."""
    import ctypes
    import errno

    from watchdog.observers import inotify_c

    real, calls = inotify_c.inotify_add_watch, []

    def limited(fd, path, mask):
        calls.append(path)
        if len(calls) > 1:
            ctypes.set_errno(errno.ENOSPC)
            return -1
        return real(fd, path, mask)

    monkeypatch.setattr(inotify_c, "inotify_add_watch", limited)
    add_drive_job(paths, ext4_drive.mount_point, [src])
    agent, _ = start(make_agent)
    wait_for(lambda: done(agent, 1), what="the first backup")
    st = job_status(agent)
    assert st["next_scan"] == "full" and "sudo sysctl fs.inotify.max_user_watches=524288" in st["next_scan_reason"]
    agent.run_job("Docs")
    run = wait_for(lambda: done(agent, 2), what="the second backup")[0]
    assert "fs.inotify.max_user_watches" in agent.history.log(run.id)
    assert "fs.inotify.max_user_watches" in job_status(agent)["full_scan_reason"]


def make_live(paths, quiet=1):
    def change(cfg):
        cfg.jobs[0].triggers.live = True
        cfg.prefs.live_quiet_seconds = quiet
    update_config(paths.config_file, change)


def test_live_mode_backs_up_a_new_file_within_quiet_plus_5s_one_run_at_a_time(paths, make_agent, ext4_drive,
                                                                                src):
    add_drive_job(paths, ext4_drive.mount_point, [src], on_connect=False)
    make_live(paths, quiet=1)
    agent, _ = start(make_agent)
    (first,) = wait_for(lambda: done(agent, 1), what="the backup when the live job's drive came")
    assert first.trigger == Trigger.CONNECT
    (src / "new.txt").write_bytes(b"new")
    t0 = time.monotonic()
    wait_for(lambda: "Docs/new.txt" in latest_paths(ext4_drive.mount_point), timeout=1 + 5,
             what="the new file in a snapshot within quiet + 5 s")
    assert time.monotonic() - t0 >= 1.0 - 0.2            # not before the quiet period
    # Keep changing for a while: runs follow, never two of the job at once.
    for i in range(12):
        (src / f"burst-{i}.txt").write_bytes(b"x")
        time.sleep(0.25)
    wait_for(lambda: "Docs/burst-11.txt" in latest_paths(ext4_drive.mount_point) and done(agent, 1), timeout=30,
             what="the last change backed up")
    runs = sorted(agent.history.runs("Docs"), key=lambda r: r.started)
    assert all(r.trigger == Trigger.LIVE for r in runs[1:])
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert earlier.ended is not None and earlier.ended <= later.started, "two runs of the job overlapped"
    assert 2 <= len(runs) <= 8                             # debounced: not one run per change


def test_live_runs_wait_while_paused(paths, make_agent, ext4_drive, src):
    add_drive_job(paths, ext4_drive.mount_point, [src], on_connect=False)
    make_live(paths, quiet=1)
    agent, _ = start(make_agent)
    wait_for(lambda: done(agent, 1), what="the connect backup")
    agent.pause(None)
    (src / "while-paused.txt").write_bytes(b"p")
    time.sleep(2.5)                                        # two quiet periods: nothing may start
    assert len(agent.history.runs("Docs")) == 1
    agent.resume()
    wait_for(lambda: "Docs/while-paused.txt" in latest_paths(ext4_drive.mount_point), timeout=1 + 5,
             what="the change backed up after resuming")
