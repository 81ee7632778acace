"""The change tracker on real folders with real inotify (issue #12): what lands in the journal, what is
not watched, and every reason the journal stops being trusted (overflow, watch limit, a dead watch,
a jumping clock, a FUSE source)."""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from core.agent.changes import ChangeTracker
from core.agent.config import Config, Destination, Job
from core.agent.journal import FULL, JOURNAL
from core.engine.progress import Clock, FakeClock
from tests.support.trees import make_tree
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify: Linux only")


def config_for(src, **kw) -> Config:
    job = Job(name="Docs", sources=[str(src)], destination=Destination(path=str(Path(src).parent / "set")), **kw)
    return Config(jobs=[job])


@pytest.fixture
def tracker(paths):
    made = []

    def make(config, clock=None, **kw):
        t = ChangeTracker(paths, clock or Clock(), tick_seconds=3600, **kw)
        t.start(config)
        made.append(t)
        return t

    yield make
    for t in made:
        t.stop()


def inotify_watches() -> int:
    """How many inotify watches this process holds now (the kernel's own count, /proc/self/fdinfo)."""
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            total += Path(f"/proc/self/fdinfo/{fd}").read_text().count("inotify wd:")
        except OSError:
            continue
    return total


def test_real_events_land_in_the_journal_as_folders(tracker, tmp_path):
    src = make_tree(tmp_path / "Docs", {"a/b/old.txt": b"1", "c/keep.txt": b"2"})
    changed = []
    t = tracker(config_for(src), on_change=changed.append)
    journal = t._journal("Docs")
    (src / "a/b/new.txt").write_bytes(b"new")                       # a file created
    (src / "c/keep.txt").write_bytes(b"edited")                     # a file edited
    os.makedirs(src / "d/e")                                        # a folder tree created
    (src / "d/e/f.txt").write_bytes(b"f")
    os.rename(src / "a/b", src / "moved")                           # a folder renamed
    expected_dirs = {str(src / "a/b"), str(src / "c"), str(src / "a"), str(src)}
    wait_for(lambda: expected_dirs <= journal.dirs and {str(src / "d"), str(src / "moved")} <= journal.trees,
             what=f"the folders in the journal (now {journal.dirs}, {journal.trees})")
    assert changed and set(changed) == {"Docs"}
    assert all(p == str(src) or p.startswith(str(src) + os.sep) for p in journal.dirs | journal.trees)
    assert journal.untrusted is None


def test_excluded_and_own_folders_are_not_watched(tracker, tmp_path, paths):
    src = make_tree(tmp_path / "Docs", {"keep/x.txt": b"x", "node_modules/p1/a.js": b"a",
                                        "node_modules/p2/b.js": b"b", "build/out/c.o": b"c", "set/": None})
    before = inotify_watches()
    cfg = config_for(src, excludes=["node_modules/", "/build"])
    cfg.jobs[0].destination = Destination(path=str(src / "set"))     # a set inside the source
    t = tracker(cfg)
    # Watched: the source and keep/ only — not node_modules/ (2 below it), build/ (1 below it), set/.
    assert inotify_watches() - before == 2
    journal = t._journal("Docs")
    (src / "node_modules/p1/new.js").write_bytes(b"n")
    (src / "set/plugback.json").write_bytes(b"{}")                   # Plugback's own write
    (src / "keep/y.txt").write_bytes(b"y")                          # the one change that counts
    wait_for(lambda: str(src / "keep") in journal.dirs, what="the change in keep/")
    assert journal.dirs == {str(src / "keep"), str(src)}


def test_a_queue_overflow_distrusts_the_journal(tracker, tmp_path):
    """A real IN_Q_OVERFLOW: the kernel's per-instance queue is made tiny for this one instance."""
    src = make_tree(tmp_path / "Docs", {"a/": None})
    knob = Path("/proc/sys/fs/inotify/max_queued_events")
    if not os.access(knob, os.W_OK):
        pytest.skip("cannot set fs.inotify.max_queued_events (needs root)")
    old = knob.read_text()
    try:
        knob.write_text("8")       # read by inotify_init only: this tracker's instance alone gets it
        t = tracker(config_for(src))
    finally:
        knob.write_text(old)
    journal = t._journal("Docs")
    for i in range(3000):
        (src / f"a/{i}").write_bytes(b"x")
        if journal.untrusted:
            break
    wait_for(lambda: journal.untrusted == "overflow", what="the overflow")
    plan = t.begin("Docs", "S1", full_days=7, full_runs=0)
    assert (plan.mode, plan.reason, plan.hint) == (FULL, "overflow", None)


