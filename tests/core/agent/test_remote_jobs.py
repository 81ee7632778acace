"""Jobs backing up to a cloud or network location (issue #13), with Debian's rclone: a ``local``
remote and ``rclone serve webdav`` on 127.0.0.1, run by the in-process agent on a fake clock."""

from datetime import datetime, timezone
from pathlib import Path

import pytest

from core.agent import remote_jobs
from core.agent.config import Config, Destination, Job, Triggers
from core.agent.jobs import job_key_name
from core.agent.keys import store_passphrase, stored_passphrase
from core.engine.progress import FakeClock
from core.errors import ConfigError
from core.platform.notify import read_log
from tests.support.rclone import FAST_FAIL, RcloneWorld, local_and_webdav
from tests.support.trees import make_tree
from tests.support.waiting import wait_for

PASSPHRASE = "correct horse battery"


@pytest.fixture
def src(tmp_path):
    return make_tree(tmp_path / "Docs", {"secret-name.txt": b"alpha content", "sub/b.txt": b"bravo" * 1000})


@pytest.fixture(scope="module")
def rclone_world(tmp_path_factory):
    with local_and_webdav(tmp_path_factory.mktemp("rclone")) as world:
        yield world


@pytest.fixture
def world(rclone_world, monkeypatch, paths) -> RcloneWorld:
    monkeypatch.setenv("RCLONE_CONFIG", str(rclone_world.config))
    monkeypatch.setattr(remote_jobs, "RCLONE_FLAGS", FAST_FAIL)   # a dead server fails at once
    if rclone_world.webdav.proc is None:
        rclone_world.webdav.restart()
    return rclone_world


@pytest.fixture
def agent_on_clock(paths):
    from core.agent.agent import Agent
    from core.agent.agent_state import AgentOptions

    clock = FakeClock(datetime(2026, 11, 26, 12, tzinfo=timezone.utc))
    agent = Agent(paths, clock=clock, options=AgentOptions(battery=lambda: None))
    yield agent, clock
    agent.shutdown(cancel=True, timeout=30)


def remote_job(agent, spec: str, src, schedule: str | None = None) -> None:
    store_passphrase(job_key_name("Docs"), PASSPHRASE)   # as 'plugback job add' or the window keeps it
    agent.edit_config(lambda c: c.jobs.append(Job.from_dict({
        "name": "Docs", "sources": [str(src)], "destination": {"remote": spec},
        "triggers": {"schedule": schedule}})))


def finished(agent, n):
    done = [r for r in agent.history.runs("Docs") if r.status != "running"]
    return done if len(done) >= n and not agent.running() else None


def every_byte(root: Path) -> bytes:
    return b"".join(p.read_bytes() + str(p).encode() for p in sorted(root.rglob("*")) if p.is_file())


# -- config ------------------------------------------------------------------------------------

def test_a_remote_destination_is_checked_and_always_encrypted():
    job = Job.from_dict({"name": "Docs", "sources": ["/home/a"], "destination": {"remote": "rclone:cloud:b/laptop/"}})
    assert job.encrypt and job.destination.remote == "rclone:cloud:b/laptop"
    assert job.destination.key() == "remote:rclone:cloud:b/laptop"
    assert Job.from_dict(job.to_dict()).destination == job.destination
    cases = [({"remote": "cloud:b"}, "job.destination.remote", "rclone:"),
             ({"remote": "rclone:cloud:../x"}, "job.destination.remote", ".."),
             ({"remote": "rclone::webdav,url=x:"}, "job.destination.remote", "rclone config"),
             ({"remote": 3}, "job.destination.remote", "rclone:REMOTE:FOLDER"),
             ({"remote": "rclone:c:x", "path": "/x"}, "job.destination", "not more"),
             ({"remote": "rclone:c:x", "folder": "f"}, "job.destination", "in the spec")]
    for dest, field, words in cases:
        with pytest.raises(ConfigError) as err:
            Job.from_dict({"name": "Docs", "sources": ["/home/a"], "destination": dest})
        assert err.value.details["field"] == field and words in err.value.details["reason"], dest
    with pytest.raises(ConfigError) as err:
        Job.from_dict({"name": "Docs", "sources": ["/home/a"], "destination": {"remote": "rclone:c:x"},
                       "triggers": {"on_connect": True}})
    assert err.value.details["field"] == "job.triggers.on_connect"
    cfg = Config(jobs=[Job(name="Docs", sources=["/a"], destination=Destination(remote="rclone:c:x"),
                           triggers=Triggers(schedule="hourly"), encrypt=True)])
    assert Config.from_dict(cfg.to_dict()).jobs[0].destination.remote == "rclone:c:x"


