"""A plain set's read-back in worker processes (core/engine/readback_proc.py, issue #11): the copies
are read and hashed outside the run's process, every one of them, and what reads back wrong is
still found and copied again; the workers are gone when the run ends; where no worker can start,
the same checks run in threads."""

from __future__ import annotations

import pytest

from core.engine import backup as backup_mod
from core.engine import fresh_latest, objcheck, readback_proc
from core.engine.fs import READS_AHEAD
from core.engine.progress import FakeClock
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.trees import make_tree, read_tree

linux_only = pytest.mark.skipif(not READS_AHEAD, reason="a plain set reads back in workers on Linux")


def _workers() -> list[str]:
    import psutil

    return [" ".join(c.cmdline()) for c in psutil.Process().children(recursive=True)
            if "core.engine.readpool" in " ".join(c.cmdline())]


def _spec(n: int) -> dict:
    return {f"d{i // 40}/f{i:03}.txt": b"content %d " % i * (i % 5 + 1) for i in range(n)}


@linux_only
def test_a_plain_sets_copies_are_read_back_in_a_worker_process(tmp_path, monkeypatch):
    """Every copy is handed to the worker once, none is opened in the run's process (the old code
    opened each one in its read-back thread, trading the GIL with the pass), and no worker is left."""
    src = make_tree(tmp_path / "Data", _spec(120))
    opened_here, handed, workers_seen = [], [], []
    open_copy, hand = objcheck.open_copy, readback_proc._handed

    def opening(paths):
        opened_here.extend(paths)
        return open_copy(paths)

    def handing(run, batch):
        handed.extend(e.path for e, _ in batch)
        workers_seen.append(len(_workers()))
        return hand(run, batch)

    monkeypatch.setattr(objcheck, "open_copy", opening)
    monkeypatch.setattr(readback_proc, "_handed", handing)
    monkeypatch.setattr(readback_proc, "BATCH", 16)   # (more copies than a batch: the workers start)
    monkeypatch.setattr(readback_proc, "FEW", 16)     # (and more than this process reads itself)
    r = backup_path(tmp_path / "set", [src])
    assert r.status == "ok" and r.damaged == [] and r.files_copied == 120
    assert sorted(handed) == sorted(f"Data/{p}" for p in _spec(120))
    assert opened_here == []
    assert workers_seen and min(workers_seen) >= 1
    assert _workers() == []


