"""``verify`` reads an older manifest this computer wrote beside the newest's lines
(core/engine/verify_merge.py): the lines the newest holds get no row, and the report stays the
one of decoding (tests/core/engine/test_verify_proven.py compares them case by case)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import threading
from datetime import timedelta

import pytest

from core.engine import rawlines, verify, verify_latest, verify_merge
from core.engine.progress import FakeClock
from tests.core.engine.test_verify_same import _flip, _hostile_entry, _manifests, _truncate
from tests.support.engine import backup_path, open_set, verify_path
from tests.support.trees import make_tree

FILES = {f"d{d}/n{i}.txt": f"file {d} {i} ".encode() * (i + 1) for d in range(3) for i in range(4)}


@pytest.fixture
def day(tmp_path):
    """(set, cache): a full backup, then a day of changes: top.txt changed (v1 kept as an object),
    d0/n0.txt touched (same bytes, another time), new.txt added; every backup recorded."""
    cache = tmp_path / "cache"
    src = make_tree(tmp_path / "src" / "Data", {**FILES, "top.txt": b"top v1"})
    set_path = tmp_path / "set"
    clock = FakeClock()   # (snapshots a minute apart: in the order they were made)
    backup_path(set_path, [src], cache=cache, clock=clock)
    clock.current += timedelta(minutes=1)
    (src / "top.txt").write_bytes(b"top v2")
    (src / "d0" / "n0.txt").write_bytes((src / "d0" / "n0.txt").read_bytes())
    (src / "new.txt").write_bytes(b"new")
    backup_path(set_path, [src], cache=cache, clock=clock)
    return set_path, cache


def _rows(monkeypatch):
    """The rows each verify writes to its table (files, as ``_Contents.totals`` counts them)."""
    seen: list[int] = []
    totals = verify._Contents.totals

    def spy(self):
        seen.append(self.db.execute("SELECT count(*) FROM content").fetchone()[0])
        return totals(self)

    monkeypatch.setattr(verify._Contents, "totals", spy)
    return seen


@pytest.mark.parametrize("read_all", [False, True])
def test_the_older_rows_the_newest_holds_are_not_written(day, monkeypatch, read_all):
    set_path, cache = day
    rows = _rows(monkeypatch)
    with_record = verify_path(set_path, read_all=read_all, cache=cache)
    without = verify_path(set_path, read_all=read_all)
    assert with_record.ok and without.ok
    assert (with_record.contents, with_record.bytes_read) == (without.contents, without.bytes_read)
    # With the record: top.txt v1's object only (the older manifest's other files are the newest's).
    assert rows[0] == 1 < rows[1]


def _drop_entry(p, name: str) -> None:
    """The entry of the file ``name`` removed, the trailer recomputed: a valid manifest, not the recorded one."""
    lines = gzip.decompress(p.read_bytes()).split(b"\n")[:-2]
    lines = [line for line in lines if not line.endswith(b"}") or not json.loads(line).get("path", "").endswith(name)]
    body = b"".join(line + b"\n" for line in lines)
    trailer = {"type": "trailer", "entries": len(lines) - 1, "sha256": hashlib.sha256(body).hexdigest()}
    tmp = p.with_name("changing")
    tmp.write_bytes(gzip.compress(body + json.dumps(trailer, separators=(",", ":")).encode() + b"\n"))
    os.replace(tmp, p)   # (at once: the Latest/ checks may be reading the newest meanwhile)


@pytest.mark.parametrize("pool_from", [0, 10 ** 6])
@pytest.mark.parametrize("read_all", [False, True])
def test_a_newest_changed_after_the_older_was_read_beside_it_starts_over(day, monkeypatch, read_all, pool_from):
    """The drive changes the newest manifest (d1/n2.txt dropped, and its copy in Latest/) once the
    older was read beside it: the older's d1/n2.txt, skipped there, must be found missing."""
    set_path, cache = day
    monkeypatch.setattr(verify_latest, "POOL_FROM", pool_from)
    monkeypatch.setattr(verify_latest, "QUICK_POOL_FROM", pool_from)
    bset = open_set(set_path)
    older, newest = (bset.layout.manifest(sid) for sid in bset.snapshot_ids())
    merged, used = verify_merge.Merge.files, []

    def files_then_change(self, reader, *args):
        yield from merged(self, reader, *args)
        if not used:
            _drop_entry(newest, "d1/n2.txt")
            (set_path / "Latest" / "Data" / "d1" / "n2.txt").unlink()
        used.append(reader.name)

    monkeypatch.setattr(verify_merge.Merge, "files", files_then_change)
    r = verify_path(set_path, read_all=read_all, cache=cache)
    assert used == [f"snapshots/{older.name}"]   # (read beside the newest once; then decoded as usual)
    sid = older.name.split(".")[0]
    assert any("d1/n2.txt" in what and sid in what for what, _ in r.damaged), r.damaged
    # As verifying the drive as it is now finds, or more: the Latest/ checks in worker processes
    # (pool_from 0: started whatever the file count) read the newest's lines as they were then.
    again = verify_path(set_path, read_all=read_all).damaged
    if pool_from:
        assert r.damaged == again
    else:
        assert set(again) <= set(r.damaged), (r.damaged, again)


