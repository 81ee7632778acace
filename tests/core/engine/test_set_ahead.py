"""The set's side of a day of changes looked up ahead in the scan-ahead child (core/engine/set_ahead.py):
what changed since the set's last commit, and only that; in ``Latest/`` only, each folder ``lstat``-ed
before anything below it and never looked through when it is a symlink; at most MAX_LOOKUPS a run."""

from __future__ import annotations

import os
import shutil
import sys
import time

import pytest

from core.cli import main
from core.engine import scan_ahead, set_ahead
from core.engine.scan import Excluder
from core.engine.set_ahead import SetAhead
from tests.support.trees import Symlink, make_tree


class Asked(SetAhead):
    """The look-ups the walk asks for, kept instead of made."""

    def __init__(self, since: int):
        super().__init__("/nonexistent", since, threads=0)
        self.asked: list[tuple] = []

    def _put(self, job) -> bool:
        kind, rel, names = job
        self.asked.append((kind, rel, sorted(names) if names is not None else None))
        return True


def _tick() -> int:
    """A time every later change is at or after (the kernel's file clock is coarse: a few ms)."""
    time.sleep(0.05)
    since = time.time_ns()
    time.sleep(0.05)
    return since


def test_the_walk_asks_for_what_changed_since_the_last_commit_and_nothing_else(tmp_path):
    src = make_tree(tmp_path / "src", {"a/x": b"x", "a/y": b"y", "b/z": b"z", "c/d/w": b"w"})
    since = _tick()
    (src / "a" / "x").write_bytes(b"x2")      # changed in place: the folder's time stays
    (src / "c" / "d" / "new").write_bytes(b"n")   # added: its folder changed too
    (src / "a" / "y").unlink()                 # deleted: its folder changed
    asked = Asked(since)
    assert scan_ahead.walk([str(src)], Excluder(), latest=asked) == 8   # a, b, c; x; z; d; w, new
    assert sorted(asked.asked) == [
        ("d", "src/a", ["x"]),            # (its entries in Latest/ but not in the source: y)
        ("d", "src/c/d", ["new", "w"]),
        ("f", "src/a", None),
        ("f", "src/a/x", None),
        ("f", "src/c/d", None),
        ("f", "src/c/d/new", None),
    ]


def test_nothing_is_asked_when_nothing_changed(tmp_path):
    src = make_tree(tmp_path / "src", {"a/x": b"x", "b/z": b"z"})
    asked = Asked(_tick())
    scan_ahead.walk([str(src)], Excluder(), latest=asked)
    assert asked.asked == []


@pytest.fixture
def lstats(monkeypatch):
    """The paths set_ahead ``lstat``s and opens (the OS cache they fill cannot be observed)."""
    seen: list[str] = []
    real_lstat, real_open = os.lstat, os.open

    def lstat(path, *args, **kwargs):
        seen.append(os.fspath(path))
        return real_lstat(path, *args, **kwargs)

    def opening(path, *args, **kwargs):
        seen.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(set_ahead.os, "lstat", lstat)
    monkeypatch.setattr(set_ahead.os, "open", opening)
    return seen


def test_it_looks_up_in_latest_and_never_through_a_symlink(tmp_path, lstats):
    outside = make_tree(tmp_path / "outside", {"f": b"secret", "sub/g": b"g"})
    latest = make_tree(tmp_path / "set" / "Latest", {"src/a/x": b"x", "src/link": Symlink(str(outside)),
                                                     "src/old/deep/f": b"f", "src/old/g": b"g"})
    ahead = SetAhead(str(latest), 0)
    ahead.file("src/a/x")
    ahead.file("src/link/f")          # (a source folder where Latest/ has a symlink)
    ahead.folder("src/link/sub", {"g"})
    ahead.folder("src", {"a", "link"})   # old/ is gone from the source: its tree is looked up
    ahead.finish()
    rel = sorted({os.path.relpath(p, latest).replace(os.sep, "/") for p in lstats
                  if p.startswith(str(latest) + os.sep)})
    assert rel == ["src", "src/a", "src/a/x", "src/link", "src/old", "src/old/deep", "src/old/deep/f", "src/old/g"]
    assert not any(str(outside) in p for p in lstats)


def test_once_something_changed_the_sums_file_and_the_object_folders_are_looked_in(tmp_path, lstats):
    root = tmp_path / "set"
    make_tree(root, {"Latest/src/x": b"x", "Latest.sha256": b"", "objects/00/": None, "objects/0a/": None,
                     "objects/ff": b"not a folder"})
    ahead = SetAhead(str(root / "Latest"), 0)
    ahead.finish()
    assert lstats == []   # (nothing changed: nothing looked up)
    ahead = SetAhead(str(root / "Latest"), 0)
    ahead.file("src/x")
    ahead.finish()
    rel = {os.path.relpath(p, root).replace(os.sep, "/") for p in lstats}
    assert {"Latest.sha256", "objects", "objects/00", "objects/00/-", "objects/0a/-", "objects/ff"} <= rel
    assert "objects/ff/-" not in rel


