"""Retention: which snapshots a policy keeps (table tests), forget + prune on real sets, make_room."""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime, timedelta, timezone

import pytest

from core.engine.layout import SetLayout
from core.engine.lock import SetLock
from core.engine.progress import FakeClock
from core.engine.repo import BackupSet
from core.engine.retention import RetentionPolicy, choose, make_room, snapshot_time
from core.errors import PlugbackError, SetLocked, UsageError
from tests.support.engine import backup_path, forget_path, open_set, restore_path, verify_path
from tests.support.trees import make_tree, read_tree

UTC = timezone.utc


@pytest.fixture
def local_tz():
    """Set the local time zone (buckets follow the user's calendar) and put it back afterwards."""
    with pytest.MonkeyPatch.context() as mp:

        def use(tz: str) -> None:
            mp.setenv("TZ", tz)
            time.tzset()

        use("UTC")
        yield use
    time.tzset()


def sid(t: datetime, n: int = 0) -> str:
    return t.strftime("%Y%m%dT%H%M%SZ") + f"-{n:04x}"


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_snapshot_time_reads_the_id():
    assert snapshot_time("20261122T013000Z-ab12") == at(2026, 11, 22, 1, 30)


def test_nothing_to_choose_from():
    assert choose([], RetentionPolicy(last=3), at(2026, 1, 1)) == ([], [])


# Twelve snapshots: three on each of four days (06:00, 12:00, 18:00), 2026-03-01 .. 03-04.
DAYS = [sid(at(2026, 3, d, h)) for d in range(1, 5) for h in (6, 12, 18)]
NOW = at(2026, 3, 4, 20)


def ids_at(*pairs) -> list[str]:
    """DAYS entries by (day, hour)."""
    return sorted(sid(at(2026, 3, d, h)) for d, h in pairs)


@pytest.mark.parametrize("policy,kept", [
    (RetentionPolicy(last=1), [(4, 18)]),
    (RetentionPolicy(last=4), [(3, 18), (4, 6), (4, 12), (4, 18)]),
    (RetentionPolicy(last=-1), [(d, h) for d in range(1, 5) for h in (6, 12, 18)]),
    (RetentionPolicy(last=50), [(d, h) for d in range(1, 5) for h in (6, 12, 18)]),
    (RetentionPolicy(daily=2), [(3, 18), (4, 18)]),
    (RetentionPolicy(daily=-1), [(1, 18), (2, 18), (3, 18), (4, 18)]),
    (RetentionPolicy(hourly=2), [(4, 12), (4, 18)]),
    (RetentionPolicy(within_hours=9), [(4, 12), (4, 18)]),       # 11:00 onwards
    (RetentionPolicy(within_hours=0), [(4, 18)]),                 # the newest always stays
    (RetentionPolicy(last=2, daily=3), [(2, 18), (3, 18), (4, 12), (4, 18)]),
    (RetentionPolicy(weekly=1), [(4, 18)]),                       # Sun 1 March is ISO week 9, 2-4 week 10
    (RetentionPolicy(weekly=2), [(1, 18), (4, 18)]),
    (RetentionPolicy(monthly=-1), [(4, 18)]),
    (RetentionPolicy(daily=0), [(4, 18)]),                         # 0 keeps nothing more than the newest
])
def test_choose_table(local_tz, policy, kept):
    keep, drop = choose(DAYS, policy, NOW)
    assert keep == ids_at(*kept)
    assert sorted(keep + drop) == DAYS and not set(keep) & set(drop)


def test_choose_does_not_depend_on_input_order(local_tz):
    shuffled = DAYS[5:] + DAYS[:5]
    assert choose(shuffled, RetentionPolicy(daily=2, last=2), NOW) == choose(DAYS, RetentionPolicy(daily=2, last=2), NOW)


def test_monthly_and_weekly_over_a_year(local_tz):
    ids = [sid(at(2026, 1, 1) + timedelta(days=d), d) for d in range(365)]
    keep, _ = choose(ids, RetentionPolicy(monthly=12), at(2027, 1, 1))
    assert keep == sorted(sid(last_of_month, (last_of_month - at(2026, 1, 1)).days)
                          for last_of_month in (at(2026, m + 1, 1) - timedelta(days=1) for m in range(1, 12)))\
        + [ids[-1]]
    keep, _ = choose(ids, RetentionPolicy(weekly=4), at(2027, 1, 1))
    # Newest of each of the last four ISO weeks: Sundays 20, 27 Dec, and Thu 31 Dec; the week of
    # 7-13 Dec ends on Sunday 13 Dec.
    assert [snapshot_time(i).date().isoformat() for i in keep] == ["2026-12-13", "2026-12-20", "2026-12-27",
                                                                 "2026-12-31"]


def test_days_follow_the_local_calendar(local_tz):
    # 03:00 UTC is still the previous evening five hours west of Greenwich.
    ids = [sid(at(2026, 3, 2, 1)), sid(at(2026, 3, 2, 3)), sid(at(2026, 3, 2, 6))]
    local_tz("UTC")
    assert choose(ids, RetentionPolicy(daily=-1), NOW)[0] == [ids[2]]
    local_tz("EST+5")
    assert choose(ids, RetentionPolicy(daily=-1), NOW)[0] == [ids[1], ids[2]]


