"""The Restore page's "Look for backups in a folder…" with ``rclone:REMOTE:PATH`` (issue #13): a remote
set no job here uses is found, unlocked with its passphrase and browsed and restored through the
agent, with Debian's rclone and a ``local`` remote of the test's own configuration. An unknown
remote and a missing rclone are said in plain words."""

from datetime import datetime, timezone

import keyring
import pytest

from core.agent import remote_jobs
from core.agent.config import Job
from core.agent.handlers import Handlers
from core.agent.history import History
from core.engine.progress import FakeClock
from core.errors import PassphraseNeeded, UnknownRemote, WrongPassphrase
from tests.support.rclone import FAST_FAIL
from tests.support.trees import make_tree
from tests.support.waiting import wait_for

PASSPHRASE = "correct horse battery"


@pytest.fixture
def handlers(rclone_config, monkeypatch, paths, tmp_path):
    """(handlers, spec): a set made at ``spec`` by a job of another computer (this agent has no job),
    its keyring entries gone."""
    from core.agent.agent import Agent
    from core.agent.agent_state import AgentOptions

    monkeypatch.setenv("RCLONE_CONFIG", str(rclone_config))
    monkeypatch.setattr(remote_jobs, "RCLONE_FLAGS", FAST_FAIL)
    monkeypatch.delenv("PLUGBACK_PASSPHRASE", raising=False)
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha", "sub/b.txt": b"bravo" * 100})
    spec = f"rclone:loc:{tmp_path / 'old-laptop'}"
    job = Job.from_dict({"name": "Docs", "sources": [str(src)], "destination": {"remote": spec}})
    assert remote_jobs.run_remote_job(job, History(tmp_path / "other-history.db"), passphrase=PASSPHRASE).status == "ok"
    keyring.get_keyring().passwords.clear()
    agent = Agent(paths, clock=FakeClock(datetime(2026, 11, 26, 12, tzinfo=timezone.utc)),
                  options=AgentOptions(battery=lambda: None))
    yield Handlers(agent), spec
    agent.shutdown(cancel=True, timeout=30)


def test_a_typed_remote_set_is_found_unlocked_browsed_and_restored(handlers, tmp_path):
    h, spec = handlers
    found = h.sets({"folders": [spec]})
    (s,) = [s for s in found["sets"] if s["where"] == spec]
    assert s["path"] == spec and s["encrypted"] and s["snapshots"] == 1 and s["used_by"] == []
    assert s["unlocked"] is False and found["problems"] == []
    with pytest.raises(PassphraseNeeded):
        h.snapshots({"set": spec})
    with pytest.raises(WrongPassphrase):
        h.unlock({"set": spec, "kind": "passphrase", "secret": "not it", "remember": False})
    assert h.unlock({"set": spec, "kind": "passphrase", "secret": PASSPHRASE, "remember": False})["set_id"] == s["set_id"]
    assert h.sets({"folders": [spec]})["sets"][0]["unlocked"] is True
    (snap,) = h.snapshots({"set": spec})
    assert {e["name"] for e in h.ls({"set": spec, "snapshot": snap["id"], "path": "Docs"})} == {"a.txt", "sub"}
    h.restore({"set": spec, "snapshot": snap["id"], "paths": ["Docs/sub"], "target": str(tmp_path / "back"),
               "create_target": True})
    wait_for(lambda: not h.agent.restore_task["running"], what="the restore", timeout=120)
    assert h.agent.restore_task["error"] is None, h.agent.restore_task["error"]
    assert (tmp_path / "back" / "Docs" / "sub" / "b.txt").read_bytes() == b"bravo" * 100


def test_an_unknown_remote_or_no_set_there_is_a_problem_in_plain_words(handlers, tmp_path):
    h, spec = handlers
    (tmp_path / "empty").mkdir()
    found = h.sets({"folders": ["rclone:nosuch:x", f"rclone:loc:{tmp_path / 'empty'}"]})
    assert [s for s in found["sets"] if s["where"].startswith("rclone:")] == []
    unknown, empty = found["problems"]
    assert unknown["path"] == "rclone:nosuch:x" and "no rclone remote called 'nosuch'" in unknown["message"]
    assert "rclone listremotes" in unknown["message"]
    assert empty["path"] == f"rclone:loc:{tmp_path / 'empty'}" and "backup set" in empty["message"].lower()
    with pytest.raises(UnknownRemote):
        h.unlock({"set": "rclone:nosuch:x", "kind": "passphrase", "secret": PASSPHRASE, "remember": False})


def test_without_rclone_the_problem_says_what_to_install(handlers, paths, monkeypatch):
    h, spec = handlers
    monkeypatch.setenv("PATH", str(paths.data_dir))   # no rclone on it
    (problem,) = h.sets({"folders": [spec]})["problems"]
    assert problem["path"] == spec and "apt install rclone" in problem["message"]
