"""``verify`` counts an older snapshot whose entry lines are those of the manifest read just before
it (a no-change backup that is not of the newest's lines) as a holder of its contents instead of
decoding it (rawlines.Repeats), and reports exactly what decoding each manifest finds.

The set: v1; v2 (top.txt changed: v1 kept as an object, and copy.txt holds it too); two no-change
backups of v2; v3 (top.txt changed again: v2 kept as an object). The newest's lines are no one
else's, so rawlines.same_as_newest finds no group: only the repeats save the decoding.
"""

from __future__ import annotations

import pytest

from core.engine import verify
from core.engine.readpool import MISMATCH
from tests.core.engine.test_verify_same import (
    FILES,
    _decode_each,
    _flip,
    _grouped_and_each,
    _hostile_entry,
    _manifests,
    _report,
    _truncate,
    make_four,
)
from tests.support.engine import backup_path, open_set
from tests.support.trees import make_tree


@pytest.fixture
def repeats(tmp_path):
    """test_verify_same's four snapshots, then v3."""
    set_path = make_four(tmp_path)
    src = tmp_path / "src" / "Data"
    (src / "top.txt").write_bytes(b"top v3, longer")
    backup_path(set_path, [src])
    return set_path


def _object(set_path, content):
    (obj,) = [p for p in (set_path / "objects").rglob("*") if p.is_file() and p.read_bytes() == content]
    return obj


DAMAGE = {
    "none": lambda s: None,
    "the object of v1 flipped": lambda s: _flip(_object(s, b"top v1")),
    "the object of v2 flipped": lambda s: _flip(_object(s, b"top v2")),
    "Latest/ file flipped": lambda s: _flip(s / "Latest" / "Data" / "d1" / "n2.txt"),
    "the repeated manifest truncated": lambda s: _truncate(_manifests(s)[1]),
    "a repeat truncated": lambda s: _truncate(_manifests(s)[2]),
    "the last repeat truncated": lambda s: _truncate(_manifests(s)[3]),
    "a hostile entry in a repeat": lambda s: _hostile_entry(_manifests(s)[2]),
    "a hostile entry in the repeated and its repeats": lambda s: [_hostile_entry(p) for p in _manifests(s)[1:4]],
    "the first manifest truncated": lambda s: _truncate(_manifests(s)[0]),
}


@pytest.mark.parametrize("read_all", [False, True])
@pytest.mark.parametrize("case", DAMAGE)
def test_the_report_is_the_one_of_decoding_every_manifest(repeats, monkeypatch, case, read_all):
    DAMAGE[case](repeats)
    grouped, decoded, each, decoded_each = _grouped_and_each(repeats, monkeypatch, read_all)
    ids = open_set(repeats).snapshot_ids()
    if case == "none":   # v1, v2 and v3 decoded; the two no-change backups of v2 counted
        assert decoded == [ids[0], ids[1], ids[4]] and grouped[0] == [] and grouped[3] == 5
    assert len(decoded_each) == 5   # (a damaged one too: decoding it finds the damage)
    assert grouped == each
    if case != "none" and (read_all or "flipped" not in case):   # (a quick verify checks sizes)
        assert grouped[0]


def test_a_damaged_object_is_named_with_every_holder(repeats):
    """v1 is held by the first snapshot (top.txt) and by the four others (copy.txt), two of them
    repeats that were never decoded: named once, with how many more hold it."""
    _flip(_object(repeats, b"top v1"))
    damaged = dict(_report(repeats, read_all=True)[0])
    ids = open_set(repeats).snapshot_ids()
    assert damaged[f"Data/top.txt ({ids[0]}) and 4 more"].startswith("its content does not match")


def test_a_repeat_after_a_damaged_manifest_is_compared_with_the_last_intact_one(repeats, monkeypatch):
    """v2's manifest damaged: its first repeat is decoded (its lines are not those of v1, the last
    one read intact), the second counted as the first's repeat."""
    _truncate(_manifests(repeats)[1])
    decoded = []
    add = verify._Contents.add_manifest
    monkeypatch.setattr(verify._Contents, "add_manifest",
                        lambda self, bset, sid, *a: decoded.append(sid) or add(self, bset, sid, *a))
    r = _report(repeats, read_all=True)
    ids = open_set(repeats).snapshot_ids()
    assert [p for p, _ in r[0]] == [f"snapshots/{ids[1]}"] and r[3] == 4
    assert ids[1] in decoded and ids[2] in decoded and ids[3] not in decoded


@pytest.mark.parametrize("newest", ["changed", "no change"])
def test_a_content_held_twice_in_a_manifest_is_counted_twice_in_each_copy(tmp_path, newest):
    """Two files with one content (a.txt, b.txt), backed up three times, then both changed (their
    old content kept as one object): the object's holders are the six files, as decoding every
    manifest counts them, whether the copies are repeats or (newest: "no change") the newest's group."""
    src = make_tree(tmp_path / "src" / "Data", {**FILES, "a.txt": b"same", "b.txt": b"same"})
    set_path = tmp_path / "set"
    for _ in range(3):
        backup_path(set_path, [src])
    (src / "a.txt").write_bytes(b"a new")
    (src / "b.txt").write_bytes(b"b new")
    backup_path(set_path, [src])
    if newest == "no change":
        backup_path(set_path, [src])
    _flip(_object(set_path, b"same"))
    ids = open_set(set_path).snapshot_ids()
    damaged = dict(_report(set_path, read_all=True)[0])
    assert damaged == {f"Data/a.txt ({ids[0]}) and 5 more": MISMATCH}


def test_an_encrypted_set_s_repeats_are_counted_too(tmp_path, monkeypatch):
    """Encrypted: every content is an object (no Latest/); the repeats of v2 are counted, and a
    damaged object is named as decoding each manifest names it."""
    from core.agent.keys import Secret, make_unlocker

    src = make_tree(tmp_path / "src" / "Data", {**FILES, "top.txt": b"top v1"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src], passphrase="correct horse")
    unlock = make_unlocker(Secret.passphrase("correct horse"))
    (src / "top.txt").write_bytes(b"top v2")
    for _ in range(3):
        backup_path(set_path, [src], unlock=unlock)
    (src / "top.txt").write_bytes(b"top v3, longer")
    backup_path(set_path, [src], unlock=unlock)
    _flip(max((p for p in (set_path / "objects").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size))
    decoded = []
    add = verify._Contents.add_manifest
    monkeypatch.setattr(verify._Contents, "add_manifest",
                        lambda self, bset, sid, *a: decoded.append(sid) or add(self, bset, sid, *a))
    grouped = _report(set_path, read_all=True, unlock=unlock)
    assert len(decoded) == 3 and len(grouped[0]) == 1 and grouped[3] == 5
    _decode_each(monkeypatch)
    assert grouped == _report(set_path, read_all=True, unlock=unlock)
