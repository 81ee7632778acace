"""The rolling and monthly checks of a remote job's set (issue #13): core/agent/remote_scrub.py on a
real set behind Debian's rclone (a ``local`` remote), and the agent running them after backups on a
fake clock (core/agent/remote_rolling.py)."""

import os
from datetime import datetime, timedelta, timezone

import pytest

from core.agent import remote_jobs
from core.agent.config import Job
from core.agent.history import History
from core.agent.jobs import job_key_name
from core.agent.keys import make_unlocker, store_passphrase
from core.agent.remote_scrub import scrub_slice, stored_bytes
from core.engine.pass_cursor import Cursor
from core.engine.progress import FakeClock
from core.platform.notify import read_log
from tests.support.rclone import FAST_FAIL
from tests.support.trees import make_tree
from tests.support.waiting import wait_for

PASSPHRASE = "correct horse battery"
BIG = 1_200_000   # above the pack limit (1 MiB): a standalone object


@pytest.fixture
def remote(rclone_config, monkeypatch, tmp_path):
    monkeypatch.setenv("RCLONE_CONFIG", str(rclone_config))
    monkeypatch.setattr(remote_jobs, "RCLONE_FLAGS", FAST_FAIL)
    return tmp_path / "remote-set"


@pytest.fixture
def src(tmp_path):
    files = {f"small-{i}.txt": os.urandom(3000) for i in range(20)}
    files.update({"big-1.bin": os.urandom(BIG), "big-2.bin": os.urandom(BIG)})
    return make_tree(tmp_path / "Docs", files)


def job_to(remote, src) -> Job:
    return Job.from_dict({"name": "Docs", "sources": [str(src)], "destination": {"remote": f"rclone:loc:{remote}"}})


def stored(remote) -> list:
    """The set's object and pack files on the served folder, by name."""
    return sorted(p for d in ("objects", "packs") if (remote / d).exists() for p in (remote / d).rglob("*")
                  if p.is_file())