@linux_only
def test_without_workers_the_read_back_runs_in_threads_and_still_finds_damage(tmp_path, monkeypatch):
    """No worker process can start (readpool falls back to threads): a copy damaged after its
    flush is still found during the run and copied again."""
    from core.engine import lean_child

    def cannot_start(*a, **k):
        raise OSError(8, "Exec format error")

    monkeypatch.setattr(lean_child, "start_lean", cannot_start)
    monkeypatch.setattr(readback_proc, "BATCH", 8)
    spec = _spec(80)
    src = make_tree(tmp_path / "src" / "Data", spec)
    copy = tmp_path / "set" / "tmp" / fresh_latest.STAGE / "Data" / "d0" / "f010.txt"   # (a first backup's Latest/ being built)
    clock = FakeClock()

    def progress(p):
        if p.phase == "copy":
            clock.advance(backup_mod.CHECKPOINT_SECONDS)   # (a flush after every copy)
            if p.files_done == 11:
                copy.write_bytes(b"X" + spec["d0/f010.txt"][1:])

    found = []
    checked = readback_proc.checked

    def checking(run, items, few=None, **k):
        for batch, problems in checked(run, items, few, **k):
            found.extend(e.path for (e, _), problem in zip(batch, problems, strict=True) if problem)
            yield batch, problems

    monkeypatch.setattr(readback_proc, "checked", checking)
    r = backup_path(tmp_path / "set", [src], clock=clock, progress=progress, workers=1)
    assert found == ["Data/d0/f010.txt"]
    latest = tmp_path / "set" / "Latest" / "Data" / "d0" / "f010.txt"
    assert r.status == "ok" and r.damaged == [] and latest.read_bytes() == spec["d0/f010.txt"]
    assert _workers() == []
    monkeypatch.undo()
    assert verify_path(tmp_path / "set", read_all=True).ok
    restore_path(tmp_path / "set", tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Data") == read_tree(src)


@linux_only
def test_a_run_that_copied_less_than_a_batch_starts_no_worker(tmp_path, monkeypatch):
    """A handful of copies (a day of changes, most small runs) is read back in the run's thread as
    before: starting processes for them would cost more than reading them."""
    src = make_tree(tmp_path / "Data", _spec(readback_proc.BATCH - 1))
    opened_here, handed = _counting(monkeypatch)
    r = backup_path(tmp_path / "set", [src])
    assert r.status == "ok" and r.damaged == [] and r.files_copied == readback_proc.BATCH - 1
    assert handed == [] and len(opened_here) == readback_proc.BATCH - 1


def _counting(monkeypatch) -> tuple[list, list]:
    """(paths opened in the run's process, entries handed to a worker) of the read-backs to come."""
    opened_here, handed = [], []
    open_copy, hand = objcheck.open_copy, readback_proc._handed

    def opening(paths):
        opened_here.extend(paths)
        return open_copy(paths)

    monkeypatch.setattr(objcheck, "open_copy", opening)
    monkeypatch.setattr(readback_proc, "_handed", lambda run, batch: handed.extend(batch) or hand(run, batch))
    return opened_here, handed


def _changed(src, spec: dict, n: int) -> None:
    for p in list(spec)[:n]:
        (src / p).write_bytes(spec[p] + b" changed")


@linux_only
@pytest.mark.parametrize("changed, in_workers", [(30, False), (50, True)])
def test_a_day_of_changes_is_read_back_here_up_to_few_copies(tmp_path, monkeypatch, changed, in_workers):
    """More copies than a batch, all known at the commit (no checkpoint released any before):
    read back in the run's process up to FEW (a worker's start cost a day of changes more than
    its reads), in the workers above it; either way every copy is read back."""
    spec = _spec(60)
    src = make_tree(tmp_path / "Data", spec)
    assert backup_path(tmp_path / "set", [src]).status == "ok"
    monkeypatch.setattr(readback_proc, "BATCH", 8)
    monkeypatch.setattr(readback_proc, "FEW", 40)
    opened_here, handed = _counting(monkeypatch)
    _changed(src, spec, changed)
    r = backup_path(tmp_path / "set", [src], clock=FakeClock())   # (no checkpoint by time: all known at the commit)
    assert r.status == "ok" and r.damaged == [] and r.files_copied == changed
    if in_workers:
        assert len(handed) == changed and opened_here == []
    else:
        assert handed == [] and len(opened_here) == changed
    assert _workers() == []


@linux_only
def test_copies_released_by_a_checkpoint_go_to_the_workers_however_few_in_all(tmp_path, monkeypatch):
    """A batch released during the pass (its count not known yet) starts the workers, as before.
    (Whether the pass is still going when the first batch is there is the threads' race: the
    record says the count is unknown, as it does until the commit.)"""
    from core.engine.readback_ahead import Written

    spec = _spec(60)
    src = make_tree(tmp_path / "Data", spec)
    monkeypatch.setattr(readback_proc, "BATCH", 8)
    monkeypatch.setattr(Written, "total", lambda self: None)
    opened_here, handed = _counting(monkeypatch)
    clock = FakeClock()

    def progress(p):
        if p.phase == "copy":
            clock.advance(backup_mod.CHECKPOINT_SECONDS)   # (a flush after every copy)

    r = backup_path(tmp_path / "set", [src], clock=clock, progress=progress, workers=1)
    assert r.status == "ok" and r.files_copied == 60 <= readback_proc.FEW
    assert len(handed) == 60 and opened_here == []
