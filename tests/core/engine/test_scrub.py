"""Rolling verification in the engine (issue #14): slices over real sets, damage found, repairs."""

import os

import pytest

from core.agent.keys import Secret, make_unlocker
from core.engine.layout import SetLayout
from core.engine.mend import mend
from core.engine.progress import CancelToken
from core.engine.scrub import Cursor, scrub_slice, stored_bytes
from tests.support.engine import backup_path, open_set
from tests.support.trees import make_tree


def _flip(path):
    """Change one byte in the middle of a file, keeping its size (bit rot)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _whole_pass(bset, budget, cursor=None, cancel=None):
    """Slices until the pass ends: (labels read in order, slices, results)."""
    seen, results, cursor = [], [], cursor or Cursor()
    while True:
        r = scrub_slice(bset, cursor, budget, cancel=cancel,
                        progress=lambda p: p.phase == "scrub" and seen.append(p.current))
        results.append(r)
        assert r.cursor != cursor or r.finished, "a slice must move on"
        cursor = r.cursor
        if r.finished or r.stopped:
            return seen, results


@pytest.fixture
def plain_set(tmp_path):
    """Three snapshots: a file changed (its old version in objects/), one renamed (content kept once)."""
    src = make_tree(tmp_path / "Docs", {f"f{i:02}.bin": bytes([i]) * (3000 + i) for i in range(20)}
                    | {"a.txt": b"alpha" * 400, "sub/b.txt": b"bravo" * 300})
    set_path = tmp_path / "set"
    backup_path(set_path, [src], workers=1)
    (src / "sub/b.txt").write_bytes(b"BRAVO" * 300)
    backup_path(set_path, [src], workers=1)
    os.rename(src / "a.txt", src / "c.txt")
    backup_path(set_path, [src], workers=1)
    return set_path, src


def test_slices_read_every_stored_byte_once_in_a_stable_order(plain_set):
    set_path, _ = plain_set
    bset = open_set(set_path)
    layout = SetLayout(set_path)
    objects = [f"objects/{n[:2]}/{n}" for n in layout.iter_object_names()]
    latest = sorted(f"Latest/{p.relative_to(layout.latest).as_posix()}" for p in layout.latest.rglob("*")
                    if p.is_file())
    assert len(objects) == 2          # old b.txt, a.txt (renamed: its content left Latest/)
    total = stored_bytes(bset)
    seen, results = _whole_pass(bset, budget=10_000)
    assert seen == objects + sorted(latest, key=lambda s: s.split("/"))    # each once, objects first
    assert sum(r.bytes_read for r in results) == total
    assert len(results) >= 5 and all(not r.damaged for r in results)
    assert all(r.bytes_read < 10_000 + 3100 for r in results)     # a budget, overrun by one file at most
    assert results[-1].finished
    # A finished pass stays finished; a new pass starts from a fresh cursor.
    assert scrub_slice(bset, results[-1].cursor, 10).finished


def test_a_flipped_byte_in_latest_is_found_and_repaired_from_the_source(plain_set):
    set_path, src = plain_set
    layout = SetLayout(set_path)
    _flip(layout.latest / "Docs" / "f07.bin")
    bset = open_set(set_path)
    _, results = _whole_pass(bset, budget=None)
    (damage,) = [d for r in results for d in r.damaged]
    assert damage.where == "Latest/Docs/f07.bin" and "checksum" in damage.reason
    (m,) = mend(bset, [damage], [str(src)])
    assert m.repaired and "read back correctly" in m.note
    assert (layout.latest / "Docs" / "f07.bin").read_bytes() == (src / "f07.bin").read_bytes()
    _, again = _whole_pass(open_set(set_path), budget=None)
    assert not [d for r in again for d in r.damaged]


def test_a_flipped_object_is_repaired_from_a_source_file_with_the_same_content(plain_set):
    set_path, src = plain_set
    layout = SetLayout(set_path)
    import hashlib

    name = hashlib.sha256(b"alpha" * 400).hexdigest()     # a.txt, renamed to c.txt: kept in objects/
    _flip(layout.object(name))
    bset = open_set(set_path)
    _, results = _whole_pass(bset, budget=None)
    (damage,) = [d for r in results for d in r.damaged]
    assert damage.name == name and damage.where == f"objects/{name[:2]}/{name}"
    (m,) = mend(bset, [damage], [str(src)])
    assert m.repaired, m.note
    assert m.holders.paths == ["Docs/a.txt", "Docs/c.txt"] and len(m.holders.snapshots) == 3
    assert hashlib.sha256(layout.object(name).read_bytes()).hexdigest() == name


def test_damage_whose_source_changed_names_the_snapshots_it_affects(plain_set):
    set_path, src = plain_set
    layout = SetLayout(set_path)
    import hashlib

    old_b = hashlib.sha256(b"bravo" * 300).hexdigest()      # only the first snapshot has it
    _flip(layout.object(old_b))
    bset = open_set(set_path)
    first = bset.snapshot_ids()[0]
    _, results = _whole_pass(bset, budget=None)
    (m,) = mend(bset, [d for r in results for d in r.damaged], [str(src)])
    assert not m.repaired and "changed since" in m.note
    assert m.holders.snapshots == [first] and m.holders.paths == ["Docs/sub/b.txt"]
    # A header naming a folder this computer does not back up is never read from.
    (m,) = mend(bset, [d for r in results for d in r.damaged], [])
    assert not m.repaired and "not one of this computer's" in m.note


def test_a_cancelled_slice_resumes_where_it_stopped(plain_set):
    set_path, _ = plain_set
    bset = open_set(set_path)
    everything, _ = _whole_pass(bset, budget=None)

    class CancelAfter(CancelToken):
        def __init__(self, n):
            super().__init__()
            self.n = n

        @property
        def cancelled(self):
            self.n -= 1
            return self.n < 0

    first, results = _whole_pass(bset, budget=None, cancel=CancelAfter(8))
    assert results[-1].stopped and not results[-1].finished and 0 < len(first) < len(everything)
    rest, more = _whole_pass(bset, budget=None, cursor=results[-1].cursor)
    assert first + rest == everything and more[-1].finished


def test_an_unreadable_file_is_damage_only_once_the_caller_confirms_the_drive_is_still_there(plain_set):
    set_path, _ = plain_set
    (SetLayout(set_path).latest / "Docs" / "f05.bin").unlink()
    bset = open_set(set_path)
    asked = []
    going = scrub_slice(bset, Cursor("latest"), None, confirm=lambda: asked.append(1) or False)
    assert going.stopped and not going.damaged and going.cursor == Cursor("latest", "Docs/f04.bin") and asked
    here = scrub_slice(bset, going.cursor, None, confirm=lambda: True)
    assert [(d.where, d.reason) for d in here.damaged][:1] == [("Latest/Docs/f05.bin", "it is missing from the drive")]


def test_the_structure_check_stops_when_cancelled_and_starts_over(plain_set):
    set_path, _ = plain_set
    bset = open_set(set_path)
    cancel = CancelToken()
    cancel.cancel()
    r = scrub_slice(bset, Cursor("check"), None, cancel=cancel)
    assert r.stopped and r.cursor == Cursor("check") and not r.damaged
    assert scrub_slice(bset, Cursor("check"), None).finished


def test_encrypted_objects_are_authenticated_and_repaired(tmp_path):
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha" * 1000, "b.txt": b"bravo" * 1000})
    set_path = tmp_path / "set"
    backup_path(set_path, [src], passphrase="pw", workers=1)
    unlock = make_unlocker(Secret.passphrase("pw"))
    bset = open_set(set_path, unlock)
    layout = SetLayout(set_path)
    victim = layout.object(sorted(layout.iter_object_names())[1])
    _flip(victim)
    _, results = _whole_pass(bset, budget=1)
    (damage,) = [d for r in results for d in r.damaged]
    assert damage.name == victim.name and len(results) == 3     # two objects, then the structure check
    (m,) = mend(bset, [damage], [str(src)])
    assert m.repaired, m.note
    _, again = _whole_pass(open_set(set_path, unlock), budget=None)
    assert not [d for r in again for d in r.damaged]


@pytest.mark.parametrize("which", [0, -1])
def test_a_damaged_manifest_is_named_once_and_not_repairable(plain_set, which):
    set_path, src = plain_set
    bset = open_set(set_path)
    sid = bset.snapshot_ids()[which]
    manifest = SetLayout(set_path).manifest(sid)
    manifest.write_bytes(manifest.read_bytes()[:-20])
    _, results = _whole_pass(bset, budget=None)
    damaged = [d for r in results for d in r.damaged]
    assert [d.where for d in damaged if d.where.startswith("snapshots/")] == [f"snapshots/{sid}"]
    # (With the newest one damaged, Latest/ is compared with the one before, as verify does.)
    assert all(d.where.startswith("Latest/") for d in damaged[1:]) and (which == -1 or len(damaged) == 1)
    m = mend(bset, damaged[:1], [str(src)])[0]
    assert not m.repaired and "snapshot list" in m.note


@pytest.mark.parametrize("raw", [None, [], {"phase": "x", "key": ""}, {"phase": "objects"},
                                 {"phase": "latest", "key": 3}, {"phase": "latest", "key": "a" * 70000}])
def test_a_stored_cursor_is_checked(raw):
    with pytest.raises(ValueError):
        Cursor.from_dict(raw)
    assert Cursor.from_dict({"phase": "latest", "key": "Docs/a"}) == Cursor("latest", "Docs/a")
