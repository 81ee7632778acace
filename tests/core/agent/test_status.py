"""Truthful status (issue #15): a failed run is never shown as a backup, and "needs attention" is one rule.

The agent runs in-process on the real engine; runs fail for real (a source folder that is gone,
a drive that is pulled) and succeed for real.
"""

import shutil
from datetime import datetime, timedelta, timezone

import pytest

from core.agent.config import Config, Destination, Job
from core.agent.config_file import update_config
from core.agent.handlers import Handlers
from core.agent.status import describe, job_record
from core.agent.words import local_time, plural, size
from core.errors import UsageError
from tests.support.agent import add_drive_job, wait_for
from tests.support.trees import make_tree


def add_path_job(paths, name, src, dest):
    update_config(paths.config_file, lambda cfg: cfg.jobs.append(
        Job(name=name, sources=[str(src)], destination=Destination(path=str(dest)))))


def run_and_wait(agent, name):
    before = len(agent.history.runs(name))
    assert agent.run_job(name)
    return wait_for(lambda: len([r for r in agent.history.runs(name) if r.status != "running"]) > before
                    and not agent.running() and agent.history.runs(name)[0], what=f"{name} to finish")


def test_a_failed_first_run_is_an_attempt_not_a_backup_and_a_success_clears_it(paths, make_agent, tmp_path):
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
    add_path_job(paths, "Docs", tmp_path / "gone", tmp_path / "set")
    agent, _ = make_agent()
    failed = run_and_wait(agent, "Docs")
    assert failed.status == "failed"

    status = agent.status()
    (job,) = status["jobs"]
    assert job["last_success"] is None and job["last_attempt"]["id"] == failed.id
    assert job["last_attempt"]["status"] == "failed" and "gone" in job["attention"]
    assert status["attention"] == [{"job": "Docs", "message": f"Docs: {job['attention']}"}]
    text = describe(job_record(agent.history, "Docs"), agent.clock.now())
    assert text.startswith("Last successful backup: never · last attempt failed just now: ")
    state = agent.tray_state()
    assert state.jobs[0]["attention"] and state.jobs[0]["last_ok"] is None

    # Fixed: the next run succeeds, the attention goes, and the success is the last backup.
    update_config(paths.config_file, lambda cfg: setattr(cfg.jobs[0], "sources", [str(src)]))
    agent.check_config()
    ok = run_and_wait(agent, "Docs")
    (job,) = agent.status()["jobs"]
    assert ok.status == "ok" and job["attention"] is None and agent.status()["attention"] == []
    assert job["last_success"]["id"] == job["last_attempt"]["id"] == ok.id
    assert describe(job_record(agent.history, "Docs"), agent.clock.now()) == "Last successful backup: just now"


def test_a_stopped_run_needs_no_attention(paths, make_agent, tmp_path):
    from core.agent.history import RunEnd, RunStatus

    add_path_job(paths, "Docs", make_tree(tmp_path / "Docs", {"a": b"a"}), tmp_path / "set")
    agent, _ = make_agent()
    run_id = agent.history.start("Docs", agent.clock.now())
    agent.history.finish(run_id, RunEnd(status=RunStatus.CANCELLED, ended=agent.clock.now(), error="Stopped."))
    (job,) = agent.status()["jobs"]
    assert job["attention"] is None and job["last_attempt"]["status"] == "cancelled"
    assert "last attempt was stopped" in describe(job_record(agent.history, "Docs"), agent.clock.now())


@pytest.mark.realdrive
def test_a_drive_whose_run_failed_shows_its_last_success_and_its_failed_attempt(paths, make_agent, ext4_drive,
                                                                                 tmp_path):
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src], on_connect=False)
    agent, watcher = make_agent()
    watcher.poll()
    ok = run_and_wait(agent, "Docs")
    shutil.rmtree(src)
    failed = run_and_wait(agent, "Docs")
    assert ok.status == "ok" and failed.status == "failed"
    (drive,) = agent.status()["drives"]
    assert drive["drive_id"] == drive_id
    assert drive["last_success"]["id"] == ok.id and drive["last_attempt"]["id"] == failed.id
    assert drive["attention"]