def test_the_watch_limit_means_full_scans_and_says_how_to_raise_it(tracker, tmp_path, monkeypatch):
    """The kernel's answer to inotify_add_watch past fs.inotify.max_user_watches (ENOSPC), injected after
    3 watches: the limit is per user, and lowering the real one would break every other inotify user here."""
    from watchdog.observers import inotify_c

    src = make_tree(tmp_path / "Docs", {f"d{i}/x": b"x" for i in range(6)})
    real = inotify_c.inotify_add_watch
    calls = []

    def limited(fd, path, mask):
        calls.append(path)
        if len(calls) > 3:
            ctypes.set_errno(errno.ENOSPC)
            return -1
        return real(fd, path, mask)

    monkeypatch.setattr(inotify_c, "inotify_add_watch", limited)
    t = tracker(config_for(src))
    journal = t._journal("Docs")
    assert journal.untrusted == "watch_limit"
    st = t.status("Docs", "S1", full_days=7, full_runs=0)
    assert st["next_scan"] == FULL
    assert "sudo sysctl fs.inotify.max_user_watches=524288" in st["next_scan_reason"]
    t.begin("Docs", "S1", full_days=7, full_runs=0)
    assert journal.untrusted == "watch_limit"        # it lasts while the job is watched this way


def test_a_dead_watch_and_a_jumping_clock_distrust_the_journal(tracker, tmp_path):
    clock = FakeClock()
    src = make_tree(tmp_path / "Docs", {"a.txt": b"a"})
    t = tracker(config_for(src), clock=clock)
    journal = t._journal("Docs")
    journal.untrusted = None
    clock.advance(2)
    t.tick()
    assert journal.untrusted is None
    clock.current += timedelta(minutes=5)           # the wall clock moved, the monotonic one did not (sleep)
    t.tick()
    assert journal.untrusted == "clock_jump"
    journal.untrusted = None
    os.remove(src / "a.txt")
    os.rmdir(src)                                    # the source itself vanished: its watch ends
    wait_for(lambda: not t.watches["Docs"].healthy(), what="the watch to end")
    t.tick()
    assert journal.untrusted == "failed"


def test_a_source_on_fuse_is_never_trusted(tracker, vfat_drive):
    src = vfat_drive.mount_point / "Docs"
    src.mkdir()
    t = tracker(config_for(src))
    plan = t.begin("Docs", "S1", full_days=7, full_runs=0)
    assert (plan.mode, plan.reason) == (FULL, "unreliable_fs")
    t.end(plan, "S2")
    assert t.begin("Docs", "S2", full_days=7, full_runs=0).reason == "unreliable_fs"


def test_journal_is_trusted_only_from_the_snapshot_it_counts_from(tracker, tmp_path):
    clock = FakeClock()
    src = make_tree(tmp_path / "Docs", {"a/x": b"x"})
    t = tracker(config_for(src), clock=clock)
    first = t.begin("Docs", None, full_days=7, full_runs=0)
    assert (first.mode, first.reason) == (FULL, "first")
    (src / "a/during-the-run").write_bytes(b"d")    # after the journal was taken: belongs to the next run
    t.end(first, "S1")
    journal = t._journal("Docs")
    wait_for(lambda: str(src / "a") in journal.dirs, what="the change during the run")
    second = t.begin("Docs", "S1", full_days=7, full_runs=0)
    assert second.mode == JOURNAL and second.hint is not None
    assert second.hint.since_snapshot == "S1" and str(src / "a") in second.hint.dirs
    t.end(second, None)                              # failed: the folders are given back
    assert str(src / "a") in journal.dirs and journal.since == "S1"
    third = t.begin("Docs", "S0", full_days=7, full_runs=0)   # history knows another newest snapshot
    assert (third.mode, third.reason) == (FULL, "other_backup")


def test_a_run_waits_for_events_still_on_their_way(tracker, tmp_path):
    """watchdog holds a move's first half 0.5 s to pair it: a file moved out of the source just before
    the run must still be in that run's hint (the engine trusts the hint to be complete)."""
    src = make_tree(tmp_path / "Docs", {"a/f.txt": b"f"})
    (tmp_path / "elsewhere").mkdir()
    t = tracker(config_for(src))
    t.end(t.begin("Docs", None, full_days=7, full_runs=0), "S1")
    t._journal("Docs").last_full = FakeClock().now()
    os.rename(src / "a/f.txt", tmp_path / "elsewhere/f.txt")         # moved out: only IN_MOVED_FROM
    plan = t.begin("Docs", "S1", full_days=36500, full_runs=0)
    assert plan.mode == JOURNAL and plan.hint is not None
    assert str(src / "a") in plan.hint.dirs