def _digested(monkeypatch) -> list[str]:
    """The snapshot ids whose manifest lines ``rawlines.lines_digest`` reads and hashes, in order."""
    digested, digest = [], rawlines.lines_digest

    def spy(bset, sid, *args):
        digested.append(sid)
        return digest(bset, sid, *args)

    monkeypatch.setattr(rawlines, "lines_digest", spy)
    return digested


@pytest.mark.parametrize("read_all", [False, True])
def test_the_newest_s_text_is_not_read_up_front_when_no_older_totals_are_its_own(day, monkeypatch, read_all):
    """No older snapshot has the newest's header totals (new.txt added): none can hold its lines, so
    ``same_as_newest`` does not read them; the merge still proves them (its rows as with the read)."""
    set_path, cache = day
    rows = _rows(monkeypatch)
    digested = _digested(monkeypatch)
    r = verify_path(set_path, read_all=read_all, cache=cache)
    assert r.ok and r.snapshots == 2
    assert open_set(set_path).snapshot_ids()[-1] not in digested
    assert rows[0] == 1   # (read beside the newest's lines: top.txt v1's object only)


@pytest.mark.parametrize("read_all", [False, True])
def test_a_newest_not_recorded_is_read_beside_one_older_manifest_at_most(day, tmp_path, monkeypatch, read_all):
    """The newest's bytes are valid but not the recorded ones (not read up front: no group): the first
    older manifest read beside it finds that out (Merge.broken); the next ones are not read beside it,
    and the report is the one without the record."""
    set_path, cache = day
    src = tmp_path / "src" / "Data"
    (src / "more.txt").write_bytes(b"more")
    backup_path(set_path, [src], cache=cache, clock=FakeClock(current=FakeClock().current + timedelta(minutes=5)))
    newest = open_set(set_path).layout.manifest(open_set(set_path).snapshot_ids()[-1])
    _drop_entry(newest, "d1/n2.txt")
    merged, used = verify_merge.Merge.files, []

    def spy(self, reader, *args):
        used.append(reader.name)
        yield from merged(self, reader, *args)

    monkeypatch.setattr(verify_merge.Merge, "files", spy)
    r = verify_path(set_path, read_all=read_all, cache=cache)
    assert len(used) == 1
    assert (r.damaged, r.contents, r.bytes_read, r.snapshots) == \
        (lambda w: (w.damaged, w.contents, w.bytes_read, w.snapshots))(verify_path(set_path, read_all=read_all))


@pytest.fixture
def week(tmp_path):
    """(set, cache): a full backup, a no-change backup, then a day of changes (bench/floor_verify.py's set):
    the no-change one repeats the full one's lines, and the full one is read beside the newest's."""
    cache = tmp_path / "cache"
    src = make_tree(tmp_path / "src" / "Data", {**FILES, "top.txt": b"top v1"})
    set_path = tmp_path / "set"
    clock = FakeClock()
    for change in (None, None, b"top v2"):
        if change:
            (src / "top.txt").write_bytes(change)
            (src / "new.txt").write_bytes(b"new")
        backup_path(set_path, [src], cache=cache, clock=clock)
        clock.current += timedelta(minutes=1)
    return set_path, cache


