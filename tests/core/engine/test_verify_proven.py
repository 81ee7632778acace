"""``verify`` reads a manifest (the newest's, or an older one) without decoding its entries when this
computer recorded writing it (core/engine/trust.py) and the drive holds those very bytes
(``rawlines.proven_files``); any other manifest, or one whose bytes differ, is decoded as before.

Each case damages a real set backed up with a record, then verifies it with the record and
without it; the two reports must be equal, and the record must have been used (or refused).
"""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from core.engine import rawlines, verify, verify_latest, verify_merge
from core.engine.trust import TrustRecord
from tests.support.engine import backup_path, open_set, verify_path
from tests.support.trees import make_tree

FILES = {f"d{d}/n{i}.txt": f"file {d} {i} ".encode() * (i + 1) for d in range(3) for i in range(4)}


@pytest.fixture(params=["a group", "changes only"])
def recorded(request, tmp_path):
    """(set, cache): top.txt changed (v1 kept as an object), then, for "a group", a no-change
    backup; every backup recorded in ``cache``."""
    cache = tmp_path / "cache"
    src = make_tree(tmp_path / "src" / "Data", {**FILES, "top.txt": b"top v1"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src], cache=cache)
    (src / "top.txt").write_bytes(b"top v2")
    (src / "new.txt").write_bytes(b"new")
    backup_path(set_path, [src], cache=cache)
    if request.param == "a group":
        backup_path(set_path, [src], cache=cache)
    return set_path, cache


def _manifests(set_path):
    return sorted((set_path / "snapshots").glob("*.json.gz"))


def _flip(p):
    data = bytearray(p.read_bytes())
    data[0] ^= 1
    p.write_bytes(bytes(data))


def _rewrite(p, change):
    """A file's entry changed and the trailer recomputed: valid bytes, but not the recorded ones."""
    lines = gzip.decompress(p.read_bytes()).split(b"\n")[:-2]
    at = next(i for i, line in enumerate(lines) if b'"type":"f"' in line)
    entry = json.loads(lines[at])
    entry.update(change)
    lines[at] = json.dumps(entry, separators=(",", ":")).encode()
    body = b"".join(line + b"\n" for line in lines)
    trailer = {"type": "trailer", "entries": len(lines) - 1, "sha256": hashlib.sha256(body).hexdigest()}
    p.write_bytes(gzip.compress(body + json.dumps(trailer, separators=(",", ":")).encode() + b"\n"))


DAMAGE = {
    "none": lambda s: None,
    "the object flipped": lambda s: [_flip(p) for p in (s / "objects").rglob("*") if p.is_file()],
    "a Latest/ file flipped": lambda s: _flip(s / "Latest" / "Data" / "d1" / "n2.txt"),
    "a Latest/ file removed": lambda s: (s / "Latest" / "Data" / "d2" / "n1.txt").unlink(),
    "the newest manifest truncated": lambda s: _manifests(s)[-1].write_bytes(_manifests(s)[-1].read_bytes()[:-9]),
    "a hostile entry in every manifest": lambda s: [_rewrite(p, {"size": -1}) for p in _manifests(s)],
    "a path outside the set in the newest": lambda s: _rewrite(_manifests(s)[-1], {"path": "../../x"}),
    "a size changed in the newest (valid, not recorded)": lambda s: _rewrite(_manifests(s)[-1], {"size": 3}),
    "a path outside the set in the oldest": lambda s: _rewrite(_manifests(s)[0], {"path": "../../x"}),
    "the oldest manifest truncated": lambda s: _manifests(s)[0].write_bytes(_manifests(s)[0].read_bytes()[:-9]),
}
# How many manifests are read proven (not decoded), with the fixture's two snapshots ("changes only")
# and three ("a group"): every manifest recorded and intact that is read for the table (of a group,
# its first only).
PROVEN = {"none": 2, "the object flipped": 2, "a Latest/ file flipped": 2, "a Latest/ file removed": 2,
          "the newest manifest truncated": (1, 2), "a hostile entry in every manifest": 0,
          "a path outside the set in the newest": (1, 2), "a size changed in the newest (valid, not recorded)": (1, 2),
          "a path outside the set in the oldest": 1, "the oldest manifest truncated": 1}


def _report(set_path, **options):
    r = verify_path(set_path, **options)
    return r.damaged, r.contents, r.bytes_read, r.snapshots, r.notices