def test_when_the_engine_did_not_use_the_hint_status_says_so(tracker, tmp_path):
    src = make_tree(tmp_path / "Docs", {"a/f.txt": b"f"})
    t = tracker(config_for(src))
    t.end(t.begin("Docs", None, full_days=7, full_runs=0), "S1")
    (src / "a/g.txt").write_bytes(b"g")
    wait_for(lambda: t._journal("Docs").dirs, what="the change")
    plan = t.begin("Docs", "S1", full_days=7, full_runs=0)
    assert plan.mode == JOURNAL
    t.end(plan, "S2", engine_scan="full")          # BackupResult.scan: the engine scanned everything
    st = t.status("Docs", "S2", full_days=7, full_runs=0)
    assert st["scan"] == "full" and "not the ones the change journal counted from" in st["full_scan_reason"]


def test_editing_a_jobs_folders_rewatches_and_removing_it_forgets_its_journal(tracker, tmp_path):
    src = make_tree(tmp_path / "Docs", {"a/x": b"x", "b/y": b"y"})
    cfg = config_for(src)
    t = tracker(cfg)
    t.end(t.begin("Docs", None, full_days=7, full_runs=0), "S1")
    before = inotify_watches()
    cfg.jobs[0].excludes = ["b/"]
    t.reconcile(cfg)
    assert inotify_watches() == before - 1                 # b/ is no longer watched
    journal = t._journal("Docs")
    assert t.begin("Docs", "S1", full_days=7, full_runs=0).reason == "job_changed"
    (src / "b/new").write_bytes(b"n")
    (src / "a/new").write_bytes(b"n")
    wait_for(lambda: str(src / "a") in journal.dirs, what="the change in a/")
    assert str(src / "b") not in journal.dirs
    path = t.store.path("Docs", t._journal("Docs").where)
    assert path.exists()
    t.reconcile(Config(jobs=[]))
    assert not path.exists() and t._journal("Docs") is None and inotify_watches() == before - 3


def test_a_watcher_that_cannot_start_means_full_scans_not_a_dead_agent(tracker, tmp_path, monkeypatch):
    from core.agent import observers

    def broken(*args, **kwargs):
        raise RuntimeError("no watcher on this system")

    monkeypatch.setattr(observers, "make_observer", broken)
    src = make_tree(tmp_path / "Docs", {"a.txt": b"a"})
    t = tracker(config_for(src))
    st = t.status("Docs", "S1", full_days=7, full_runs=0)
    assert st["next_scan"] == FULL and st["next_scan_reason"] == "watching the folders for changes failed"


def test_a_job_on_two_drives_keeps_a_journal_per_drive(tracker, tmp_path):
    """Rotation (issue #14): each drive holds its own set, so each gets its own journal; a backup to one
    drive does not empty the other's."""
    a, b = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
    src = make_tree(tmp_path / "Docs", {"x/f.txt": b"f"})
    job = Job(name="Docs", sources=[str(src)], destination=Destination(drive_id=a, rotation=[{"drive_id": b}]))
    t = tracker(Config(jobs=[job]))
    net = {"full_days": 7, "full_runs": 0}
    for where, first in ((f"drive:{a}", "A1"), (f"drive:{b}", "B1")):
        t.end(t.begin("Docs", None, where=where, **net), first)
        t._journal("Docs", where).last_full = FakeClock().now()
    (src / "x/g.txt").write_bytes(b"g")
    wait_for(lambda: all(str(src / "x") in t._journal("Docs", w).dirs for w in (f"drive:{a}", f"drive:{b}")),
             what="the change in both journals")
    on_a = t.begin("Docs", "A1", where=f"drive:{a}", **{**net, "full_days": 36500})
    assert on_a.mode == JOURNAL and on_a.hint.since_snapshot == "A1" and str(src / "x") in on_a.hint.dirs
    t.end(on_a, "A2")
    on_b = t.begin("Docs", "B1", where=f"drive:{b}", **{**net, "full_days": 36500})
    assert on_b.mode == JOURNAL and on_b.hint.since_snapshot == "B1" and str(src / "x") in on_b.hint.dirs
    assert t.store.path("Docs", f"drive:{a}") != t.store.path("Docs", f"drive:{b}")
