"""The agent in-process on real drives and the real engine: connect, schedule, pause, battery, removal."""

import json
from datetime import timedelta

import pytest

from core.agent.config_file import read_config, update_config
from core.engine.repo import BackupSet
from core.platform.notify import read_log
from tests.support.agent import Battery, add_drive_job, wait_for
from tests.support.cli import run_cli
from tests.support.engine import verify_path
from tests.support.trees import make_tree


def runs(agent, job="Docs"):
    return agent.history.runs(job)


def finished(agent, n, job="Docs"):
    done = [r for r in runs(agent, job) if r.status != "running"]
    return done if len(done) >= n and not agent.running() else None


def kinds(paths):
    """The notifications' kinds; offers of drives other tests mount meanwhile (issue #14) left out."""
    return [n["kind"] for n in read_log(paths.notifications_log) if n["kind"] != "offer"]


@pytest.fixture
def src(tmp_path):
    return make_tree(tmp_path / "Docs", {"a.txt": b"alpha", "sub/b.txt": b"bravo" * 100})


def test_connect_backs_up_by_drive_id_whatever_the_mount_point(paths, make_agent, ext4_drive, src):
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src])
    agent, watcher = make_agent()
    watcher.poll()
    assert agent.present == {drive_id: str(ext4_drive.mount_point)}
    (first,) = wait_for(lambda: finished(agent, 1), what="the first backup")
    assert first.status == "ok" and first.drive_id == drive_id and first.trigger == "connect"
    assert kinds(paths)[-2:] == ["finished", "safe_to_unplug"]

    ext4_drive.unmount()
    watcher.poll()
    assert agent.present == {}
    (src / "a.txt").write_bytes(b"changed")
    new_mount = ext4_drive.mount()                       # same drive, new mount point
    watcher.poll()
    assert agent.present == {drive_id: str(new_mount)}
    second = wait_for(lambda: finished(agent, 2), what="the backup after reconnecting")[0]
    assert second.status == "ok" and second.files_copied == 1
    sets = list((new_mount / "Plugback").glob("*/Docs"))
    assert len(BackupSet.open(sets[0]).snapshot_ids()) == 2


def test_min_interval_skips_a_quick_reconnect(paths, make_agent, ext4_drive, src):
    add_drive_job(paths, ext4_drive.mount_point, [src])
    update_config(paths.config_file, lambda c: setattr(c.jobs[0].triggers, "min_interval_minutes", 60))
    agent, watcher = make_agent()
    watcher.poll()
    wait_for(lambda: finished(agent, 1), what="the first backup")
    ext4_drive.unmount()
    watcher.poll()
    ext4_drive.mount()
    watcher.poll()
    assert agent.pending == {} and agent.queued() == [] and not agent.running()


def test_connect_delay_is_cancellable(paths, make_agent, ext4_drive, src):
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src], delay=30)
    agent, watcher = make_agent()
    watcher.poll()
    assert list(agent.pending) == [drive_id] and agent.pending[drive_id].jobs == ["Docs"]
    assert agent.status()["pending"][0]["jobs"] == ["Docs"]
    assert agent.cancel_pending(drive_id)
    assert agent.pending == {} and runs(agent) == []


def test_pause_stops_automatic_but_not_manual_runs(paths, make_agent, ext4_drive, src):
    add_drive_job(paths, ext4_drive.mount_point, [src])
    agent, watcher = make_agent()
    agent.pause(agent.clock.now() + timedelta(hours=1))
    watcher.poll()
    assert agent.pending == {} and agent.queued() == [] and agent.status()["paused"]
    assert agent.check_schedule() == []
    assert agent.run_job("Docs")                       # by hand: runs anyway
    (run,) = wait_for(lambda: finished(agent, 1))
    assert run.status == "ok" and run.trigger == "manual"
    agent.resume()
    assert not agent.status()["paused"]


def test_pause_expires(paths, make_agent):
    agent, _ = make_agent()
    agent.pause(agent.clock.now() - timedelta(seconds=1))
    assert agent.is_paused() is False


def test_low_battery_holds_automatic_runs(paths, make_agent, ext4_drive, src):
    add_drive_job(paths, ext4_drive.mount_point, [src])
    agent, watcher = make_agent(battery=lambda: Battery(10, 3600, False))
    watcher.poll()
    assert agent.pending == {} and agent.queued() == []
    agent.options.battery = lambda: Battery(10, 3600, True)    # plugged in: fine
    assert agent.battery_ok()
    agent.options.battery = lambda: Battery(50, 3600, False)   # above the 20% threshold
    assert agent.battery_ok()