def test_default_policy_is_like_time_machine(local_tz):
    start = at(2026, 1, 1)
    ids = [sid(start + timedelta(hours=6 * i), i) for i in range(4 * 120)]      # every 6 h for 120 days
    now = snapshot_time(ids[-1]) + timedelta(hours=1)
    keep, drop = choose(ids, RetentionPolicy.default(), now)
    times = {i: snapshot_time(i) for i in ids}
    recent = [i for i in ids if times[i] >= now - timedelta(hours=24)]
    assert len(recent) == 4 and set(recent) <= set(keep)
    older = [i for i in keep if i not in recent]
    days = {}
    for i in ids:
        days.setdefault(times[i].date(), []).append(i)
    newest_days = sorted(days)[-30:]
    # One per day (the day's last) for the 30 newest days ...
    for d in newest_days:
        assert [i for i in older if times[i].date() == d] in ([max(days[d])], [])
        assert max(days[d]) in keep
    # ... and beyond, only the newest of each ISO week, every week back to the first.
    weeks = {}
    for i in ids:
        weeks.setdefault(times[i].isocalendar()[:2], []).append(i)
    beyond = [i for i in older if times[i].date() < newest_days[0]]
    assert beyond == sorted(max(v) for w, v in weeks.items() if max(v) in beyond)
    assert {times[i].isocalendar()[:2] for i in beyond} | \
        {times[i].isocalendar()[:2] for i in keep if times[i].date() >= newest_days[0]} == set(weeks)
    assert len(keep) < 60 and ids[-1] in keep and ids[0] not in keep


@pytest.mark.parametrize("bad", [{"last": -2}, {"daily": "7"}, {"yearly": 1}, {"weekly": 1.5}])
def test_policy_from_dict_rejects_bad_values(bad):
    with pytest.raises(UsageError):
        RetentionPolicy.from_dict(bad)


def test_policy_round_trip():
    p = RetentionPolicy(last=3, weekly=-1)
    assert RetentionPolicy.from_dict(p.to_dict()) == p and p.to_dict() == {"last": 3, "weekly": -1}
    assert RetentionPolicy().is_empty() and not RetentionPolicy.default().is_empty()


# --- forget + prune on a real set -------------------------------------------------------------

def _objects(set_path) -> set[str]:
    return set(SetLayout(set_path).object_names())


def _three_snapshots(tmp_path, clock):
    """Three daily backups; returns (set, [ids], {content name: sha}) ."""
    import hashlib

    src = tmp_path / "Docs"
    set_path = tmp_path / "set"
    contents = {"A1": b"a version 1" * 1000, "A2": b"a version 2" * 1000, "A3": b"a version 3" * 1000,
                "S": b"shared in all" * 100, "G": b"only in the first snapshot" * 500}
    sha = {k: hashlib.sha256(v).hexdigest() for k, v in contents.items()}
    make_tree(src, {"a.txt": contents["A1"], "shared.txt": contents["S"], "gone.txt": contents["G"]})
    trees, ids = [], []
    for step in range(3):
        if step == 1:
            (src / "a.txt").write_bytes(contents["A2"])
            (src / "gone.txt").unlink()
        if step == 2:
            (src / "a.txt").write_bytes(contents["A3"])
            (src / "new.txt").write_bytes(contents["A1"])   # the first version comes back under a new name
        ids.append(backup_path(set_path, [src], clock=clock).snapshot_id)
        trees.append(read_tree(src))
        clock.advance(86400)
    return set_path, ids, sha, trees


def test_forget_and_prune_keep_what_is_still_needed(tmp_path, local_tz):
    clock = FakeClock(at(2026, 5, 1, 12))
    set_path, ids, sha, trees = _three_snapshots(tmp_path, clock)
    assert {sha["A1"], sha["A2"], sha["G"]} <= _objects(set_path)

    result = forget_path(set_path, RetentionPolicy(last=2), clock=clock)
    assert result.forgotten == [ids[0]] and result.kept == ids[1:]
    objs = _objects(set_path)
    assert sha["G"] not in objs                       # only the forgotten snapshot had it
    assert sha["A1"] in objs                          # snapshot 3's new.txt still names it
    assert result.objects_removed >= 1 and result.bytes_freed >= len(b"only in the first snapshot" * 500)
    assert BackupSet.open(set_path).snapshot_ids() == ids[1:]
    for i, snap in enumerate(ids[1:], start=1):
        out = tmp_path / f"out{i}"
        r = restore_path(set_path, out, snapshot=snap)
        assert r.damaged == [] and read_tree(out / "Docs") == trees[i]
    v = verify_path(set_path, read_all=True)
    assert v.ok and v.snapshots == 2, v.damaged

    result = forget_path(set_path, RetentionPolicy(last=1), clock=clock)
    assert result.forgotten == [ids[1]]
    assert sha["A2"] not in _objects(set_path)        # a.txt's second version: nobody names it now
    r = restore_path(set_path, tmp_path / "last", snapshot=ids[2])
    assert r.damaged == [] and read_tree(tmp_path / "last" / "Docs") == trees[2]
    assert verify_path(set_path, read_all=True).ok


