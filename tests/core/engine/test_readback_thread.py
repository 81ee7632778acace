"""The backup's read-back started beside the steps after the commit (core/engine/readback_thread.py):
it runs while ``Latest.sha256`` and the journal are still being dealt with, its answer and its
errors reach the run as before, and a failure after the commit stops it before the lock goes."""

from __future__ import annotations

import threading

import pytest

from core.agent.keys import Secret, make_unlocker
from core.engine import journal, readback, readback_proc
from core.engine.sums import LatestSums
from tests.support.engine import backup_path, verify_path
from tests.support.trees import make_tree

WAIT = 10.0   # seconds a step waits for the read-back to show up (only a broken run waits that long)


def _reading() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "plugback-read-back"]


def _progress_seen():
    seen = threading.Event()

    def progress(report):
        if report.phase == "verify":
            seen.set()
    return seen, progress


@pytest.mark.parametrize("passphrase", [None, "pw"], ids=["plain", "encrypted"])
def test_the_read_back_runs_while_the_journal_is_still_there(tmp_path, monkeypatch, passphrase):
    """Step 5 (here: the journal's removal) waits for the read-back's report: it comes, so the two
    overlap; the snapshot ends checked, as before."""
    src = make_tree(tmp_path / "src" / "Data", {f"f{i}.txt": b"content %d" % i for i in range(20)})
    seen, progress = _progress_seen()
    remove, overlapped = journal.Journal.remove, []

    def remove_late(self):
        overlapped.append(seen.wait(WAIT))
        remove(self)

    monkeypatch.setattr(journal.Journal, "remove", remove_late)
    r = backup_path(tmp_path / "set", [src], passphrase=passphrase, progress=progress)
    assert overlapped == [True]
    assert r.status == "ok" and r.damaged == [] and r.files_copied == 20
    assert not _reading()
    monkeypatch.undo()
    unlock = make_unlocker(Secret.passphrase(passphrase)) if passphrase else None
    assert verify_path(tmp_path / "set", read_all=True, unlock=unlock).ok


def test_a_failure_after_the_commit_stops_the_read_back(tmp_path, monkeypatch):
    """``Latest.sha256`` cannot be written: the run ends with that error, its read-back stopped and
    waited for (nothing of the run left running), the snapshot committed; the next run finishes
    the last steps."""
    src = make_tree(tmp_path / "src" / "Data", {f"f{i:03}.txt": b"content %d" % i for i in range(200)})
    started = threading.Event()
    check, handed = readback._finish, readback_proc._handed

    def slow_finish(*a):
        started.set()
        threading.Event().wait(0.01)   # (200 files: the read-back is still going when the commit fails)
        return check(*a)

    def slow_hand(run, batch):   # (a plain set on Linux: the read-back's worker process is handed batches)
        started.set()
        threading.Event().wait(0.05)
        return handed(run, batch)

    def failing_commit(self, bset):
        assert started.wait(WAIT)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(readback, "_finish", slow_finish)
    monkeypatch.setattr(readback_proc, "_handed", slow_hand)
    monkeypatch.setattr(readback_proc, "BATCH", 8)
    monkeypatch.setattr(LatestSums, "commit", failing_commit)
    with pytest.raises(OSError, match="Input/output"):
        backup_path(tmp_path / "set", [src])
    assert not _reading()
    assert (tmp_path / "set" / "journal.json").exists()
    assert len(list((tmp_path / "set" / "snapshots").iterdir())) == 1
    monkeypatch.undo()
    r = backup_path(tmp_path / "set", [src])
    assert r.status == "ok" and not (tmp_path / "set" / "journal.json").exists()
    assert verify_path(tmp_path / "set", read_all=True).ok


def test_the_read_backs_error_reaches_the_run(tmp_path, monkeypatch):
    """An error of the read-back (a drive gone, say) is the run's, raised after step 5 is done."""
    src = make_tree(tmp_path / "src" / "Data", {"a.txt": b"a", "b.txt": b"b"})

    def gone(*a):
        raise OSError(19, "No such device")

    monkeypatch.setattr(readback, "read_back", gone)
    with pytest.raises(OSError, match="No such device"):
        backup_path(tmp_path / "set", [src])
    assert not (tmp_path / "set" / "journal.json").exists()   # step 5 finished first
    assert not _reading()