def flip(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def test_slices_read_every_blob_once_then_check_and_name_the_damage(remote, src, paths):
    spec = f"rclone:loc:{remote}"
    assert remote_jobs.run_remote_job(job_to(remote, src), History(paths.history_file),
                                      passphrase=PASSPHRASE).status == "ok"
    blobs = stored(remote)
    assert any("/packs/" in str(p) for p in blobs) and any("/objects/" in str(p) for p in blobs)
    with remote_jobs.open_remote(spec, make_unlocker()) as rset:
        total = stored_bytes(rset)
        assert total == sum(p.stat().st_size for p in blobs)
        cursor, read, slices = Cursor(), 0, 0
        while not cursor.done:   # budgets smaller than a blob: one blob a slice, the check last
            result = scrub_slice(rset, cursor, 1, read_back=True)
            assert not result.damaged and not result.stopped
            cursor, read, slices = result.cursor, read + result.bytes_read, slices + 1
        assert read == total and slices == len(blobs) + 1
        # Flipped bytes in an object and in a pack are found by reading; the quick check sees sizes only.
        big = next(p for p in blobs if "/objects/" in str(p))
        pack = next(p for p in blobs if "/packs/" in str(p))
        flip(big)
        flip(pack)
        full = scrub_slice(rset, Cursor(), None, read_back=True)
        assert full.finished and sorted(d.name for d in full.damaged) == sorted([big.name, pack.name])
        assert "does not match its name" in next(d.reason for d in full.damaged if d.name == pack.name)
        quick = scrub_slice(rset, Cursor(), None, read_back=False)
        assert quick.finished and quick.bytes_read == 0 and quick.damaged == []
        big.unlink()   # a lost object: the quick check names it
        quick = scrub_slice(rset, Cursor(), None, read_back=False)
        assert [d.reason for d in quick.damaged] == [f"its content (objects/{big.name[:2]}/{big.name}) is missing "
                                                     "from the remote"]


def test_a_pack_no_index_names_is_garbage_not_damage(remote, src, paths):
    """A cut run's pack (written in place, maybe torn, its index never put) reads as nothing to check."""
    spec = f"rclone:loc:{remote}"
    assert remote_jobs.run_remote_job(job_to(remote, src), History(paths.history_file),
                                      passphrase=PASSPHRASE).status == "ok"
    pack = next(p for p in stored(remote) if "/packs/" in str(p))
    torn_name = "ab" + "c" * 62
    torn = pack.parent.parent / torn_name[:2] / torn_name
    torn.parent.mkdir(exist_ok=True)
    torn.write_bytes(pack.read_bytes()[: pack.stat().st_size // 2])   # half a pack, named as none
    with remote_jobs.open_remote(spec, make_unlocker()) as rset:
        full = scrub_slice(rset, Cursor(), None, read_back=True)
        assert full.finished and full.damaged == []
        flip(pack)   # an indexed pack is still read and checked
        full = scrub_slice(rset, Cursor(), None, read_back=True)
        assert [d.name for d in full.damaged] == [pack.name]


@pytest.fixture
def agent_on_clock(remote, paths):
    from core.agent.agent import Agent
    from core.agent.agent_state import AgentOptions

    clock = FakeClock(datetime(2026, 11, 26, 12, tzinfo=timezone.utc))
    agent = Agent(paths, clock=clock, options=AgentOptions(battery=lambda: None, rolling_delay=0))
    yield agent, clock
    agent.shutdown(cancel=True, timeout=30)


def backup_and_check(agent, n_runs: int, n_checks: int) -> list:
    """Back up now; wait for the run and for ``n_checks`` verify runs in all; the verify runs, newest first."""
    key = agent.config.job("Docs").destination.key()

    def done(kind: str) -> list:
        return [r for r in agent.history.runs("Docs", kind=kind) if r.status != "running"]

    assert agent.run_job("Docs")
    wait_for(lambda: len(done("backup")) >= n_runs and len(done("verify")) >= n_checks and not agent.running()
             and not agent.rolling.checking(key), what="the backup and its check", timeout=120)
    return done("verify")


def add_job(agent, remote, src) -> None:
    store_passphrase(job_key_name("Docs"), PASSPHRASE)
    agent.edit_config(lambda c: c.jobs.append(job_to(remote, src)))


def test_by_default_a_remote_set_gets_the_quick_check_once_a_month(agent_on_clock, remote, src):
    agent, clock = agent_on_clock
    add_job(agent, remote, src)
    backup_and_check(agent, 1, 0)                           # the first backup: nothing due yet
    clock.advance(timedelta(days=31).total_seconds())
    assert agent.status()["jobs"][0]["check"]["last_full_check"] is None
    (check,) = backup_and_check(agent, 2, 1)
    assert check.status == "ok" and check.trigger == "schedule"
    status = agent.status()["jobs"][0]["check"]                # the Overview's "Checked" line
    assert status["last_full_check"] == clock.now().isoformat() and status["checking"] is False
    assert "the content was not downloaded" in agent.history.log(check.id)
    assert len(backup_and_check(agent, 3, 1)) == 1          # checked just now: not again
    clock.advance(timedelta(days=31).total_seconds())
    oldest = sorted((remote / "snapshots").iterdir())[0]   # the backup reads only the newest manifest
    flip(oldest)
    damaged = backup_and_check(agent, 4, 2)[0]              # newest first
    assert damaged.status == "failed" and damaged.error_code == "damaged"
    assert f"damaged: snapshots/{oldest.name.split('.')[0]}" in agent.history.log(damaged.id)
    assert f"plugback verify rclone:loc:{remote} --read-all" in agent.history.log(damaged.id)
    note = read_log(agent.paths.notifications_log)[-1]
    assert note["kind"] == "failed" and "damage found" in note["title"]


def test_with_read_back_each_backup_downloads_a_slice_and_damaged_objects_are_stored_again(agent_on_clock, remote,
                                                                                          src):
    agent, clock = agent_on_clock
    agent.edit_config(lambda c: setattr(c.prefs, "read_back_remote", True))
    add_job(agent, remote, src)
    (check,) = backup_and_check(agent, 1, 1)   # the default slice (256 MiB) reads this small set whole
    assert check.status == "ok" and "every stored byte of this set was downloaded" in agent.history.log(check.id)
    big = next(p for p in stored(remote) if "/objects/" in str(p))
    flip(big)
    clock.advance(3600)
    damaged = backup_and_check(agent, 2, 2)[0]
    assert damaged.status == "failed" and f"removed objects/{big.name[:2]}/{big.name}" in agent.history.log(damaged.id)
    assert not big.exists()
    note = read_log(agent.paths.notifications_log)[-1]
    assert "stores the damaged content again" in note["message"]
    assert "1 damaged item" in agent.status()["jobs"][0]["damage"]   # the Overview's "Backup check" line
    clock.advance(3600)
    mended = backup_and_check(agent, 3, 3)[0]   # the source still has that file: uploaded again
    assert big.exists() and mended.status == "ok", agent.history.log(mended.id)
    assert agent.status()["jobs"][0]["damage"] is None              # a clean pass since clears it
    pack = next(p for p in stored(remote) if "/packs/" in str(p))
    flip(pack)
    clock.advance(3600)
    damaged = backup_and_check(agent, 4, 4)[0]
    assert damaged.status == "failed" and "does not match its name" in agent.history.log(damaged.id)
    assert pack.exists()                        # its other objects still read: reported, not removed


def test_when_a_quick_check_is_due(agent_on_clock, remote, src):
    """Without read-back: a pass stopped part-way goes on after the next backup; a finished one
    waits 30 days (from the first backup when there was none)."""
    import uuid

    from core.agent.remote_rolling import due
    from core.agent.rolling_state import PassState

    agent, clock = agent_on_clock
    job = job_to(remote, src)
    job.set_id = str(uuid.uuid4())
    states, now = agent.rolling.states, clock.now()
    assert not due(agent.rolling, job)                      # no backup yet, no pass
    states.save(PassState(set_id=job.set_id, cursor=Cursor("check"), pass_started=now))
    assert due(agent.rolling, job)                          # stopped during its check: go on
    states.save(PassState(set_id=job.set_id, cursor=Cursor("done"), pass_started=now, last_full=now))
    assert not due(agent.rolling, job)
    clock.advance(timedelta(days=30).total_seconds())
    assert due(agent.rolling, job)
    states.save(PassState(set_id=job.set_id, cursor=Cursor("done"), pass_started=now, last_full=clock.now()))
    assert not due(agent.rolling, job)
    agent.edit_config(lambda c: setattr(c.prefs, "read_back_remote", True))
    assert due(agent.rolling, job)                          # read-back: a slice after every backup
