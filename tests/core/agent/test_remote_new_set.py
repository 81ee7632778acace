"""A remote job's first backup makes its set as ``plugback backup --to`` does (issue #13):
``RemoteSet.create_started``, whose scrypt and plugback.json upload run in a thread beside the
scan, the engine's first write waiting for them. Debian's rclone with a ``local`` remote; faults
(a plugback.json upload held back, or refused) come from a wrapper around the real backend."""

import threading
from datetime import datetime, timezone

import pytest

from core.agent import remote_jobs
from core.agent.config import Job
from core.agent.history import History
from core.agent.keys import make_unlocker, stored_passphrase
from core.engine.progress import FakeClock
from core.engine.remote.rset import RemoteSet
from core.errors import RemoteFull
from tests.support.rclone import FAST_FAIL
from tests.support.trees import make_tree

PASSPHRASE = "correct horse battery"


class HeldMeta:
    """The job's real backend; ``put("plugback.json")`` first calls ``before_meta`` (a fault: held, or refused)."""

    def __init__(self, inner, before_meta):
        self.inner, self.where, self.before_meta = inner, inner.where, before_meta
        self.puts: list[str] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put(self, name, data):
        if name == "plugback.json":
            self.before_meta()
        self.puts.append(name)
        self.inner.put(name, data)


@pytest.fixture
def job(rclone_config, monkeypatch, tmp_path):
    monkeypatch.setenv("RCLONE_CONFIG", str(rclone_config))
    monkeypatch.setattr(remote_jobs, "RCLONE_FLAGS", FAST_FAIL)
    monkeypatch.delenv("PLUGBACK_PASSPHRASE", raising=False)
    src = make_tree(tmp_path / "Docs", {f"d{i}/f{j}.txt": f"{i} {j}".encode() * 50 for i in range(4) for j in range(5)})
    return Job.from_dict({"name": "Docs", "sources": [str(src)],
                          "destination": {"remote": f"rclone:loc:{tmp_path / 'remote-set'}"}})


def _with_backend(monkeypatch, before_meta) -> list:
    """The agent's backends wrapped in :class:`HeldMeta`; the list of those made."""
    made = []
    opened = remote_jobs.open_backend

    def open_backend(spec, clock=None, **kw):
        made.append(HeldMeta(opened(spec, clock, **kw), before_meta))
        return made[-1]

    monkeypatch.setattr(remote_jobs, "open_backend", open_backend)
    return made


def test_the_first_backup_scans_while_the_set_is_made(job, monkeypatch, paths):
    scanned, seen = threading.Event(), []

    def before_meta():   # plugback.json is held until the scan has reported files (at most 20 s)
        seen.append(scanned.wait(20))

    def progress(p):
        if p.files_done or p.files_total:
            scanned.set()

    made = _with_backend(monkeypatch, before_meta)
    bound = []
    outcome = remote_jobs.run_remote_job(job, History(paths.history_file), passphrase=PASSPHRASE, progress=progress,
                                         clock=FakeClock(datetime(2026, 11, 26, 12, tzinfo=timezone.utc)),
                                         bind=lambda name, set_id: bound.append(set_id))
    assert outcome.status == "ok", outcome.log
    (backend,) = made
    assert seen == [True]                          # the scan ran before plugback.json was stored
    assert backend.puts[0] == "plugback.json"      # ... and nothing was written before it
    (set_id,) = bound
    assert stored_passphrase(set_id) == PASSPHRASE
    with RemoteSet.open_closing(remote_jobs.open_backend(job.destination.remote), make_unlocker()) as rset:
        assert rset.set_id == set_id and len(rset.snapshot_ids()) == 1


def test_a_set_that_cannot_be_made_fails_the_run_and_nothing_is_written(job, monkeypatch, paths, tmp_path):
    def refuse():
        raise RemoteFull(where=job.destination.remote, reason="quota exceeded")

    made = _with_backend(monkeypatch, refuse)
    history = History(paths.history_file)
    outcome = remote_jobs.run_remote_job(job, history, passphrase=PASSPHRASE,
                                         clock=FakeClock(datetime(2026, 11, 26, 12, tzinfo=timezone.utc)))
    assert outcome.status == "failed"
    (run,) = history.runs("Docs")
    assert run.status == "failed" and run.error_code == "remote_full" and "quota exceeded" in run.error
    (backend,) = made
    assert backend.puts == []
    assert not any(p.is_file() for p in (tmp_path / "remote-set").rglob("*"))