@pytest.mark.parametrize("read_all", [False, True])
@pytest.mark.parametrize("case", DAMAGE)
def test_the_report_is_the_one_of_decoding(recorded, monkeypatch, case, read_all):
    set_path, cache = recorded
    monkeypatch.setattr(verify_latest, "POOL_FROM", 0)
    DAMAGE[case](set_path)
    proven, decoded = [], []
    files, add = rawlines.proven_files, verify._Contents.add_manifest

    def spy_files(reader, *args):
        yield from files(reader, *args)
        proven.append(reader.name)   # (read to its end, and proven)

    def spy_add(self, bset, sid, *args):
        decoded.append(sid)
        return add(self, bset, sid, *args)

    merged = verify_merge.Merge.files

    def spy_merged(self, reader, *args):
        yield from merged(self, reader, *args)
        proven.append(reader.name)   # (an older one read beside the newest's lines, and proven)

    kept = verify._Contents.add_kept

    def spy_kept(self, sid, *args):
        proven.append(sid)   # (the newest's rows gathered while an older one was read beside it)
        return kept(self, sid, *args)

    monkeypatch.setattr(rawlines, "proven_files", spy_files)
    monkeypatch.setattr(verify_merge.Merge, "files", spy_merged)
    monkeypatch.setattr(verify._Contents, "add_manifest", spy_add)
    monkeypatch.setattr(verify._Contents, "add_kept", spy_kept)
    with_record = _report(set_path, read_all=read_all, cache=cache)
    expected = PROVEN[case] if isinstance(PROVEN[case], int) else PROVEN[case][len(_manifests(set_path)) - 2]
    assert len(proven) == expected
    decoded_with, decoded[:] = len(decoded), []
    assert with_record == _report(set_path, read_all=read_all)
    assert decoded_with == len(decoded) - expected   # (the proven ones' lines not decoded)
    if case != "none" and (read_all or "flipped" not in case):   # (a quick verify checks sizes)
        assert with_record[0]


def test_no_record_or_another_set_s_is_not_used(recorded, tmp_path, monkeypatch):
    set_path, cache = recorded
    used = []
    monkeypatch.setattr(rawlines, "proven_files", lambda *a: used.append(a) or iter(()))
    assert verify_path(set_path, read_all=True, cache=tmp_path / "empty").ok
    record = TrustRecord(cache, open_set(set_path).set_id)
    record.path.rename(record.path.with_name("00000000-0000-4000-8000-000000000000.json"))
    assert verify_path(set_path, read_all=True, cache=cache).ok
    assert not used


def test_encrypted_sets_decode_as_before(tmp_path, monkeypatch):
    src = make_tree(tmp_path / "src" / "Data", FILES)
    backup_path(tmp_path / "set", [src], passphrase="correct horse", cache=tmp_path / "cache")
    used = []
    monkeypatch.setattr(rawlines, "proven_files", lambda *a: used.append(a) or iter(()))
    from core.agent.keys import Secret, make_unlocker

    unlock = make_unlocker(Secret.passphrase("correct horse"))
    r = verify_path(tmp_path / "set", unlock=unlock, read_all=True, cache=tmp_path / "cache")
    assert r.ok and r.contents == len(FILES) and not used


@pytest.mark.parametrize("case", ["none", "the first rewritten", "the newest rewritten"])
def test_a_group_older_than_the_record_is_proven_through_the_newest(tmp_path, monkeypatch, case):
    """The record keeps the newest snapshots only: the first of the newest's group (the one read for
    the table) is proven by its lines' hash, equal to those of the newest, which is recorded."""
    from core.engine import trust

    monkeypatch.setattr(trust, "KEEP", 1)
    cache = tmp_path / "cache"
    src = make_tree(tmp_path / "src" / "Data", FILES)
    for _ in range(3):
        backup_path(tmp_path / "set", [src], cache=cache)
    bset = open_set(tmp_path / "set")
    ids = bset.snapshot_ids()
    record = TrustRecord(cache, bset.set_id)
    assert record.hash_of(ids[0]) is None and record.hash_of(ids[-1]) is not None
    if case != "none":
        _rewrite(_manifests(tmp_path / "set")[0 if "first" in case else -1], {"size": 5})
    proven = []
    files = rawlines.proven_files

    def spy(reader, *args):
        yield from files(reader, *args)
        proven.append(reader.name)

    monkeypatch.setattr(rawlines, "proven_files", spy)
    with_record = _report(tmp_path / "set", read_all=True, cache=cache)
    assert len(proven) == (case != "the newest rewritten")   # (the first rewritten: the group is the 2 others)
    assert with_record == _report(tmp_path / "set", read_all=True)
    assert bool(with_record[0]) == (case != "none")   # (Latest/ holds another size; test_verify_sizes.py)