def test_schedule_runs_a_due_job_and_waits_for_an_absent_drive(paths, make_agent, ext4_drive, src):
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src], on_connect=False)
    update_config(paths.config_file, lambda c: setattr(c.jobs[0].triggers, "schedule", "hourly"))
    agent, watcher = make_agent()
    assert agent.check_schedule() == []               # drive not seen yet: the job waits
    watcher.poll()                                    # connect: never backed up -> catch up now
    (run,) = wait_for(lambda: finished(agent, 1))
    assert run.status == "ok" and run.trigger == "schedule"   # the schedule's catch-up, not a connect trigger
    assert agent.check_schedule() == []               # ran just now: not due
    status = agent.status()["jobs"][0]
    assert status["drive_present"] and status["last_run"]["status"] == "ok" and status["next_due"]
    assert drive_id in agent.present


def test_cli_edit_is_noticed_and_broken_edit_keeps_last_good(paths, make_agent, src):
    agent, watcher = make_agent()
    assert run_cli("job", "add", "Docs", "--source", src, "--to", src.parent / "set").returncode == 0
    watcher.poll()
    assert [j.name for j in agent.config.jobs] == ["Docs"]
    paths.config_file.write_text('{"version": 1, "jobs": [}')
    watcher.poll()
    assert [j.name for j in agent.config.jobs] == ["Docs"] and "previous settings" in agent.problem
    # An agent write now keeps the broken file aside instead of overwriting it silently.
    agent.edit_config(lambda c: setattr(c.prefs, "notifications", False))
    aside = list(paths.config_dir.glob("config.json.broken-*"))
    assert len(aside) == 1 and aside[0].read_text() == '{"version": 1, "jobs": [}'
    assert read_config(paths.config_file).prefs.notifications is False


def test_broken_config_at_start_is_kept_aside_and_reported(paths, make_agent):
    paths.config_file.write_text("not json")
    agent, _ = make_agent()
    assert agent.config.jobs == [] and "damaged" in agent.problem
    assert [p.read_text() for p in paths.config_dir.glob("config.json.broken-*")] == ["not json"]
    assert read_log(paths.notifications_log)[-1]["kind"] == "failed"


def test_stop_cancels_the_running_backup(paths, make_agent, ext4_drive, tmp_path):
    src = make_tree(tmp_path / "Big", {f"f{i:04}.bin": bytes([i % 256]) * 20_000 for i in range(1500)})
    add_drive_job(paths, ext4_drive.mount_point, [src])
    agent, watcher = make_agent()
    watcher.poll()
    wait_for(lambda: agent.running(), what="the backup to start")
    assert agent.stop_job("Docs")
    run = wait_for(lambda: finished(agent, 1), what="the run to end")[0]
    assert run.status in ("cancelled", "ok")   # ok only if it finished before the stop arrived
    if run.status == "cancelled":
        assert kinds(paths)[-1] == "info"


def test_pulling_the_drive_mid_backup_ends_drive_removed_and_next_connect_finishes(
        paths, make_agent, ext4_drive, tmp_path):
    src = make_tree(tmp_path / "Big", {f"f{i:04}.bin": bytes([i % 256]) * 20_000 for i in range(2500)})
    add_drive_job(paths, ext4_drive.mount_point, [src])
    agent, watcher = make_agent()
    watcher.start()
    wait_for(lambda: any((r["progress"] or {}).get("files_done", 0) > 50 for r in agent.running()),
             what="the copy to be under way")
    ext4_drive.unmount(lazy=True)                       # yank it
    run = wait_for(lambda: finished(agent, 1), timeout=60, what="the run to end")[0]
    assert run.status == "drive_removed", agent.history.log(run.id)
    assert "removed" in run.error
    assert kinds(paths)[-1] == "failed"
    mount = ext4_drive.mount()
    second = wait_for(lambda: finished(agent, 2), timeout=120, what="the reconnect backup")[0]
    assert second.status == "ok", agent.history.log(second.id)
    set_path = next((mount / "Plugback").glob("*/Docs"))
    bset = BackupSet.open(set_path)
    assert len(bset.snapshot_ids()) == 1
    assert bset.manifest(bset.snapshot_ids()[-1]).totals.get("files", 2500) == 2500
    assert not verify_path(set_path, read_all=True).damaged
    watcher.stop()


