"""Per-file problems end a run with typed warnings (a code per kind), and restores report per-file outcomes."""

from __future__ import annotations

import os
import shutil

import pytest

from core.engine.backup import SOURCE_RETRIES, SOURCE_RETRY_DELAY, BackupStatus
from core.engine.progress import FakeClock, WarningCode
from core.engine.restore import OnConflict, RestoreOptions
from core.errors import UsageError
from tests.support.engine import backup_path, restore_path
from tests.support.trees import make_tree, read_tree


@pytest.fixture
def turn_into_folder_when_read(monkeypatch):
    """``turn(path)``: once the run first opens or reads ``path`` (after its scan: the scan and
    the copies overlap), it becomes a folder, so reading it fails (EISDIR) on every retry. (The
    pass opens a small file ahead of its copy, store.prefetch_source: the copy would read the
    file it opened then.)"""
    from core.engine import store

    def turn(path):
        def turning(real):
            def call(p, *args, **kwargs):
                if p == str(path) and os.path.isfile(path):
                    os.unlink(path)
                    os.mkdir(path)
                return real(p, *args, **kwargs)
            return call

        monkeypatch.setattr(store, "read_source", turning(store.read_source))
        monkeypatch.setattr(store, "prefetch_source", turning(store.prefetch_source))
    return turn


def test_unreadable_changed_file_keeps_its_previous_version(tmp_path, turn_into_folder_when_read):
    src = make_tree(tmp_path / "Data", {"a.txt": b"a v1", "b.txt": b"b v1"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    (src / "a.txt").write_bytes(b"a v2, longer")
    (src / "b.txt").write_bytes(b"b v2, longer")
    clock = FakeClock()
    start = clock.monotonic()
    turn_into_folder_when_read(src / "b.txt")
    r = backup_path(set_path, [src], workers=1, clock=clock)
    assert r.status is BackupStatus.WARNINGS and r.to_dict()["status"] == "warnings"
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.KEPT_PREVIOUS, str(src / "b.txt"))]
    assert r.to_dict()["warnings"][0]["code"] == "kept_previous"
    # The retries waited on the run's clock, not on the real one.
    assert clock.monotonic() - start == pytest.approx((SOURCE_RETRIES - 1) * SOURCE_RETRY_DELAY)
    restore_path(set_path, tmp_path / "out", snapshot=r.snapshot_id)
    assert read_tree(tmp_path / "out" / "Data") == {"a.txt": b"a v2, longer", "b.txt": b"b v1"}


def test_unreadable_new_file_is_skipped(tmp_path, turn_into_folder_when_read):
    src = make_tree(tmp_path / "Data", {"a.txt": b"a", "b.txt": b"b"})
    turn_into_folder_when_read(src / "b.txt")
    r = backup_path(tmp_path / "set", [src], workers=1, clock=FakeClock())
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.UNREADABLE, str(src / "b.txt"))]
    assert "skipped" in r.warnings[0].message


@pytest.mark.parametrize("change", ["edit", "delete"])
def test_copy_in_latest_edited_by_hand_is_reported(tmp_path, change):
    """The old version cannot be kept when Latest/'s copy is not what the snapshot says, whether the
    file is replaced by a new version or removed from the sources."""
    src = make_tree(tmp_path / "Data", {"a.txt": b"version one"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    (set_path / "Latest" / "Data" / "a.txt").write_bytes(b"edited in the set")
    if change == "edit":
        (src / "a.txt").write_bytes(b"version two")
    else:
        (src / "a.txt").unlink()
    r = backup_path(set_path, [src])
    assert r.status == "warnings"
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.LATEST_EDITED, "Data/a.txt")]
    assert "changed outside Plugback" in r.warnings[0].message