# -- running -------------------------------------------------------------------------------------

def test_back_up_now_to_a_local_remote(world, agent_on_clock, src, tmp_path):
    agent, _ = agent_on_clock
    root = tmp_path / "remote-set"
    spec = f"rclone:loc:{root}"
    remote_job(agent, spec, src)
    assert agent.run_job("Docs")
    (run,) = wait_for(lambda: finished(agent, 1), what="the remote backup", timeout=120)
    assert run.status == "ok", agent.history.log(run.id)
    assert run.files_copied == 2 and run.drive_id is None
    set_id = agent.config.job("Docs").set_id
    assert set_id and stored_passphrase(set_id) == PASSPHRASE   # unattended runs open it
    blob = every_byte(root)
    assert b"secret-name" not in blob and b"alpha content" not in blob and b"bravo" not in blob
    note = read_log(agent.paths.notifications_log)[-1]
    assert note["kind"] == "finished" and spec in note["message"]
    # A second run finds the set its own and uploads nothing new.
    assert agent.run_job("Docs")
    second = wait_for(lambda: finished(agent, 2), what="the second backup", timeout=120)[0]
    assert second.status == "ok" and second.files_copied == 0
    # What went there restores byte for byte.
    from core.agent.keys import make_unlocker
    from core.engine.remote.restore import restore
    from core.engine.restore import RestoreOptions
    from core.engine.storage import open_backend

    with remote_open(open_backend(spec), make_unlocker()) as rset:
        assert len(rset.snapshot_ids()) == 2
        restore(rset, tmp_path / "back", RestoreOptions())
    restored = tmp_path / "back" / "Docs"
    assert (restored / "secret-name.txt").read_bytes() == b"alpha content"
    assert (restored / "sub" / "b.txt").read_bytes() == b"bravo" * 1000


def remote_open(backend, unlock):
    from core.engine.remote.rset import RemoteSet

    return RemoteSet.open(backend, unlock)


def test_progress_counts_the_bytes_uploaded(world, paths, tmp_path):
    import os

    from core.agent.history import History
    from core.engine.storage import open_backend
    from core.engine.storage.base import can_stage

    # Neither compresses; the big one is an object of its own, staged in tmp/ before the new set's
    # file and lock (storage.base.Stages), and counted there too.
    src = make_tree(tmp_path / "Docs", {"noise.bin": os.urandom(300_000), "big.bin": os.urandom(1_500_000)})
    spec = f"rclone:loc:{tmp_path / 'set'}"
    backend = open_backend(spec)
    try:
        assert can_stage(remote_jobs._Counting(backend))
    finally:
        backend.close()
    job = Job.from_dict({"name": "Docs", "sources": [str(src)], "destination": {"remote": spec}})
    reports = []
    outcome = remote_jobs.run_remote_job(job, History(paths.history_file), progress=reports.append,
                                         passphrase=PASSPHRASE)
    assert outcome.status == "ok", outcome.log
    assert reports and all(isinstance(p, remote_jobs.UploadProgress) for p in reports)
    last = reports[-1].to_dict()
    assert last["uploaded"] >= 1_800_000 and last["speed"] > 0   # the content, encrypted, was sent


