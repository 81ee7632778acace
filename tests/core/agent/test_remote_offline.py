"""A remote job's set while its server is down (issue #13): what a person waits on (the window's
browse, unlock, Test connection) fails at once with "Can't reach REMOTE: ...", while a backup
keeps its retries. Real rclone: a WebDAV remote served by ``rclone serve webdav`` on 127.0.0.1,
then killed, so its port refuses connections; the agent's handlers as the window calls them.

rclone keeps its own default retries here (no ``FAST_FAIL`` for the window's requests): they
alone took ~4.5 s per operation, and the unlock ~44 s with Plugback's backoff, before this.
"""

import time
from datetime import datetime, timezone

import pytest

from core.agent import remote_jobs
from core.agent.config import Job
from core.agent.handlers import Handlers
from core.agent.history import History
from core.engine.progress import Clock, FakeClock
from core.errors import RemoteUnavailable
from tests.support.rclone import FAST_FAIL, local_and_webdav
from tests.support.trees import make_tree

PASSPHRASE = "correct horse battery"
SPEC = "rclone:wd:set"
AT_ONCE = 3.0   # seconds: rclone's start-up and one refused connection, with room for a loaded machine


@pytest.fixture
def offline(paths, tmp_path, monkeypatch):
    """(handlers, job, sleeps): a remote job ``Docs`` whose set is on the WebDAV server, now killed;
    ``sleeps`` records every backoff the agent's real clock was asked for (none is slept)."""
    from core.agent.agent import Agent
    from core.agent.agent_state import AgentOptions

    with local_and_webdav(tmp_path / "rclone") as world:
        monkeypatch.setenv("RCLONE_CONFIG", str(world.config))
        monkeypatch.delenv("PLUGBACK_PASSPHRASE", raising=False)
        src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
        job = Job.from_dict({"name": "Docs", "sources": [str(src)], "destination": {"remote": SPEC}})
        monkeypatch.setattr(remote_jobs, "RCLONE_FLAGS", FAST_FAIL)   # (the backup that makes the set: quick)
        assert remote_jobs.run_remote_job(job, History(paths.history_file), passphrase=PASSPHRASE).status == "ok"
        monkeypatch.setattr(remote_jobs, "RCLONE_FLAGS", ())           # rclone's defaults from here on
        world.webdav.kill()
        sleeps: list[float] = []
        monkeypatch.setattr(Clock, "sleep", lambda self, seconds: sleeps.append(seconds))
        agent = Agent(paths, clock=FakeClock(datetime(2026, 11, 26, 12, tzinfo=timezone.utc)),
                      options=AgentOptions(battery=lambda: None))
        agent.edit_config(lambda c: c.jobs.append(job))
        try:
            yield Handlers(agent), job, sleeps
        finally:
            agent.shutdown(cancel=True, timeout=30)


def _cant_reach(message: str) -> None:
    assert message.startswith(f"Can't reach {SPEC}: dial tcp 127.0.0.1:") and "connection refused" in message
    assert "check the network connection" in message and "\n" not in message


@pytest.mark.parametrize("request_", ["browse", "unlock", "recovery key"])
def test_the_window_s_requests_fail_at_once(offline, request_):
    handlers, job, sleeps = offline
    ask = {"browse": lambda: handlers.snapshots({"job": "Docs"}),
           "unlock": lambda: handlers.unlock({"job": "Docs", "kind": "passphrase", "secret": PASSPHRASE,
                                              "remember": False}),
           "recovery key": lambda: handlers.recovery_key({"job": "Docs"})}[request_]
    began = time.monotonic()
    with pytest.raises(RemoteUnavailable) as caught:
        ask()
    assert time.monotonic() - began < AT_ONCE and sleeps == []
    _cant_reach(caught.value.message)


def test_test_connection_fails_at_once(offline):
    handlers, job, sleeps = offline
    began = time.monotonic()
    reply = handlers.remote_test({"remote": SPEC})
    assert time.monotonic() - began < AT_ONCE and sleeps == []
    assert reply["ok"] is False and reply["code"] == "remote_unavailable"
    _cant_reach(reply["message"])


def test_a_backup_keeps_its_retries(offline, paths, monkeypatch):
    handlers, job, sleeps = offline
    monkeypatch.setattr(remote_jobs, "RCLONE_FLAGS", FAST_FAIL)   # (rclone's own retries: not what is tested)
    clock = FakeClock(datetime(2026, 11, 26, 12, tzinfo=timezone.utc))
    with pytest.raises(RemoteUnavailable) as caught:   # (UNREACHABLE: the job waits and is tried again later)
        remote_jobs.run_remote_job(job, History(paths.history_file), clock=clock, passphrase=PASSPHRASE)
    assert clock.monotonic() >= 0.5 * (0.5 + 1 + 2 + 4 + 8)   # five backoffs (each up to half shortened)
    assert not caught.value.message.startswith("Can't reach")
