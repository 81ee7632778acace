"""The room estimate with a change hint (issues #12, #14): where the run would use the hint, the
estimate lists only the folders it names and counts exactly what a full scan would."""

from __future__ import annotations

import os

import pytest

from core.engine import space
from core.engine.backup import BackupOptions
from core.engine.changes import ChangeHint
from core.engine.space import RoomReport, backup_with_room, block_size, estimate, stored_size
from tests.support.engine import backup_path, open_set
from tests.support.trees import make_tree

TREE = {"top.txt": b"top", "one/a.txt": b"a v1", "one/deep/b.txt": b"b v1", "two/c.txt": b"c v1",
        "three/d.txt": b"d"}



def _first(tmp_path):
    src = make_tree(tmp_path / "Data", TREE)
    first = backup_path(tmp_path / "set", [src], workers=1, verify=False)
    return src, open_set(tmp_path / "set"), first.snapshot_id


def test_a_hinted_estimate_lists_only_the_named_folders(tmp_path, listed):
    src, bset, first = _first(tmp_path)
    block = block_size(tmp_path)
    (src / "one" / "a.txt").write_bytes(b"a v2, not named: the hint is trusted, as the run trusts it")
    (src / "two" / "c.txt").write_bytes(os.urandom(5000))
    listed.clear()
    need = estimate(bset, [src], changes=ChangeHint(first, frozenset({str(src / "two")})))
    assert need.files == 1 and need.content == stored_size(5000, False, block)
    assert str(src / "one") not in listed and str(src / "three") not in listed
    assert str(src / "two") in listed
    listed.clear()
    assert estimate(bset, [src]).files == 2            # without the hint: the full scan finds both
    assert str(src / "one") in listed


@pytest.mark.parametrize("change", ["changed file", "new folder", "removed folder", "new top file"])
def test_a_complete_hint_gives_the_full_scans_estimate(tmp_path, change):
    src, bset, first = _first(tmp_path)
    trees: set = set()
    if change == "changed file":
        (src / "one" / "deep" / "b.txt").write_bytes(os.urandom(9000))
        dirs = {src / "one" / "deep"}
    elif change == "new folder":
        make_tree(src / "two" / "new" / "inner", {"x.bin": os.urandom(7000), "y.bin": b"y"})
        dirs = {src / "two"}
        trees = {src / "two" / "new"}
    elif change == "removed folder":
        (src / "one" / "deep" / "b.txt").unlink()
        (src / "one" / "deep").rmdir()
        dirs = {src / "one"}
    else:
        (src / "z.bin").write_bytes(os.urandom(3000))
        dirs = {src}
    hint = ChangeHint(first, frozenset(map(str, dirs)), frozenset(map(str, trees)))
    assert estimate(bset, [src], changes=hint) == estimate(bset, [src])


def test_a_hint_the_run_would_not_use_means_a_full_scan(tmp_path, listed):
    src, bset, first = _first(tmp_path)
    (src / "one" / "a.txt").write_bytes(b"a v2")
    listed.clear()
    stale = ChangeHint("not-the-parent", frozenset({str(src / "two")}))
    assert estimate(bset, [src], changes=stale).files == 1
    assert str(src / "one") in listed


def test_the_room_check_of_a_nearly_full_drive_uses_the_runs_hint(tmp_path, listed, monkeypatch):
    """Free space below twice the worst case (the quick check fails): the estimate runs, with the hint."""
    src, bset, first = _first(tmp_path)
    (src / "two" / "c.txt").write_bytes(b"c v2")
    monkeypatch.setattr(space, "_quick_fit", lambda bset, free: False)
    listed.clear()
    report = RoomReport()
    options = BackupOptions(changes=ChangeHint(first, frozenset({str(src / "two")})), workers=1, verify=False)
    result, _ = backup_with_room(bset, [str(src)], options, report=report)
    assert result.scan == "journal" and result.files_copied == 1
    assert report.need is not None and report.need.files == 1
    assert not any(p.startswith(str(src / "one")) or p.startswith(str(src / "three")) for p in listed)