def test_a_scheduled_remote_job_waits_for_the_network_then_runs(world, agent_on_clock, src):
    agent, clock = agent_on_clock
    folder = "waits"
    remote_job(agent, f"rclone:wd:{folder}", src, schedule="hourly")
    world.webdav.kill()                                         # the server is down: no network
    assert agent.check_schedule() == ["Docs"]
    waiting = wait_for(lambda: agent.status()["jobs"][0]["waiting"], what="the job to wait", timeout=120)
    assert waiting["text"] == "waiting for the network" and "could not be reached" in waiting["error"]
    assert agent.history.runs("Docs") == []                     # nothing ran: nothing recorded
    assert agent.tray_state().jobs[0]["waiting"] == waiting
    notes = [n for n in read_log(agent.paths.notifications_log) if "waiting" in n["title"]]
    assert len(notes) == 1 and "wd:waits" in notes[0]["message"]
    assert agent.check_schedule() == []                         # not again before the wait is over
    world.webdav.restart()
    clock.advance(remote_jobs.RETRY.total_seconds())
    assert agent.check_schedule() == ["Docs"]
    (run,) = wait_for(lambda: finished(agent, 1), what="the backup after the wait", timeout=120)
    assert run.status == "ok" and run.trigger == "schedule", agent.history.log(run.id)
    status = agent.status()["jobs"][0]
    assert status["waiting"] is None and status["next_scan_text"] is None   # no change-journal promise
    assert any(p.name.startswith("snapshots") for p in (world.webdav.folder / folder).iterdir())
    assert agent.check_schedule() == []                         # backed up just now: not due


def test_a_bad_remote_fails_the_run_with_its_message(world, agent_on_clock, src):
    agent, _ = agent_on_clock
    remote_job(agent, "rclone:nosuch:x", src)
    assert agent.run_job("Docs")
    (run,) = wait_for(lambda: finished(agent, 1), what="the failed run", timeout=120)
    assert run.status == "failed" and run.error_code == "unknown_remote"
    assert "no rclone remote called 'nosuch'" in run.error
    assert agent.status()["jobs"][0]["waiting"] is None         # wrong, not offline: no retry
    assert read_log(agent.paths.notifications_log)[-1]["kind"] == "failed"


# -- what the window asks (IPC remotes, remote_test) ------------------------------------------------

def test_the_window_lists_remotes_and_tests_a_connection(world, agent_on_clock, tmp_path):
    from core.agent.handlers import Handlers

    h = Handlers(agent_on_clock[0])
    assert h.remotes({}) == {"remotes": ["loc", "wd"], "error": None}
    ok = h.remote_test({"remote": "rclone:wd:fresh-folder"})
    assert ok["ok"] and not ok["set"] and "rclone:wd:fresh-folder" in ok["message"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "holiday.jpg").write_bytes(b"not ours")
    busy = h.remote_test({"remote": f"rclone:loc:{tmp_path / 'other'}"})
    assert not busy["ok"] and "not empty" in busy["message"]
    unknown = h.remote_test({"remote": "rclone:nosuch:x"})
    assert unknown == {"ok": False, "code": "unknown_remote", "message": unknown["message"]}
    assert "rclone listremotes" in unknown["message"]
    assert h.remote_test({"remote": "nosuch:x"})["code"] == "bad_remote_spec"
    world.webdav.kill()
    down = h.remote_test({"remote": "rclone:wd:fresh-folder"})
    assert not down["ok"] and down["code"] == "remote_unavailable" and down["message"].startswith("Can't reach rclone:wd:")


def test_without_rclone_the_window_says_what_to_install(paths, monkeypatch):
    from core.agent.remotes import list_remotes, test_connection

    monkeypatch.setenv("PATH", str(paths.data_dir))   # no rclone on it
    reply = list_remotes()
    assert reply["remotes"] == [] and reply["error"]["code"] == "rclone_missing"
    assert "apt install rclone" in reply["error"]["message"]
    assert test_connection("rclone:any:x")["code"] == "rclone_missing"


# -- the Restore page (IPC snapshots, ls, search, versions, restore) -------------------------------

def rcds() -> list:
    """The ``rclone rcd`` processes this test process started and has not stopped (one that has
    exited but is not yet reaped — a zombie — has stopped)."""
    import psutil

    running = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "rcd" in p.cmdline():
                running.append(p)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return running


