"""The change journal's pure parts (issue #12): events -> folders, when to trust it, its file on disk."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from core.agent import journal as jr
from core.agent.journal import FULL, JOURNAL, Journal, JournalStore, TrustInput, folders_for_event, resumed, scan_plan
from core.agent.live import live_wait
from core.agent.observers import fs_reliable

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("kind, is_dir, src, dest, dirs, trees", [
    ("created", False, "/s/a/f", "", {"/s/a"}, set()),
    ("modified", False, "/s/a/f", "", {"/s/a"}, set()),
    ("closed", False, "/s/a/f", "", {"/s/a"}, set()),
    ("deleted", False, "/s/a/f", "", {"/s/a"}, set()),
    ("moved", False, "/s/a/f", "/s/b/g", {"/s/a", "/s/b"}, set()),
    ("moved", False, "", "/s/b/g", {"/s/b"}, set()),               # moved in from outside
    ("created", True, "/s/a/new", "", {"/s/a"}, {"/s/a/new"}),
    ("moved", True, "/s/a/d", "/s/b/d", {"/s/a", "/s/b"}, {"/s/b/d"}),
    ("moved", True, "/s/a/d", "", {"/s/a"}, set()),                # moved out
    ("deleted", True, "/s/a/d", "", {"/s/a"}, set()),
    ("modified", True, "/s/a/d", "", {"/s/a", "/s/a/d"}, set()),   # its own metadata / entries
    ("attrib", True, "/s/a/d", "", {"/s/a", "/s/a/d"}, set()),
    ("opened", False, "/s/a/f", "", set(), set()),                 # reading changes nothing
    ("closed_no_write", False, "/s/a/f", "", set(), set()),
])
def test_folders_for_each_kind_of_event(kind, is_dir, src, dest, dirs, trees):
    assert folders_for_event(kind, is_dir, src, dest) == (dirs, trees)


def plan(**kw):
    base = dict(since="S1", last_snapshot="S1", untrusted=None, last_full=NOW - timedelta(days=1), runs_since_full=3)
    return scan_plan(TrustInput(**{**base, **kw}), NOW, full_days=7, full_runs=0)


@pytest.mark.parametrize("kw, expected", [
    ({}, (JOURNAL, None)),
    ({"requested": True}, (FULL, "requested")),
    ({"last_snapshot": None}, (FULL, "first")),
    ({"watched": False}, (FULL, "no_watch")),
    ({"untrusted": "overflow"}, (FULL, "overflow")),
    ({"untrusted": "watch_limit"}, (FULL, "watch_limit")),
    ({"since": None}, (FULL, "not_watching")),
    ({"since": "S0"}, (FULL, "other_backup")),                     # a snapshot made while nobody watched
    ({"last_full": None}, (FULL, "safety_net")),
    ({"last_full": NOW - timedelta(days=7)}, (FULL, "safety_net")),
    ({"last_full": NOW - timedelta(days=6, hours=23)}, (JOURNAL, None)),
    ({"last_full": NOW + timedelta(hours=1)}, (FULL, "clock_jump")),   # the clock went back
])
def test_when_the_journal_is_trusted(kw, expected):
    assert plan(**kw) == expected


def test_safety_net_by_runs():
    inp = TrustInput("S1", "S1", None, NOW - timedelta(hours=1), 10)
    assert scan_plan(inp, NOW, full_days=7, full_runs=10) == (FULL, "safety_net")
    assert scan_plan(inp, NOW, full_days=7, full_runs=11) == (JOURNAL, None)
    assert scan_plan(inp, NOW, full_days=7, full_runs=0) == (JOURNAL, None)


def test_every_reason_has_words_and_the_watch_limit_says_how_to_raise_it():
    assert "sudo sysctl fs.inotify.max_user_watches=524288" in jr.reason_text("watch_limit")
    for code in ("requested", "first", "no_watch", "overflow", "not_watching", "crashed", "other_backup",
                 "safety_net", "clock_jump", "failed", "unreliable_fs", "too_many", "job_changed"):
        assert jr.reason_text(code) != code


def test_journal_collapses_to_a_full_scan_past_the_cap(monkeypatch):
    monkeypatch.setattr(jr, "MAX_FOLDERS", 5)
    j = Journal("Docs", since="S1")
    j.add({f"/s/{i}" for i in range(5)})
    assert j.untrusted is None and j.folders == 5
    j.add({"/s/6"})
    assert j.untrusted == "too_many" and j.folders == 0       # memory is freed, not kept
    j.add({"/s/7"})
    assert j.folders == 0


def test_take_commit_and_give_back():
    j = Journal("Docs", since="S1")
    j.add({"/s/a"}, {"/s/t"})
    taken = j.take()
    assert (taken.since, taken.dirs, taken.trees) == ("S1", {"/s/a"}, {"/s/t"})
    j.add({"/s/during"})                      # a change while the run scans: kept for the next run
    j.committed("S2", JOURNAL, None, NOW)
    assert (j.since, j.dirs, j.runs_since_full) == ("S2", {"/s/during"}, 1)
    taken = j.take()
    j.distrust("overflow")
    j.give_back(taken)                        # the run failed: its folders are still due, and the distrust stays
    assert j.since == "S2" and j.untrusted == "overflow" and j.folders == 0
    j2 = Journal("Docs", since="S2")
    j2.add({"/s/a"})
    t2 = j2.take()
    j2.add({"/s/b"})
    j2.give_back(t2)
    assert j2.since == "S2" and j2.dirs == {"/s/a", "/s/b"}


def test_a_permanent_reason_outlives_a_run():
    j = Journal("Docs", since="S1")
    j.distrust("watch_limit", permanent=True)
    j.take()
    j.committed("S2", FULL, "watch_limit", NOW)
    assert j.untrusted == "watch_limit"


def test_store_round_trip_and_a_new_agent_distrusts_it(tmp_path):
    store = JournalStore(tmp_path)
    j = Journal("Docs", since="S1", watching_since=NOW, last_scan=FULL, last_full=NOW, last_full_reason="first",
                runs_since_full=2)
    j.add({"/s/a"})
    store.write(j)                            # not closed: the agent was still running (or crashed)
    record = store.read("Docs")
    assert record["dirs"] == ["/s/a"] and record["since"] == "S1" and record["closed"] is None
    assert resumed("Docs", record, NOW).untrusted == "crashed"
    store.write(j, closed=NOW)
    fresh = resumed("Docs", store.read("Docs"), NOW)
    assert fresh.untrusted == "not_watching" and fresh.since is None and fresh.folders == 0
    assert (fresh.last_full, fresh.runs_since_full, fresh.last_full_reason) == (NOW, 2, "first")
    assert store.read("Other") is None
    assert oct(store.path("Docs").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("change", [
    lambda r: r.update(format="something"), lambda r: r.update(version=2), lambda r: r.update(job="Other"),
    lambda r: r.update(dirs=["relative/path"]), lambda r: r.update(dirs="/s"), lambda r: r.update(runs_since_full=-1),
    lambda r: r.update(last_full="2026-01-01T00:00:00"), lambda r: r.update(last_scan="partial"),
    lambda r: r.update(since=7),
])
def test_a_damaged_journal_file_is_ignored(tmp_path, change):
    store = JournalStore(tmp_path)
    store.write(Journal("Docs", since="S1", watching_since=NOW))
    record = json.loads(store.path("Docs").read_text())
    change(record)
    store.path("Docs").write_text(json.dumps(record))
    assert store.read("Docs") is None
    store.path("Docs").write_bytes(b"\xff not json")
    assert store.read("Docs") is None


@pytest.mark.parametrize("fstype, opts, reliable", [
    ("ext4", "rw", True), ("btrfs", "rw", True), ("apfs", "rw", True), ("NTFS", "rw,fixed", True),
    ("fuseblk", "rw", True),                   # exFAT / NTFS through FUSE: a local disk
    ("nfs4", "rw", False), ("cifs", "rw", False), ("smbfs", "rw", False), ("fuse.sshfs", "rw", False),
    ("fuse.fusefat", "rw", False), ("9p", "rw", False), ("NTFS", "rw,remote", False),
])
def test_which_file_systems_have_reliable_events(fstype, opts, reliable):
    assert fs_reliable(fstype, opts) is reliable


@pytest.mark.parametrize("first, last, now, expected", [
    (None, None, 100.0, None),                 # nothing changed
    (100.0, 100.0, 100.0, 30.0),               # a change: wait the quiet period
    (100.0, 120.0, 125.0, 25.0),               # another change restarts the wait
    (100.0, 100.0, 131.0, 0.0),                # quiet long enough: now
    (100.0, 395.0, 399.0, 1.0),                # changing all the time: at most 10 quiet periods after the first
    (100.0, 399.0, 401.0, 0.0),
])
def test_live_debounce(first, last, now, expected):
    assert live_wait(first, last, now, 30.0) == expected
