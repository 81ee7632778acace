"""core/agent/history.py on a real SQLite file."""

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from core.agent.history import History, RunEnd, RunKind, RunStatus, Trigger

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)


def test_run_lifecycle_and_log(tmp_path):
    h = History(tmp_path / "history.sqlite3")
    run_id = h.start("Docs", T0, drive_id="d1")
    assert h.get(run_id).status == "running"
    h.append_log(run_id, "scan: 3 files")
    h.append_log(run_id, "warning: a.txt: unreadable\n")
    h.finish(run_id, RunEnd(status=RunStatus.WARNINGS, ended=T0 + timedelta(seconds=5),
                            snapshot_id="20261122T100000Z-ab12", files_scanned=3, bytes_scanned=30,
                            files_copied=2, bytes_copied=20, warnings=1))
    run = History(tmp_path / "history.sqlite3").get(run_id)   # a second handle sees it
    assert run.to_dict() == {
        "id": run_id, "job": "Docs", "kind": "backup", "trigger": "manual", "drive_id": "d1",
        "snapshot_id": "20261122T100000Z-ab12", "started": "2026-11-22T10:00:00+00:00",
        "ended": "2026-11-22T10:00:05+00:00", "status": "warnings", "files_scanned": 3, "bytes_scanned": 30,
        "files_copied": 2, "bytes_copied": 20, "warnings": 1, "error": None, "error_code": None}
    assert run.status is RunStatus.WARNINGS and run.kind is RunKind.BACKUP
    # The window and scripts read the plain values: JSON and text show no enum names.
    assert json.loads(json.dumps(run.to_dict(), default=str))["status"] == "warnings"
    assert f"{run.status}" == "warnings" and str(run.kind) == "backup"
    assert h.log(run_id) == "scan: 3 files\nwarning: a.txt: unreadable\n"
    assert h.log(9999) is None


def test_wal_mode(tmp_path):
    History(tmp_path / "h.sqlite3")
    with sqlite3.connect(tmp_path / "h.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newest_first_filters_and_last_success(tmp_path):
    h = History(tmp_path / "h.sqlite3")
    for i, (job, status) in enumerate([("A", "ok"), ("B", "ok"), ("A", "failed"), ("A", "drive_removed")]):
        rid = h.start(job, T0 + timedelta(minutes=i))
        h.finish(rid, RunEnd(status=status, ended=T0 + timedelta(minutes=i, seconds=30)))
    assert [r.status for r in h.runs("A")] == ["drive_removed", "failed", "ok"]
    assert [r.job for r in h.runs(limit=2)] == ["A", "A"]
    assert h.last("A").status == "drive_removed"
    assert h.last_success("A").started == T0
    assert h.last_success("C") is None


def test_interrupted_runs_are_closed(tmp_path):
    h = History(tmp_path / "h.sqlite3")
    rid = h.start("A", T0)
    assert h.close_interrupted(T0 + timedelta(hours=1)) == 1
    run = h.get(rid)
    assert run.status == "failed" and "next run" in run.error


def test_finish_refuses_unknown_status(tmp_path):
    h = History(tmp_path / "h.sqlite3")
    with pytest.raises(ValueError):
        h.finish(h.start("A", T0), RunEnd(status="great", ended=T0))
    with pytest.raises(ValueError):
        h.finish(h.start("A", T0), RunEnd(status=RunStatus.RUNNING, ended=T0))


def test_status_values_are_the_stored_and_sent_text():
    # docs/ipc.md and ui/web/util.js match on these exact strings; renaming one breaks them.
    assert [s.value for s in RunStatus] == ["running", "ok", "warnings", "failed", "cancelled", "drive_removed"]
    assert [k.value for k in RunKind] == ["backup", "verify"]
    assert RunStatus.OK.succeeded and RunStatus.WARNINGS.succeeded and not RunStatus.FAILED.succeeded


def test_the_trigger_is_recorded_and_an_older_history_gains_the_column(tmp_path):
    path = tmp_path / "history.sqlite3"
    with sqlite3.connect(path) as db:   # a history from before runs recorded what started them
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL,"
                   " kind TEXT NOT NULL DEFAULT 'backup', drive_id TEXT, snapshot_id TEXT, started TEXT NOT NULL,"
                   " ended TEXT, status TEXT NOT NULL, files_scanned INTEGER NOT NULL DEFAULT 0,"
                   " bytes_scanned INTEGER NOT NULL DEFAULT 0, files_copied INTEGER NOT NULL DEFAULT 0,"
                   " bytes_copied INTEGER NOT NULL DEFAULT 0, warnings INTEGER NOT NULL DEFAULT 0, error TEXT,"
                   " error_code TEXT, log TEXT NOT NULL DEFAULT '')")
        db.execute("INSERT INTO runs (job, started, status) VALUES ('Old', ?, 'ok')", (T0.isoformat(),))
    db.close()
    h = History(path)
    (old,) = h.runs(job="Old")
    assert old.trigger is Trigger.MANUAL
    run_id = h.start("Docs", T0, trigger=Trigger.CONNECT)
    assert h.get(run_id).trigger == "connect" and h.get(run_id).to_dict()["trigger"] == "connect"
    with pytest.raises(ValueError):
        h.start("Docs", T0, trigger="whenever")
