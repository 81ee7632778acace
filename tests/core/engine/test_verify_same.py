"""``verify`` decodes once the manifests whose entry lines equal the newest's (no-change backups;
core/engine/rawlines.py) and reports exactly what decoding each of them finds.

Each case damages a real set of four snapshots (the last three with the same entries),
then verifies it twice: as verify does, and with every manifest decoded (the grouping
switched off); the two reports must be equal.
"""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from core.agent.keys import Secret, make_unlocker
from core.engine import rawlines, verify, verify_latest
from core.engine.manifest import FILE
from core.errors import PlugbackError
from tests.support.engine import backup_path, open_set, verify_path
from tests.support.trees import make_tree

FILES = {f"d{d}/n{i}.txt": f"file {d} {i} ".encode() * (i + 1) for d in range(3) for i in range(4)}


@pytest.fixture
def four(tmp_path):
    return make_four(tmp_path)


def make_four(tmp_path):
    """Snapshots: top.txt v1; v2 (v1 kept as an object, and now copy.txt's content too); two
    no-change backups."""
    src = make_tree(tmp_path / "src" / "Data", {**FILES, "top.txt": b"top v1"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    (src / "top.txt").write_bytes(b"top v2")
    (src / "copy.txt").write_bytes(b"top v1")
    for _ in range(3):
        backup_path(set_path, [src])
    return set_path


def _manifests(set_path):
    return sorted((set_path / "snapshots").glob("*.json.gz"))


def _object(set_path):
    (obj,) = [p for p in (set_path / "objects").rglob("*") if p.is_file()]
    return obj


def _flip(p):
    data = bytearray(p.read_bytes())
    data[1] ^= 1
    p.write_bytes(bytes(data))


def _truncate(p):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 9])


def _hostile_entry(p, **change):
    """A file's entry changed (its size made negative), the trailer recomputed: only decoding
    the entry finds it."""
    lines = gzip.decompress(p.read_bytes()).split(b"\n")[:-2]   # (without the trailer and the end)
    at = next(i for i, line in enumerate(lines) if b'"type":"f"' in line)
    entry = json.loads(lines[at])
    entry.update(change or {"size": -1})
    lines[at] = json.dumps(entry, separators=(",", ":")).encode()
    body = b"".join(line + b"\n" for line in lines)
    trailer = {"type": "trailer", "entries": len(lines) - 1, "sha256": hashlib.sha256(body).hexdigest()}
    p.write_bytes(gzip.compress(body + json.dumps(trailer, separators=(",", ":")).encode() + b"\n"))


DAMAGE = {
    "none": lambda s: None,
    "object flipped": lambda s: _flip(_object(s)),
    "object truncated": lambda s: _object(s).write_bytes(b"top"),
    "Latest/ file flipped": lambda s: _flip(s / "Latest" / "Data" / "d1" / "n2.txt"),
    "a middle manifest truncated": lambda s: _truncate(_manifests(s)[2]),
    "the newest manifest truncated": lambda s: _truncate(_manifests(s)[-1]),
    "the first manifest truncated": lambda s: _truncate(_manifests(s)[0]),
    "a hostile entry in every copy": lambda s: [_hostile_entry(p) for p in _manifests(s)[1:]],
    "a hostile entry in the newest": lambda s: _hostile_entry(_manifests(s)[-1]),
}


def _decode_each(monkeypatch):
    """No grouping: every manifest decoded (neither the newest's group nor repeats of the last one)."""
    monkeypatch.setattr(rawlines, "same_as_newest", lambda *a: set())
    monkeypatch.setattr(rawlines.Repeats, "same_as_last", lambda *a: None)


def _report(set_path, **options):
    r = verify_path(set_path, **options)
    return r.damaged, r.contents, r.bytes_read, r.snapshots, r.notices


def _grouped_and_each(set_path, monkeypatch, read_all):
    """verify's report as it runs and with every manifest decoded, each with the snapshots whose
    manifests it decoded (in order)."""
    decoded: list[str] = []
    add = verify._Contents.add_manifest

    def spy(self, bset, sid, *args):
        decoded.append(sid)
        return add(self, bset, sid, *args)

    monkeypatch.setattr(verify._Contents, "add_manifest", spy)
    grouped = _report(set_path, read_all=read_all)
    first = list(decoded)
    decoded.clear()
    _decode_each(monkeypatch)
    each = _report(set_path, read_all=read_all)
    return grouped, first, each, decoded


@pytest.mark.parametrize("read_all", [False, True])
@pytest.mark.parametrize("case", DAMAGE)
def test_the_report_is_the_one_of_decoding_every_manifest(four, monkeypatch, case, read_all):
    DAMAGE[case](four)
    grouped, decoded, each, decoded_each = _grouped_and_each(four, monkeypatch, read_all)
    if case == "none":
        assert len(decoded) == 2 and grouped[0] == [] and grouped[3] == 4   # the first, and one of the three
    assert len(decoded_each) == 4
    assert grouped == each
    if case != "none" and (read_all or "flipped" not in case):   # (a quick verify checks sizes)
        assert grouped[0]


def test_the_group_is_the_snapshots_with_the_newest_entries(four):
    bset = open_set(four)
    ids = bset.snapshot_ids()
    assert rawlines.same_as_newest(bset, ids) == {1, 2, 3}
    assert rawlines.same_as_newest(bset, ids[:2]) == set()   # the newest's lines are no other's
    _truncate(_manifests(four)[2])
    assert rawlines.same_as_newest(bset, ids) == {1, 3}
    _hostile_entry(_manifests(four)[1])
    assert rawlines.same_as_newest(bset, ids) == {3} - {3}   # alone: no group