WEEK_DAMAGE = {
    "none": lambda s: None,
    "the no-change one truncated": lambda s: _truncate(_manifests(s)[1]),
    "a hostile entry in the no-change one": lambda s: _hostile_entry(_manifests(s)[1]),
    "a hostile entry in the full one": lambda s: _hostile_entry(_manifests(s)[0]),
    "the object of v1 flipped": lambda s: _flip(next(p for p in (s / "objects").rglob("*") if p.is_file())),
}


@pytest.mark.parametrize("case", WEEK_DAMAGE)
@pytest.mark.parametrize("read_all", [False, True])
def test_the_manifest_read_beside_the_newest_is_not_read_again_for_its_repeat(week, monkeypatch, read_all, case):
    """The full backup's lines are hashed while read beside the newest's: the no-change backup after it
    is compared with that digest (rawlines.Repeats), not with a second read; the report is the one of
    decoding every manifest."""
    set_path, cache = week
    WEEK_DAMAGE[case](set_path)
    ids = open_set(set_path).snapshot_ids()
    digested = _digested(monkeypatch)
    r = verify_path(set_path, read_all=read_all, cache=cache)
    if case == "none":
        assert r.ok and r.snapshots == 3 and digested == [ids[1]]
    assert ids[0] not in digested
    monkeypatch.setattr(verify_latest, "POOL_FROM", 10 ** 9)
    each = verify_path(set_path, read_all=read_all)   # (without the record: each manifest decoded)
    assert (r.damaged, r.contents, r.bytes_read, r.snapshots) == (each.damaged, each.contents, each.bytes_read,
                                                                  each.snapshots)


@pytest.mark.parametrize("pool_from", [0, 10 ** 6])
@pytest.mark.parametrize("read_all", [False, True])
def test_a_newest_changed_after_its_rows_were_gathered_starts_over(day, monkeypatch, read_all, pool_from):
    """The newest's rows come from the merge's read of it (verify._Contents.add_kept); the drive then
    changes it (d1/n2.txt dropped, and its copy in Latest/) before the Latest/ checks read it: they
    read other bytes than the ones proven, so verify starts over, each manifest read for itself, and
    the older's d1/n2.txt (skipped beside the newest) is found missing, as a verify of the drive as
    it is now finds it. (pool_from 0: the Latest/ checks in worker processes, their read held back
    until the rows were gathered.)"""
    set_path, cache = day
    monkeypatch.setattr(verify_latest, "POOL_FROM", pool_from)
    monkeypatch.setattr(verify_latest, "QUICK_POOL_FROM", pool_from)
    bset = open_set(set_path)
    older, newest = (bset.layout.manifest(sid) for sid in bset.snapshot_ids())
    kept, items, gathered, changed = verify._Contents.add_kept, rawlines.file_items, threading.Event(), []

    def change() -> None:
        if not changed:
            _drop_entry(newest, "d1/n2.txt")
            (set_path / "Latest" / "Data" / "d1" / "n2.txt").unlink()
            changed.append(1)

    def kept_then_change(self, *args):
        added = kept(self, *args)
        gathered.set()
        if pool_from:
            change()   # (the Latest/ checks read the newest after this, in this thread)
        return added

    def late_items(*args):
        if not changed:   # the first run's checks: the newest read once its rows were gathered
            assert gathered.wait(30)
            change()
        yield from items(*args)

    monkeypatch.setattr(verify._Contents, "add_kept", kept_then_change)
    monkeypatch.setattr(rawlines, "file_items", late_items)
    r = verify_path(set_path, read_all=read_all, cache=cache)
    assert changed and gathered.is_set()
    sid = older.name.split(".")[0]
    assert any("d1/n2.txt" in what and sid in what for what, _ in r.damaged), r.damaged
    assert r.damaged == verify_path(set_path, read_all=read_all).damaged