@pytest.mark.realdrive
def test_a_manual_run_replaces_the_automatic_one_waiting_to_start(paths, make_agent, ext4_drive, tmp_path):
    """One backup, not two, and 'safe to unplug' once (issue #15, journey 4)."""
    from core.platform.notify import read_log

    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src], delay=600)
    agent, watcher = make_agent()
    watcher.poll()
    assert agent.pending[drive_id].jobs == ["Docs"]
    run = run_and_wait(agent, "Docs")
    assert run.status == "ok" and run.trigger == "manual"
    assert agent.pending == {} and agent.queued() == [] and len(agent.history.runs("Docs")) == 1
    assert [n["kind"] for n in read_log(paths.notifications_log)] == ["connect", "finished", "safe_to_unplug"]


@pytest.mark.realdrive
def test_no_safe_to_unplug_while_another_backup_waits_for_the_drive(paths, make_agent, ext4_drive, tmp_path):
    from core.platform.notify import read_log

    docs = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
    pics = make_tree(tmp_path / "Pics", {"p.jpg": b"meow"})
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [docs], delay=600)
    add_drive_job(paths, ext4_drive.mount_point, [pics], name="Pics", delay=600)
    agent, watcher = make_agent()
    watcher.poll()
    assert agent.pending[drive_id].jobs == ["Docs", "Pics"]
    run_and_wait(agent, "Docs")                       # Pics still waits out the connect delay
    assert [n["kind"] for n in read_log(paths.notifications_log)] == ["connect", "finished"]   # one plug-in note
    run_and_wait(agent, "Pics")                       # nothing waits any more: now it is safe
    assert [n["kind"] for n in read_log(paths.notifications_log)] == ["connect", "finished", "finished",
                                                                      "safe_to_unplug"]


def test_the_name_rule_is_checked_before_anything_is_written(paths, make_agent, tmp_path):
    agent, _ = make_agent()
    handlers = Handlers(agent).table()
    with pytest.raises(UsageError) as err:
        handlers["validate_job"]({"job": {"name": "Docs/2025 backup"}})
    assert err.value.code == "bad_input"
    assert err.value.message.startswith("The name “Docs/2025 backup” cannot be used: a job name has 1-64 characters")
    assert "settings file" not in err.value.message
    job = {"name": "Docs/2025 backup", "sources": [str(tmp_path)], "destination": {"path": str(tmp_path / "s")}}
    with pytest.raises(UsageError) as again:
        handlers["job_save"]({"job": job})
    assert again.value.message == err.value.message
    assert not paths.config_file.exists()
    assert handlers["validate_job"]({"job": {"name": "Docs 2025"}}) == {"name": "Docs 2025"}
    handlers["job_save"]({"job": {**job, "name": "Docs"}})
    with pytest.raises(UsageError, match="A job named 'Docs' exists"):
        handlers["validate_job"]({"job": {"name": "docs"}})
    assert handlers["validate_job"]({"job": {"name": "docs"}, "original_name": "Docs"}) == {"name": "docs"}
    with pytest.raises(UsageError, match="This job cannot be saved: 'job.triggers.schedule_fields'"):
        handlers["validate_job"]({"job": {**job, "name": "Pics", "triggers": {"schedule_fields": {"kind": "x"}}}})
    assert [j.name for j in Config.from_dict(__import__("json").loads(paths.config_file.read_text())).jobs] == ["Docs"]


@pytest.mark.parametrize("n,word,text", [(0, "file", "0 files"), (1, "file", "1 file"), (43, "file", "43 files"),
                                         (1, "snapshot", "1 snapshot"), (1204, "copy", "1,204 copies")])
def test_plural(n, word, text):
    assert plural(n, word) == text


def test_sizes_and_local_times():
    assert size(1536) == "1.5 KB" and size(None) == "unknown" and size(999) == "999 B"
    now = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc).astimezone()
    assert local_time(now.replace(hour=14, minute=30), now) == "today 14:30"
    assert local_time((now + timedelta(days=1)).replace(hour=12, minute=0), now) == "tomorrow 12:00"
    assert local_time(now.replace(hour=9, minute=5) + timedelta(days=3), now).endswith(" 09:05")
    assert "T" not in local_time(now.isoformat(), now)           # never a raw ISO timestamp
