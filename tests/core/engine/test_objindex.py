"""Issue #11: restore and verify skip asking objects/ by name where its listing says no; what they
report for a missing, damaged or objects/-held file is what it was when every name was asked."""

from __future__ import annotations

import os

import pytest

from core.engine import objindex
from core.engine.objindex import ObjectIndex
from tests.support.engine import backup_path, open_set, restore_path, verify_path
from tests.support.trees import make_tree

A, B = "ab" + "1" * 62, "ab" + "2" * 62


def test_the_index_answers_no_only_for_names_absent_from_a_listed_folder(tmp_path, monkeypatch):
    objects = tmp_path / "objects"
    (objects / "ab").mkdir(parents=True)
    (objects / "ab" / f"{A}.001").write_bytes(b"part")      # a split object's part
    (objects / "ab" / f"{B}.chunks").write_bytes(b"list")   # a chunk list
    index = ObjectIndex(objects)
    assert index.may_hold(A) and index.may_hold(B)
    assert not index.may_hold("ab" + "3" * 62)
    assert not index.may_hold("cd" + "3" * 62)              # no such folder
    monkeypatch.setattr(objindex, "REMEMBERED", 1)          # a folder too full to remember
    assert ObjectIndex(objects).may_hold("ab" + "3" * 62)


def test_an_unreadable_folder_means_ask_by_name(tmp_path):
    objects = tmp_path / "objects"
    objects.mkdir()
    (objects / "ab").write_bytes(b"a file where a folder belongs")
    assert ObjectIndex(objects).may_hold(A)


def _set(tmp_path):
    src = make_tree(tmp_path / "src" / "Docs", {f"f{i}.txt": f"content {i}".encode() for i in range(40)})
    backup_path(tmp_path / "set", [src], verify=False)
    return src, tmp_path / "set"


def test_a_file_missing_from_latest_is_reported_missing(tmp_path):
    src, set_path = _set(tmp_path)
    os.unlink(set_path / "Latest" / "Docs" / "f7.txt")
    r = restore_path(set_path, tmp_path / "out")
    assert r.damaged == [("Docs/f7.txt", "its content is missing from the drive; not restored")]
    assert r.files_restored == 39
    v = verify_path(set_path, read_all=True)
    assert [reason for what, reason in v.damaged] == ["its content is missing from the drive"]
    assert "f7.txt" in v.damaged[0][0]


@pytest.mark.parametrize("how", ["symlink", "fifo", "changed"])
def test_a_hostile_or_damaged_latest_file_is_refused_as_before(tmp_path, how):
    src, set_path = _set(tmp_path)
    victim = set_path / "Latest" / "Docs" / "f3.txt"
    victim.unlink()
    if how == "symlink":
        os.symlink(src / "f3.txt", victim)
    elif how == "fifo":
        os.mkfifo(victim)
    else:
        victim.write_bytes(b"content X")   # same size, other bytes
    r = restore_path(set_path, tmp_path / "out")
    assert [p for p, _ in r.damaged] == ["Docs/f3.txt"]
    assert not (tmp_path / "out" / "Docs" / "f3.txt").exists()
    v = verify_path(set_path, read_all=True)
    assert len(v.damaged) == 1 and "f3.txt" in v.damaged[0][0]


def test_content_in_objects_is_still_found(tmp_path):
    """The newest snapshot's file gone from Latest/ but its content kept in objects/ (an old version
    with the same bytes): the listing says yes, so it is restored from there."""
    src, set_path = _set(tmp_path)
    (src / "f5.txt").write_bytes(b"other")
    backup_path(set_path, [src], verify=False)                # content 5 moves to objects/
    (src / "f5.txt").write_bytes(b"content 5")
    os.utime(src / "f5.txt", ns=(1, 1))
    backup_path(set_path, [src], verify=False)                # and back: newest names it again
    bset = open_set(set_path)
    obj = [e for e in bset.manifest(bset.newest_id()).entries if e.path == "Docs/f5.txt"][0]
    assert bset.object_paths(obj), "the old version's copy in objects/ is what this test restores from"
    os.unlink(set_path / "Latest" / "Docs" / "f5.txt")
    r = restore_path(set_path, tmp_path / "out")
    assert not r.damaged and (tmp_path / "out" / "Docs" / "f5.txt").read_bytes() == b"content 5"