def test_prune_keeps_content_that_only_lives_in_objects(tmp_path, local_tz):
    clock = FakeClock(at(2026, 5, 1, 12))
    set_path, ids, sha, trees = _three_snapshots(tmp_path, clock)
    # Forget the newest-but-one: the first stays, and its a.txt (A1) and gone.txt (G) live in objects/.
    keep, drop = [ids[0], ids[2]], [ids[1]]
    SetLayout(set_path).manifest(drop[0]).unlink()
    from core.engine.retention import prune_objects

    bset = BackupSet.open(set_path)
    removed, freed = prune_objects(bset)
    objs = _objects(set_path)
    assert {sha["A1"], sha["G"]} <= objs and sha["A2"] not in objs and removed == 1
    for i in (0, 2):
        r = restore_path(set_path, tmp_path / f"o{i}", snapshot=ids[i])
        assert r.damaged == [] and read_tree(tmp_path / f"o{i}" / "Docs") == trees[i]
    assert verify_path(set_path, read_all=True).ok
    assert keep == BackupSet.open(set_path).snapshot_ids()


def test_forget_dry_run_and_no_prune(tmp_path, local_tz):
    clock = FakeClock(at(2026, 5, 1, 12))
    set_path, ids, sha, _ = _three_snapshots(tmp_path, clock)
    before = _objects(set_path)
    result = forget_path(set_path, RetentionPolicy(last=1), dry_run=True, clock=clock)
    assert result.forgotten == ids[:2] and BackupSet.open(set_path).snapshot_ids() == ids
    assert _objects(set_path) == before
    result = forget_path(set_path, RetentionPolicy(last=1), prune=False, clock=clock)
    assert BackupSet.open(set_path).snapshot_ids() == ids[2:]
    assert _objects(set_path) == before and result.objects_removed == 0


def test_forget_needs_a_policy_and_the_lock(tmp_path, local_tz):
    clock = FakeClock(at(2026, 5, 1, 12))
    set_path, ids, _, _ = _three_snapshots(tmp_path, clock)
    with pytest.raises(UsageError, match="what to keep"):
        forget_path(set_path, RetentionPolicy(), clock=clock)
    with SetLock(SetLayout(set_path).lock, clock):
        with pytest.raises(SetLocked):
            forget_path(set_path, RetentionPolicy(last=1), clock=clock)
    assert BackupSet.open(set_path).snapshot_ids() == ids


def test_prune_refuses_when_a_snapshot_is_damaged(tmp_path, local_tz):
    clock = FakeClock(at(2026, 5, 1, 12))
    set_path, ids, sha, _ = _three_snapshots(tmp_path, clock)
    SetLayout(set_path).manifest(ids[1]).write_bytes(b"not gzip")
    before = _objects(set_path)
    with pytest.raises(PlugbackError, match="Cannot prune"):
        forget_path(set_path, RetentionPolicy(last=2), clock=clock)
    # Nothing was deleted: the damaged snapshot may still need any of it (A2 among it).
    assert sha["A2"] in _objects(set_path) and _objects(set_path) == before
    assert sha["G"] in before


# --- make_room on a real, small drive -------------------------------------------------------

def test_make_room_drops_oldest_first_never_the_newest(ext4_drive, tmp_path, local_tz):
    clock = FakeClock(at(2026, 5, 1, 12))
    src = tmp_path / "Docs"
    src.mkdir()
    set_path = ext4_drive.mount_point / "set"
    ids = []
    size = 20 << 20
    for _ in range(3):
        (src / "big.bin").write_bytes(os.urandom(size))   # each version displaces the last into objects/
        ids.append(backup_path(set_path, [src], clock=clock).snapshot_id)
        clock.advance(3600)
    free = shutil.disk_usage(set_path).free
    assert free < 100 << 20

    assert make_room(open_set(set_path), free, free // 2, clock=clock).forget == []   # already enough room
    plan = make_room(open_set(set_path), free, 10 << 40, clock=clock)      # can never fit: nothing goes
    assert plan.forget is None and 2 * size <= plan.most < 3 * size
    assert BackupSet.open(set_path).snapshot_ids() == ids
    plan = make_room(open_set(set_path), free, free + size // 2, clock=clock)
    assert plan.forget == [ids[0]]                                    # one old version freed enough
    assert shutil.disk_usage(set_path).free >= free + size // 2
    assert plan.frees >= size
    free = shutil.disk_usage(set_path).free
    plan = make_room(open_set(set_path), free, free + size // 2, clock=clock)
    assert plan.forget == [ids[1]]
    assert BackupSet.open(set_path).snapshot_ids() == [ids[2]]         # the newest always stays
    r = restore_path(set_path, tmp_path / "out")
    assert r.damaged == [] and read_tree(tmp_path / "out" / "Docs") == read_tree(src)
    assert verify_path(set_path, read_all=True).ok
