"""Unlocking a remote job's set from the window and showing its recovery key (issue #13), through the
agent's IPC handlers, Debian's rclone (a ``local`` remote of the test's own rclone configuration) and
the real keyring API with the test's in-memory backend."""

from datetime import datetime, timezone

import keyring
import pytest

from core.agent import remote_jobs
from core.agent.config import Job
from core.agent.handlers import Handlers
from core.agent.history import History
from core.agent.keys import stored_passphrase
from core.engine.progress import FakeClock
from core.errors import BadRecoveryKey, PassphraseNeeded, WrongPassphrase
from tests.support.rclone import FAST_FAIL
from tests.support.trees import make_tree

PASSPHRASE = "correct horse battery"


@pytest.fixture
def handlers(rclone_config, monkeypatch, paths, tmp_path):
    """The agent's handlers, with a remote job ``Docs`` whose set was made and then its keyring
    entries lost (a new session on a computer whose keyring is empty, or a locked one)."""
    from core.agent.agent import Agent
    from core.agent.agent_state import AgentOptions

    monkeypatch.setenv("RCLONE_CONFIG", str(rclone_config))
    monkeypatch.setattr(remote_jobs, "RCLONE_FLAGS", FAST_FAIL)
    monkeypatch.delenv("PLUGBACK_PASSPHRASE", raising=False)
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
    job = Job.from_dict({"name": "Docs", "sources": [str(src)],
                         "destination": {"remote": f"rclone:loc:{tmp_path / 'remote-set'}"}})
    assert remote_jobs.run_remote_job(job, History(paths.history_file), passphrase=PASSPHRASE).status == "ok"
    keyring.get_keyring().passwords.clear()
    agent = Agent(paths, clock=FakeClock(datetime(2026, 11, 26, 12, tzinfo=timezone.utc)),
                  options=AgentOptions(battery=lambda: None))
    agent.edit_config(lambda c: c.jobs.append(job))
    yield Handlers(agent)
    agent.shutdown(cancel=True, timeout=30)


def test_a_remote_set_is_unlocked_from_the_window_for_the_session(handlers):
    with pytest.raises(PassphraseNeeded):
        handlers.snapshots({"job": "Docs"})
    with pytest.raises(WrongPassphrase):
        handlers.unlock({"job": "Docs", "kind": "passphrase", "secret": "not it", "remember": True})
    reply = handlers.unlock({"job": "Docs", "kind": "passphrase", "secret": PASSPHRASE, "remember": False})
    set_id = handlers.agent.config.job("Docs").set_id
    assert reply == {"set_id": set_id, "remembered": False, "keyring": True, "warning": None}
    assert stored_passphrase(set_id) is None                 # kept in memory only, as asked
    assert len(handlers.snapshots({"job": "Docs"})) == 1    # the agent's session keys open it now
    key = handlers.recovery_key({"job": "Docs"})
    assert key["set_id"] == set_id and len(key["recovery_key"]) > 40


def test_remember_keeps_the_passphrase_in_the_keyring_and_a_recovery_key_opens_it(handlers):
    set_id = handlers.agent.config.job("Docs").set_id
    assert handlers.unlock({"job": "Docs", "kind": "passphrase", "secret": PASSPHRASE, "remember": True})["remembered"]
    assert stored_passphrase(set_id) == PASSPHRASE            # unattended runs open it from now on
    key = handlers.recovery_key({"job": "Docs"})["recovery_key"]
    handlers.agent.unlocked_keys.clear()
    keyring.get_keyring().passwords.clear()
    with pytest.raises(PassphraseNeeded):                      # the key is shown only for an opened set
        handlers.recovery_key({"job": "Docs"})
    with pytest.raises(BadRecoveryKey):      # one character mistyped: said before scrypt runs
        handlers.unlock({"job": "Docs", "kind": "recovery_key", "secret": key[:-4] + "AAAA", "remember": True})
    reply = handlers.unlock({"job": "Docs", "kind": "recovery_key", "secret": f"  {key}\n", "remember": True})
    assert reply["set_id"] == set_id and reply["remembered"] is False   # a recovery key is never stored
    assert stored_passphrase(set_id) is None
    assert len(handlers.snapshots({"job": "Docs"})) == 1