def test_the_restore_page_browses_and_restores_a_remote_job(world, agent_on_clock, src, tmp_path):
    from core.agent.handlers import Handlers

    agent, _ = agent_on_clock
    remote_job(agent, f"rclone:loc:{tmp_path / 'remote-set'}", src)
    agent.run_job("Docs")
    assert wait_for(lambda: finished(agent, 1), what="the backup", timeout=120)[0].status == "ok"
    h = Handlers(agent)
    (snap,) = h.snapshots({"job": "Docs"})
    assert snap["files"] == 2
    assert [e["name"] for e in h.ls({"job": "Docs", "snapshot": snap["id"], "path": ""})] == ["Docs"]
    names = {e["name"] for e in h.ls({"job": "Docs", "snapshot": snap["id"], "path": "Docs"})}
    assert names == {"secret-name.txt", "sub"}
    assert [r["path"] for r in h.search({"job": "Docs", "query": "SECRET"})] == ["Docs/secret-name.txt"]
    assert len(h.versions({"job": "Docs", "path": "Docs/sub/b.txt"})) == 1
    plan = h.restore_plan({"job": "Docs", "snapshot": snap["id"], "paths": ["Docs/sub"], "target": None})
    assert plan["destinations"] == [{"top": "Docs", "to": str(src)}]   # the job's own source
    assert rcds() == []                                                  # each answer closed its rclone
    h.restore({"job": "Docs", "snapshot": snap["id"], "paths": ["Docs/sub"], "target": str(tmp_path / "back"),
               "create_target": True})
    wait_for(lambda: not agent.restore_task["running"], what="the restore", timeout=120)
    assert agent.restore_task["error"] is None, agent.restore_task["error"]
    assert (tmp_path / "back" / "Docs" / "sub" / "b.txt").read_bytes() == b"bravo" * 1000
    assert not (tmp_path / "back" / "Docs" / "secret-name.txt").exists()
    wait_for(lambda: rcds() == [], what="the restore's rclone to stop")
    key = h.recovery_key({"job": "Docs"})   # the window shows it as for a drive's set (test_remote_keys.py)
    assert key["set_id"] == agent.config.job("Docs").set_id and key["recovery_key"]
    assert rcds() == []


def test_a_server_killed_mid_upload_fails_that_run_and_the_next_one_completes(world, agent_on_clock, tmp_path):
    import os

    from core.agent.runner import RunCancel
    from core.engine.remote.check import verify
    from core.engine.verify import VerifyOptions

    agent, clock = agent_on_clock
    src = make_tree(tmp_path / "Docs", {f"f{i:02}.bin": os.urandom(200_000) for i in range(40)})
    remote_job(agent, "rclone:wd:cut", src, schedule="daily@02:00")
    job = agent.config.job("Docs")
    seen = []

    def kill_on_first_copy(p):
        # At the first file copied (into a pack, not uploaded yet); the new set's plugback.json and lock
        # (made in a thread beside the scan, RemoteSet.create_started) may or may not be there by then.
        seen.append(p)
        if p.phase == "copy" and world.webdav.proc is not None:
            world.webdav.kill()

    remote_jobs.execute(agent, job, remote_jobs.Trigger.SCHEDULE, RunCancel(), kill_on_first_copy)
    (run,) = agent.history.runs("Docs")
    assert run.status == "failed" and run.error_code == "remote_unavailable", agent.history.log(run.id)
    assert agent.status()["jobs"][0]["waiting"]["text"] == "waiting for the network"
    snapshots = world.webdav.folder / "cut" / "snapshots"
    assert not snapshots.exists() or not any(snapshots.iterdir())   # no snapshot was committed
    world.webdav.restart()
    clock.advance(remote_jobs.RETRY.total_seconds())
    assert agent.check_schedule() == ["Docs"]
    done = wait_for(lambda: finished(agent, 2), what="the run after the cut", timeout=180)
    assert done[0].status == "ok" and done[0].files_copied == 40, agent.history.log(done[0].id)
    with remote_open(remote_jobs.open_backend("rclone:wd:cut"), make_unlocker_for_test()) as rset:
        result = verify(rset, VerifyOptions(read_all=True))
    assert result.ok and len(rset.snapshot_ids()) == 1