def test_the_object_folders_are_not_looked_in_through_a_symlink(tmp_path, lstats):
    outside = make_tree(tmp_path / "outside", {"00/": None})
    root = make_tree(tmp_path / "set", {"Latest/src/x": b"x", "objects": Symlink(str(outside)),
                                        "Latest.sha256": Symlink(str(outside / "00"))})
    ahead = SetAhead(str(root / "Latest"), 0)
    ahead.file("src/x")
    ahead.finish()
    assert not any(p.startswith(str(root / "objects") + os.sep) or str(outside) in p for p in lstats)
    assert lstats.count(str(root / "Latest.sha256")) == 1   # (lstat-ed, not opened: a symlink)


def test_at_most_max_lookups_a_run(tmp_path, monkeypatch, lstats):
    latest = make_tree(tmp_path / "Latest", {f"src/f{i}": b"x" for i in range(10)})
    monkeypatch.setattr(set_ahead, "MAX_LOOKUPS", 3)
    ahead = SetAhead(str(latest), 0)
    for i in range(10):
        ahead.file(f"src/f{i}")
    ahead.finish()
    assert len({p for p in lstats if os.path.basename(p).startswith("f")}) == 3


def test_the_names_held_for_waiting_folder_lookups_are_bounded(tmp_path, monkeypatch):
    """Memory stays flat: a folder whose names would pass MAX_NAMES held at once is not looked up."""
    monkeypatch.setattr(set_ahead, "MAX_NAMES", 10)
    queued: list[str] = []

    class Held(SetAhead):
        def _put(self, job) -> bool:
            queued.append(job[1])
            return job[1] != "refused" and super()._put(job)   # (refused: as when the look-ups are used up)

    ahead = Held(str(tmp_path / "Latest"), 0, threads=0)
    ahead._first = False   # (no look-up in the set's files)
    ahead.folder("a", {f"n{i}" for i in range(6)})
    ahead.folder("b", {f"n{i}" for i in range(5)})   # 11 held: passed over
    ahead.folder("refused", {"x"})                    # not queued: its name is not held
    ahead.folder("c", {f"n{i}" for i in range(3)})   # 6 + 3 held (not the refused one's)
    assert queued == ["a", "refused", "c"] and ahead._held == 9
    ahead._jobs.put(None)
    ahead._work()   # (the two waiting look-ups done: the names no longer held)
    assert ahead._held == 0


def test_the_last_commit_is_the_sets_newest_write(tmp_path):
    src = make_tree(tmp_path / "src", {"a/x": b"x"})
    assert set_ahead.last_commit(str(tmp_path / "set")) is None
    assert SetAhead.of_set(str(tmp_path / "set")) is None   # (no set: nothing to compare with)
    (tmp_path / "set" / "snapshots").mkdir(parents=True)   # (a first backup's set, made before its commit)
    (tmp_path / "set" / "snapshots" / "x.tmp").write_bytes(b"")
    assert set_ahead.last_commit(str(tmp_path / "set")) is None
    shutil.rmtree(tmp_path / "set")
    assert main(["backup", str(src), "--to", str(tmp_path / "set")]) == 0
    manifest = max((tmp_path / "set" / "snapshots").iterdir())
    since = set_ahead.last_commit(str(tmp_path / "set"))
    assert since is not None and since >= manifest.stat().st_mtime_ns


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the child is started on Linux only")
def test_backups_with_the_child_looking_ahead_keep_latest_right(tmp_path, monkeypatch):
    """A day of changes (edits, adds, deletes, a folder renamed) backed up with the child looking up the
    set's side: Latest/ and Latest.sha256 are the source's, as without it."""
    monkeypatch.setattr(scan_ahead.threading, "active_count", lambda: 1)
    src = make_tree(tmp_path / "src", {f"d{i}/f{j}": f"{i}-{j}".encode() for i in range(5) for j in range(5)})
    to = str(tmp_path / "set")
    assert main(["backup", str(src), "--to", to]) == 0
    time.sleep(0.05)
    (src / "d0" / "f0").write_bytes(b"changed")
    (src / "d1" / "f1").unlink()
    (src / "d2" / "new").write_bytes(b"new")
    os.rename(src / "d3", src / "d3 renamed")
    assert main(["backup", str(src), "--to", to]) == 0
    latest = tmp_path / "set" / "Latest" / "src"
    got = {p.relative_to(latest).as_posix(): p.read_bytes() for p in latest.rglob("*") if p.is_file()}
    want = {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    assert got == want
    assert main(["verify", to]) == 0
