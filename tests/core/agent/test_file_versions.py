"""The ``versions`` command (core/agent/file_versions.py, issue #15): one file's distinct contents across
a set's snapshots, newest first, for a job here and for a found (also encrypted) set — through the real
in-process agent's IPC handlers."""

import hashlib

import pytest

from core.agent.handlers import Handlers
from core.engine import crypto
from core.errors import BadRequest, NotFound, UsageError
from tests.support.agent import wait_for
from tests.support.engine import backup_path
from tests.support.trees import make_tree

PASS = "correct horse battery"
A, B = b"alpha", b"bravo, a longer text"


@pytest.fixture
def handlers(make_agent):
    agent, _ = make_agent()
    return Handlers(agent).table()


def three_backups(set_path, src, *, passphrase=None):
    """Back up ``Documents/notes.txt`` holding A, then B, then A again; the snapshot ids, oldest first."""
    ids = []
    for content in (A, B, A):
        (src / "notes.txt").write_bytes(content)
        ids.append(backup_path(set_path, [src], job="Notes", host="old-laptop", parents=True,
                               passphrase=passphrase,
                               unlock=(lambda enc, sid: crypto.unlock_with_passphrase(enc, PASS)) if passphrase
                               else None).snapshot_id)
    return ids


def test_a_file_changed_back_and_forth_has_three_versions_newest_first(handlers, tmp_path):
    src = make_tree(tmp_path / "Documents", {"same.txt": b"unchanged"})
    ids = three_backups(tmp_path / "stick" / "set", src)
    which = {"set": str(tmp_path / "stick" / "set")}
    rows = handlers["versions"]({**which, "path": "Documents/notes.txt"})
    assert [(r["snapshot"], r["size"], r["sha256"]) for r in rows] == [
        (ids[2], len(A), hashlib.sha256(A).hexdigest()),
        (ids[1], len(B), hashlib.sha256(B).hexdigest()),
        (ids[0], len(A), hashlib.sha256(A).hexdigest())]
    snapshots = {s["id"]: s["time"] for s in handlers["snapshots"](which)}
    assert [r["time"] for r in rows] == [snapshots[i] for i in reversed(ids)]
    assert all(r["mtime"].endswith("+00:00") for r in rows)
    # Unchanged in every snapshot: one version, named by the first snapshot holding it.
    [same] = handlers["versions"]({**which, "path": "/Documents/same.txt"})
    assert same["snapshot"] == ids[0]


def test_folders_unknown_paths_and_bad_requests_are_refused(handlers, tmp_path):
    src = make_tree(tmp_path / "Documents", {"sub/x.txt": b"x"})
    three_backups(tmp_path / "stick" / "set", src)
    which = {"set": str(tmp_path / "stick" / "set")}
    with pytest.raises(UsageError, match="is a folder"):
        handlers["versions"]({**which, "path": "Documents/sub"})
    with pytest.raises(NotFound):
        handlers["versions"]({**which, "path": "Documents/gone.txt"})
    with pytest.raises(BadRequest):
        handlers["versions"](which)
    with pytest.raises(BadRequest):
        handlers["versions"]({"path": "Documents/notes.txt"})


def test_an_encrypted_set_lists_versions_once_unlocked_without_deriving_again(handlers, tmp_path, monkeypatch):
    src = make_tree(tmp_path / "Documents", {})
    ids = three_backups(tmp_path / "stick" / "set", src, passphrase=PASS)
    which = {"set": str(tmp_path / "stick" / "set")}
    with pytest.raises(Exception) as err:
        handlers["versions"]({**which, "path": "Documents/notes.txt"})
    assert err.value.code == "passphrase_needed"
    handlers["unlock"]({**which, "kind": "passphrase", "secret": PASS})
    derived = []
    real = crypto.unlock_with_passphrase
    monkeypatch.setattr(crypto, "unlock_with_passphrase", lambda *a, **k: derived.append(1) or real(*a, **k))
    rows = handlers["versions"]({**which, "path": "Documents/notes.txt"})
    assert [r["snapshot"] for r in rows] == ids[::-1] and derived == []


def test_a_job_here_lists_the_versions_of_its_own_set(make_agent, tmp_path):
    agent, _ = make_agent()
    handlers = Handlers(agent).table()
    src = make_tree(tmp_path / "Documents", {"notes.txt": A})
    handlers["job_save"]({"job": {"name": "Docs", "sources": [str(src)], "destination": {"path": str(tmp_path / "set")},
                                  "triggers": {"on_connect": False}}})
    for n, content in enumerate((A, B), 1):
        (src / "notes.txt").write_bytes(content)
        handlers["run_job"]({"name": "Docs"})
        wait_for(lambda n=n: len([r for r in agent.history.runs("Docs") if r.status == "ok"]) == n, what="the backup")
    rows = handlers["versions"]({"job": "Docs", "path": "Documents/notes.txt"})
    assert [r["sha256"] for r in rows] == [hashlib.sha256(c).hexdigest() for c in (B, A)]