def make_unlocker_for_test():
    from core.agent.keys import make_unlocker

    return make_unlocker()


def test_a_set_there_that_is_not_the_jobs_own_is_left_alone(world, paths, src, tmp_path):
    import dataclasses
    import uuid

    from core.agent.history import History

    history = History(paths.history_file)
    spec = f"rclone:loc:{tmp_path / 'shared'}"
    job = Job.from_dict({"name": "Docs", "sources": [str(src)], "destination": {"remote": spec}})
    first = remote_jobs.run_remote_job(job, history, passphrase=PASSPHRASE)
    assert first.status == "ok" and job.set_id
    other = dataclasses.replace(job, set_id=str(uuid.uuid4()))
    before = sorted(p.name for p in (tmp_path / "shared" / "snapshots").iterdir())
    second = remote_jobs.run_remote_job(other, history, passphrase=PASSPHRASE)
    assert second.status == "failed" and second.error.code == "set_needs_confirmation"
    assert sorted(p.name for p in (tmp_path / "shared" / "snapshots").iterdir()) == before
    # Pointed at an empty folder, a bound job starts a new set there (as a drive or folder job does).
    moved = dataclasses.replace(job, destination=Destination(remote=f"rclone:loc:{tmp_path / 'new'}"))
    third = remote_jobs.run_remote_job(moved, history, passphrase=PASSPHRASE)
    assert third.status == "ok" and moved.set_id != job.set_id
    assert "a new one is made there" in "\n".join(third.log)


def test_a_job_added_again_uses_its_set_when_its_passphrase_opens_it(world, paths, src, tmp_path):
    """A new computer: the set's keyring entry is not here, the job's passphrase (as added) is."""
    import keyring

    from core.agent.history import History

    history = History(paths.history_file)
    spec = f"rclone:loc:{tmp_path / 'kept'}"
    first = Job.from_dict({"name": "Docs", "sources": [str(src)], "destination": {"remote": spec}})
    assert remote_jobs.run_remote_job(first, history, passphrase=PASSPHRASE).status == "ok"
    keyring.get_keyring().passwords.clear()                      # the old computer's keyring is gone
    again = Job.from_dict({"name": "Docs", "sources": [str(src)], "destination": {"remote": spec}})
    wrong = remote_jobs.run_remote_job(again, history, passphrase="not the passphrase")
    assert wrong.status == "failed" and wrong.error.code == "wrong_passphrase" and again.set_id is None
    store_passphrase(job_key_name("Docs"), PASSPHRASE)
    right = remote_jobs.run_remote_job(again, history)
    assert right.status == "ok" and again.set_id == first.set_id and right.files_copied == 0
    assert remote_jobs.run_remote_job(again, history).status == "ok"   # bound now: still opens, unattended


def test_a_bound_jobs_set_is_unlocked_by_the_backup_beside_its_scan(world, paths, src, tmp_path, monkeypatch):
    """The agent opens an existing set without its scrypt (RemoteSet.open_started, as the command
    line does): the backup unlocks it while its scan and small reads run ahead."""
    from core.agent.history import History
    from core.engine.remote import backup as remote_backup

    history = History(paths.history_file)
    job = Job.from_dict({"name": "Docs", "sources": [str(src)],
                         "destination": {"remote": f"rclone:loc:{tmp_path / 'set'}"}})
    assert remote_jobs.run_remote_job(job, history, passphrase=PASSPHRASE).status == "ok" and job.set_id
    seen = []
    real = remote_backup.backup

    def watched(rset, sources, options=None):
        seen.append(rset.unlocked)
        return real(rset, sources, options)

    monkeypatch.setattr(remote_backup, "backup", watched)
    (src / "new.txt").write_bytes(b"charlie")
    again = remote_jobs.run_remote_job(job, history)      # bound: its set's passphrase from the keyring
    assert again.status == "ok" and again.files_copied == 1
    assert seen == [False]                                 # handed over locked: unlocked inside the backup