def test_foreign_files_in_a_removed_folder_are_left_and_reported(tmp_path):
    src = make_tree(tmp_path / "Data", {"sub/a.txt": b"a", "keep.txt": b"k"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    (set_path / "Latest" / "Data" / "sub" / "mine.txt").write_bytes(b"put there by hand")
    shutil.rmtree(src / "sub")
    r = backup_path(set_path, [src])
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.LATEST_FOREIGN, "Latest/Data/sub")]
    assert (set_path / "Latest" / "Data" / "sub" / "mine.txt").read_bytes() == b"put there by hand"


def test_a_restore_names_at_most_kept_named_files_it_kept_under_another_name(tmp_path, monkeypatch):
    from core.engine import restore as restore_mod

    src = make_tree(tmp_path / "Data", {f"{i}.txt": b"backed up" for i in range(5)})
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    out = tmp_path / "out"
    make_tree(out / "Data", {f"{i}.txt": b"mine" for i in range(5)})
    monkeypatch.setattr(restore_mod, "KEPT_NAMED", 2)
    kept = restore_path(set_path, out, on_conflict="keep-both")
    assert kept.kept_both == 5 and len(kept.kept_as) == 2       # counted all, named the first two only


def test_restore_outcomes_per_conflict_choice(tmp_path):
    src = make_tree(tmp_path / "Data", {"a.txt": b"backed up a", "b.txt": b"backed up b", "c.txt": b"c"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    out = tmp_path / "out"
    make_tree(out / "Data", {"a.txt": b"mine a", "b.txt": b"mine b"})

    skipped = restore_path(set_path, out)
    assert (skipped.files_restored, skipped.skipped, skipped.overwritten, skipped.kept_both) == (1, 2, 0, 0)

    kept = restore_path(set_path, out, on_conflict="keep-both")
    assert (kept.files_restored, kept.kept_both, kept.overwritten, kept.skipped) == (3, 3, 0, 0)
    assert (out / "Data" / "a (restored).txt").read_bytes() == b"backed up a"
    assert (out / "Data" / "a.txt").read_bytes() == b"mine a"
    data = str(out / "Data")
    assert sorted(kept.kept_as) == [("Data/a.txt", f"{data}/a.txt", f"{data}/a (restored).txt"),
                                    ("Data/b.txt", f"{data}/b.txt", f"{data}/b (restored).txt"),
                                    ("Data/c.txt", f"{data}/c.txt", f"{data}/c (restored).txt")]
    assert sorted(d["as"] for d in kept.to_dict()["kept_as"])[0] == f"{data}/a (restored).txt"

    over = restore_path(set_path, out, on_conflict=OnConflict.OVERWRITE)
    assert (over.files_restored, over.overwritten, over.kept_both, over.skipped) == (3, 3, 0, 0)
    assert over.to_dict()["overwritten"] == 3
    assert (out / "Data" / "a.txt").read_bytes() == b"backed up a"


def test_unknown_conflict_choice_is_a_usage_error():
    with pytest.raises(UsageError, match="skip, overwrite or keep-both"):
        RestoreOptions(on_conflict="merge")


def test_latest_edited_reaches_history_and_the_notification_text(tmp_path):
    """The agent's run keeps the warning: history's count and log, and the notification's summary."""
    from core.agent.config import Config, Destination, Job
    from core.agent.history import History
    from core.agent.jobs import run_job

    src = make_tree(tmp_path / "Data", {"a.txt": b"version one"})
    job = Job(name="Data", sources=[str(src)], destination=Destination(path=str(tmp_path / "set")))
    history = History(tmp_path / "h.sqlite3")
    assert run_job(job, Config(jobs=[job]), history).status == "ok"
    (tmp_path / "set" / "Latest" / "Data" / "a.txt").write_bytes(b"edited by hand, longer")
    (src / "a.txt").write_bytes(b"version two")
    outcome = run_job(job, Config(jobs=[job]), history)
    assert outcome.status == "warnings" and outcome.warnings == 1
    assert "Latest/ changed outside Plugback" in outcome.warning_summary
    run = history.get(outcome.run_id)
    assert run.status == "warnings" and run.warnings == 1
    assert "Latest/Data/a.txt was changed outside Plugback" in history.log(outcome.run_id)