def test_a_damaged_holder_is_named_with_every_other(four):
    """The object (top.txt v1) is held by the first snapshot (top.txt) and by the three others
    (copy.txt): it is named once, with how many more hold it."""
    _flip(four / "Latest" / "Data" / "d0" / "n0.txt")
    _flip(_object(four))
    damaged = dict(verify_path(four, read_all=True).damaged)
    ids = open_set(four).snapshot_ids()
    assert damaged[f"Data/top.txt ({ids[0]}) and 3 more"].startswith("its content does not match")
    assert damaged["Latest/Data/d0/n0.txt"].startswith("its content does not match")


def test_the_latest_checks_read_the_files_of_the_lines(four):
    bset = open_set(four)
    sid = bset.newest_id()
    with bset.open_manifest(sid) as reader:
        decoded = [(e.mirror_path, e.parts, e.size, e.sha256) for e in reader if e.type == FILE]
    assert list(rawlines.file_items(bset, sid)) == decoded and len(decoded) == 14


@pytest.mark.parametrize("change", [{"path": "../../outside"}, {"mirror": "../x"}, {"parts": 10 ** 9},
                                    {"size": "12"}, {"sha256": 7}, {"type": "f", "path": 3}])
def test_hostile_lines_of_the_newest_are_reported_as_decoding_finds_them(four, monkeypatch, change):
    """The workers start on the newest snapshot's lines before it is decoded: what they find is
    dropped, and Latest/ checked against the newest intact snapshot, as in threads."""
    _hostile_entry(_manifests(four)[-1], **change)
    bset = open_set(four)
    with pytest.raises(PlugbackError):
        list(rawlines.file_items(bset, bset.newest_id()))
    monkeypatch.setattr(verify_latest, "POOL_FROM", 0)
    pooled = _report(four, read_all=True)
    monkeypatch.setattr(verify_latest, "POOL_FROM", 10 ** 9)
    assert pooled == _report(four, read_all=True)
    (newest, _), = pooled[0]
    assert newest == f"snapshots/{bset.newest_id()}" and pooled[3] == 3


@pytest.mark.parametrize("kind", ["format 1", "encrypted"])
def test_format_1_and_encrypted_sets_are_grouped_too(tmp_path, monkeypatch, kind):
    src = make_tree(tmp_path / "src" / "Data", FILES)
    set_path = tmp_path / "set"
    secret = {"passphrase": "correct horse"} if kind == "encrypted" else {}
    unlock = {"unlock": make_unlocker(Secret.passphrase("correct horse"))} if secret else {}
    backup_path(set_path, [src], **secret)
    if kind == "format 1":
        bset = open_set(set_path)
        bset.meta["version"] = 1
        bset.write_meta()
    for _ in range(2):
        backup_path(set_path, [src], **unlock)
    bset = open_set(set_path, **unlock)
    assert rawlines.same_as_newest(bset, bset.snapshot_ids()) == {0, 1, 2}
    _flip(max((set_path / ("objects" if secret else "Latest")).rglob("n3.txt" if not secret else "*"),
              key=lambda p: (p.is_file(), p.stat().st_size)))
    grouped = _report(set_path, read_all=True, **unlock)
    _decode_each(monkeypatch)
    assert grouped == _report(set_path, read_all=True, **unlock)
    assert len(grouped[0]) == 1 and grouped[3] == 3


@pytest.mark.parametrize("pool_from", [0, 10 ** 9])
def test_progress_ends_at_its_totals(four, monkeypatch, pool_from):
    """Contents counted without a check (the newest's, not in objects/) are counted as done."""
    monkeypatch.setattr(verify_latest, "POOL_FROM", pool_from)
    seen = []
    verify.verify(open_set(four), verify.VerifyOptions(read_all=True, progress=seen.append))
    last = seen[-1]
    assert (last.files_done, last.bytes_done) == (last.files_total, last.bytes_total) and last.files_total > 14
    assert all(a.files_done <= b.files_done for a, b in zip(seen, seen[1:], strict=False))


def test_progress_ends_at_its_totals_when_the_latest_checks_end_first(four, monkeypatch):
    """The Latest/ checks done before the objects' checks are: their files still reach the progress."""
    monkeypatch.setattr(verify_latest, "POOL_FROM", 0)
    finish = verify_latest.Early.finish

    def late(self, *args):
        self._thread.join()
        return finish(self, *args)

    monkeypatch.setattr(verify_latest.Early, "finish", late)
    seen = []
    verify.verify(open_set(four), verify.VerifyOptions(read_all=True, progress=seen.append))
    assert (seen[-1].files_done, seen[-1].bytes_done) == (seen[-1].files_total, seen[-1].bytes_total)


def test_a_content_held_twice_in_the_group_is_counted_twice_in_each_member(tmp_path):
    """top.txt's old content is kept as an object and held twice (a.txt, b.txt) by the newest's group
    of two: its holders are five files, as decoding every manifest counts them (main said 3 more)."""
    src = make_tree(tmp_path / "src" / "Data", {**FILES, "top.txt": b"top v1"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    (src / "top.txt").write_bytes(b"top v2")
    (src / "a.txt").write_bytes(b"top v1")
    (src / "b.txt").write_bytes(b"top v1")
    for _ in range(2):
        backup_path(set_path, [src])
    bset = open_set(set_path)
    ids = bset.snapshot_ids()
    assert rawlines.same_as_newest(bset, ids) == {1, 2}
    _flip(_object(set_path))
    damaged = dict(verify_path(set_path, read_all=True).damaged)
    assert list(damaged) == [f"Data/top.txt ({ids[0]}) and 4 more"]