def _spy_newest_reads(monkeypatch) -> tuple[list[str], list[int]]:
    """(the manifests read for their own rows, proven or decoded, by name or id; how many rows of the
    newest each add_kept found gathered)."""
    own, held = [], []
    files, add, kept = rawlines.proven_files, verify._Contents.add_manifest, verify._Contents.add_kept

    def spy_files(reader, *args):
        own.append(reader.name.split("/")[-1].split(".")[0])
        yield from files(reader, *args)

    def spy_add(self, bset, sid, *args):
        own.append(sid)
        return add(self, bset, sid, *args)

    def spy_kept(self, *args):
        held.append(self.db.execute("SELECT count(*) FROM kept").fetchone()[0])
        return kept(self, *args)

    monkeypatch.setattr(rawlines, "proven_files", spy_files)
    monkeypatch.setattr(verify._Contents, "add_manifest", spy_add)
    monkeypatch.setattr(verify._Contents, "add_kept", spy_kept)
    return own, held


@pytest.mark.parametrize("read_all", [False, True])
def test_the_newest_is_not_read_again_for_its_rows(week, monkeypatch, read_all):
    """bench/floor_verify.py's set: the newest's rows and counts come from the merge's read of it beside
    the full backup's lines (verify._Contents.add_kept), not from a read of its own."""
    set_path, cache = week
    ids = open_set(set_path).snapshot_ids()
    own, held = _spy_newest_reads(monkeypatch)
    r = verify_path(set_path, read_all=read_all, cache=cache)
    assert r.ok and r.snapshots == 3
    assert ids[-1] not in own and held == [0]
    monkeypatch.setattr(verify_latest, "POOL_FROM", 10 ** 9)
    each = verify_path(set_path, read_all=read_all)
    assert (r.contents, r.bytes_read) == (each.contents, each.bytes_read)


@pytest.fixture
def revert(tmp_path):
    """(set, cache): top.txt v1, a no-change backup (rawlines.Repeats: counted, not decoded), then v2 (v1
    kept as an object), then v1 again, with two new files of v1's bytes: one among the older lines
    (d1/x.txt), one after the last of them (zzz.txt). The newest's top.txt, d1/x.txt and zzz.txt are
    of a content objects/ holds: rows of its own, each counted once."""
    cache = tmp_path / "cache"
    src = make_tree(tmp_path / "src" / "Data", {**FILES, "top.txt": b"top v1"})
    set_path = tmp_path / "set"
    clock = FakeClock()
    for step in range(4):
        if step == 2:
            (src / "top.txt").write_bytes(b"top v2")
        if step == 3:
            for name in ("top.txt", "d1/x.txt", "zzz.txt"):
                (src / name).write_bytes(b"top v1")
        backup_path(set_path, [src], cache=cache, clock=clock)
        clock.current += timedelta(minutes=1)
    return set_path, cache


REVERT_DAMAGE = {
    "none": lambda s: None,
    "v1's object flipped": lambda s: [_flip(p) for p in (s / "objects").rglob("*") if p.is_file()],
    "the newest's top.txt removed from Latest/": lambda s: (s / "Latest" / "Data" / "top.txt").unlink(),
    "a hostile entry in the newest": lambda s: _hostile_entry(_manifests(s)[-1]),
}


@pytest.mark.parametrize("keep_batch", [verify_merge.KEEP_BATCH, 1])
@pytest.mark.parametrize("case", REVERT_DAMAGE)
@pytest.mark.parametrize("read_all", [False, True])
def test_the_newest_s_rows_gathered_beside_report_as_decoding(revert, monkeypatch, read_all, case, keep_batch):
    """The newest's files of a content objects/ holds get their rows from the merge (once, with the
    newest's number: the report names the same snapshots, counted as often, as decoding each);
    ``keep_batch`` 1: handed on one at a time, as many of them in a row would be."""
    set_path, cache = revert
    monkeypatch.setattr(verify_merge, "KEEP_BATCH", keep_batch)
    REVERT_DAMAGE[case](set_path)
    ids = open_set(set_path).snapshot_ids()
    own, held = _spy_newest_reads(monkeypatch)
    r = verify_path(set_path, read_all=read_all, cache=cache)
    if case != "a hostile entry in the newest":
        assert ids[-1] not in own and held == [3]
    if case == "none":
        assert r.ok
    elif read_all or "flipped" not in case:
        assert r.damaged
    monkeypatch.setattr(verify_latest, "POOL_FROM", 10 ** 9)
    each = verify_path(set_path, read_all=read_all)
    assert (r.damaged, r.contents, r.bytes_read, r.snapshots) == (each.damaged, each.contents, each.bytes_read,
                                                                  each.snapshots)