def test_history_and_status_are_json_ready(paths, make_agent, src):
    agent, _ = make_agent()
    from core.agent.config import Destination, Job

    agent.edit_config(lambda c: c.jobs.append(Job(name="Docs", sources=[str(src)],
                                                  destination=Destination(path=str(src.parent / "set")))))
    agent.run_job("Docs")
    wait_for(lambda: finished(agent, 1))
    json.dumps(agent.status())
    assert agent.status()["jobs"][0]["last_run"]["status"] == "ok"
    # A folder job has no drive: finished, but no "safe to unplug".
    assert kinds(paths) == ["finished"]


def test_a_job_added_for_a_plugged_in_drive_runs(paths, make_agent, ext4_drive, src):
    """Enroll, start the agent, then add the job: the drive is already there, so the job runs."""
    from core.agent.drives import enroll

    info, _ = enroll(ext4_drive.mount_point, "Blue")
    update_config(paths.config_file, lambda c: (c.drives.append({"drive_id": info.drive_id, "label": "Blue"}),
                                                setattr(c.prefs, "connect_delay_seconds", 0)))
    agent, watcher = make_agent()
    watcher.poll()
    assert agent.present == {info.drive_id: str(ext4_drive.mount_point)} and agent.queued() == []
    r = run_cli("job", "add", "Docs", "--source", src, "--drive", "Blue", "--on-connect")
    assert r.returncode == 0, r.stderr
    watcher.poll()
    assert wait_for(lambda: finished(agent, 1))[0].status == "ok"
    # Another settings change does not re-run it.
    agent.edit_config(lambda c: setattr(c.prefs, "battery_threshold", 30))
    watcher.poll()
    assert agent.pending == {} and agent.queued() == [] and len(runs(agent)) == 1


def test_monthly_integrity_check_reads_everything_back(paths, src, tmp_path):
    """The monthly check is the rolling check's catch-up (issue #14; more in test_rolling.py)."""
    from datetime import datetime, timezone

    from core.agent.agent import Agent
    from core.agent.agent_state import AgentOptions
    from core.agent.config import Destination, Job
    from core.engine.layout import SetLayout
    from core.engine.progress import FakeClock

    clock = FakeClock(datetime(2026, 1, 1, 12, tzinfo=timezone.utc))
    agent = Agent(paths, clock=clock, options=AgentOptions(battery=lambda: None, rolling_delay=0))
    set_path = tmp_path / "set"

    def checks(n):
        done = [r for r in agent.history.runs("Docs", kind="verify") if r.status != "running"]
        return done if len(done) >= n and not agent.rolling.checking(f"path:{set_path}") else None
    try:
        agent.edit_config(lambda c: c.jobs.append(Job(name="Docs", sources=[str(src)],
                                                      destination=Destination(path=str(set_path)))))
        agent.run_job("Docs")
        wait_for(lambda: finished(agent, 1))
        (first,) = wait_for(lambda: checks(1), what="the rolling check after the backup")  # a small set: whole
        assert first.status == "ok" and first.kind == "verify"
        clock.advance(86400)
        assert agent.check_integrity() == []                 # a day later: not yet
        clock.advance(30 * 86400)
        assert agent.check_integrity() == ["Docs"]
        check = wait_for(lambda: checks(2), what="the monthly check")[0]
        assert check.status == "ok" and check.kind == "verify"
        assert agent.check_integrity() == []                 # just checked
        # Bit rot on the drive, in a file changed on this computer since: loud, and not repairable.
        victim = SetLayout(set_path).latest / "Docs" / "a.txt"
        victim.write_bytes(b"alphX")
        (src / "a.txt").write_bytes(b"alpha, edited since")
        clock.advance(31 * 86400)
        assert agent.check_integrity() == ["Docs"]
        bad = wait_for(lambda: checks(3), what="the third check")[0]
        assert bad.status == "failed" and bad.error_code == "damaged" and "a.txt" in agent.history.log(bad.id)
        assert read_log(paths.notifications_log)[-1]["kind"] == "failed"
    finally:
        agent.shutdown()


def test_a_drive_that_answers_late_is_still_recognised(paths, make_agent, ext4_drive, src):
    """FUSE drives can be listed before they answer: drive.json is looked at again for a few seconds."""
    from core.engine.layout import drive_file

    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src])
    hidden = drive_file(ext4_drive.mount_point).with_name("drive.json.later")
    drive_file(ext4_drive.mount_point).rename(hidden)
    agent, watcher = make_agent()
    watcher.poll()
    assert agent.present == {}
    hidden.rename(drive_file(ext4_drive.mount_point))
    watcher.poll()
    assert agent.present == {drive_id: str(ext4_drive.mount_point)}
    wait_for(lambda: finished(agent, 1), what="the backup")
    watcher.poll()
    watcher.poll()
    assert len(runs(agent)) == 1 and agent.queued() == []
