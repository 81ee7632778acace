"""Issue #11's day of changes: a full scan against a proven parent reads each folder through its
descriptor and compares each regular file's and folder's ``lstat`` with the parent's line without
making a scan entry (core/engine/fullsplice.py ``_Fused``). It must give the pass exactly the items
``pairs(scan(...))`` gives, and the snapshot must be the one the other ways of scanning write."""

from __future__ import annotations

import os
import random
import shutil
import sys
from pathlib import Path

import pytest

from core.engine import fullsplice, pieces, scan, sums_base
from core.engine.manifest_io import ManifestReader
from core.engine.progress import WarningCode
from core.engine.scan import Excluder, plan_sources
from core.engine.splice import ParentLines, Splice
from tests.core.engine.test_splice import _entries, _expected_sums
from tests.support.engine import backup_path, open_set

pytestmark = pytest.mark.skipif(not scan.BY_DESCRIPTOR or sys.platform == "win32",
                                reason="the fused scan is for POSIX folders read through descriptors")


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch):
    """Pieces of a few lines: runs of kept lines cross their boundaries."""
    monkeypatch.setattr(pieces, "PIECE_TEXT", 600)
    monkeypatch.setattr(sums_base, "STRIDE", 3)


def _tree(root: Path) -> Path:
    """Folders at several depths, names JSON escapes, the built-in excludes at depth, a link, a fifo."""
    rng = random.Random(5)
    for i in range(120):
        folder = root / f"d{i % 7}" / (f"sub {i % 3}" if i % 2 else "") / ("é\"q\\" if i % 5 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.txt").write_bytes(rng.randbytes(rng.randrange(0, 300)))
    for junk in ("d1/.DS_Store", "d2/sub 1/Thumbs.db", "d3/~$lock.docx", "d4/__pycache__/x.pyc", "d5/.cache/y",
                 ".Trash-1000/z", "d6/x.log", "d6/keep.log.txt"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_bytes(b"junk")
    (root / "empty").mkdir()
    os.symlink("../d0/f0.txt", root / "d1" / "link")
    os.mkfifo(root / "d2" / "fifo")
    return root


def _day_of_changes(root: Path, seed: int) -> None:
    """Every kind of change a day brings: content, size, times, mode, ctime only, gone, new, a new
    folder, a folder renamed, a file where a folder was, a link made again."""
    rng = random.Random(seed)
    files = sorted(p for p in root.rglob("*.txt") if p.is_file() and not p.is_symlink())
    a, b, c, d, e, f, g = (files[i::13][:3] for i in range(7))
    for p in a:
        p.write_bytes(p.read_bytes() + b"more")
    for p in b:
        os.utime(p, ns=(1, rng.randrange(1, 10**18)))
    for p in c:
        os.chmod(p, 0o600)
    for p in d:
        os.chmod(p, os.stat(p).st_mode)   # ctime only
    for p in e:
        p.unlink()
    for p in f:
        p.with_name(p.stem + "-new.txt").write_bytes(b"new")
    (root / "d3" / "brand new" / "deeper").mkdir(parents=True)
    (root / "d3" / "brand new" / "deeper" / "n.txt").write_bytes(b"n")
    os.rename(root / "d4" / "sub 1", root / "d4" / "sub 1 (renamed)")
    shutil.rmtree(root / "d5" / "sub 1")
    (root / "d5" / "sub 1").write_bytes(b"a file where a folder was")
    os.unlink(root / "d1" / "link")
    os.symlink("../d0/f0.txt", root / "d1" / "link")
    del g


def _lines(set_path: Path) -> ParentLines:
    bset = open_set(set_path)
    sid = bset.newest_id()
    f = open(bset.layout.manifest(sid), "rb")
    reader = ManifestReader(f, sid, encrypted=False)
    return ParentLines(((b, None) for b in reader.raw_blocks(proven=True)), sid, False, True, f.close)


def _items(items) -> list:
    out = []
    for item in items:
        if isinstance(item, Splice):
            out.append(("splice", item.block, item.first, item.last, item.sums, item.skip, item.piece is not None,
                        len(item.after), item.lines, item.files, item.size, item.dirs))
        else:
            se, old = item
            out.append((se.__dict__ if se is not None else None, old.to_dict() if old is not None else None))
    return out


class _NoAhead:
    def exclude(self, *_):
        pass

    def stop(self):
        pass


@pytest.mark.parametrize("excludes", [(), ("*.log", "/d0/sub 1/", "f1?.txt")])
def test_the_fused_scan_gives_the_items_of_the_scan_merged_with_the_parent(tmp_path, excludes):
    src = _tree(tmp_path / "Data")
    backup_path(tmp_path / "set", [src], workers=1, cache=tmp_path / "cache", excludes=list(excludes))
    _day_of_changes(src, 1)
    sources = plan_sources([src], [{"path": str(src), "name": "Data"}])
    excluder = Excluder(list(excludes), skip_dirs=[tmp_path / "set"])
    assert (excluder.name_match is None) == bool(excludes)
    old_warnings: list = []
    new_warnings: list = []
    with _lines(tmp_path / "set") as a, _lines(tmp_path / "set") as b:
        old = _items(fullsplice.pairs(scan.scan(sources, excluder, old_warnings, _NoAhead()), a))
        new = _items(fullsplice.scan_pairs(sources, excluder, new_warnings, _NoAhead(), b))
    assert new == old
    kinds = {type(x[0]) for x in new}
    assert str in kinds and dict in kinds   # (runs kept and entries paired: both ways were taken)
    assert any(x[0] is None for x in new) and any(x[1] is None for x in new)   # (gone and new entries)
    assert sorted((w.code, w.path) for w in new_warnings) == sorted((w.code, w.path) for w in old_warnings)
    assert [w.code for w in new_warnings] == [WarningCode.SPECIAL_FILE]


def test_a_day_of_changes_writes_the_manifest_the_scan_without_the_fused_loop_writes(tmp_path, monkeypatch):
    """Two sets of the same source with the same history; after a day of changes one is backed up
    with the fused loop, the other with ``pairs(scan(...))``: the same entries, the same mirror
    names, the same Latest.sha256, and both are what a backup without the cache records."""
    src = _tree(tmp_path / "Data")
    for name in ("fused", "plain"):
        backup_path(tmp_path / name, [src], workers=1, cache=tmp_path / f"cache-{name}")
    for day in (1, 2):
        _day_of_changes(src, day) if day == 1 else (src / "d6" / "f6.txt").write_bytes(b"day two")
        backup_path(tmp_path / "fused", [src], workers=1, cache=tmp_path / "cache-fused")
        with monkeypatch.context() as m:
            m.setattr(fullsplice, "BY_DESCRIPTOR", False)
            backup_path(tmp_path / "plain", [src], workers=1, cache=tmp_path / "cache-plain")
        assert _entries(tmp_path / "fused") == _entries(tmp_path / "plain")
        assert (tmp_path / "fused" / "Latest.sha256").read_bytes() == _expected_sums(tmp_path / "fused") == \
            (tmp_path / "plain" / "Latest.sha256").read_bytes()
    fresh = backup_path(tmp_path / "fresh", [src], workers=1)
    assert fresh.files_scanned == len([e for e in _entries(tmp_path / "fused") if e["type"] == "f"])
    strip = [{k: v for k, v in e.items() if k not in ("mirror", "obj")} for e in _entries(tmp_path / "fused")]
    assert strip == [{k: v for k, v in e.items() if k not in ("mirror", "obj")} for e in _entries(tmp_path / "fresh")]


def test_a_folder_swapped_for_a_symlink_after_its_lstat_is_not_followed(tmp_path, monkeypatch):
    """Between the folder's ``lstat`` (it was a folder) and its listing, it becomes a symlink to a
    folder outside the source: what lies there is never recorded (the fused scan opens the folder
    with O_NOFOLLOW; the scan before it listed the folder by path, after the pass looked at it)."""
    src = _tree(tmp_path / "Data")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"not in the source")
    backup_path(tmp_path / "set", [src], workers=1, cache=tmp_path / "cache")
    target, swapped = src / "d0", []

    def swap() -> None:
        if not swapped:
            swapped.append(True)
            os.rename(target, tmp_path / "d0-moved")
            os.symlink(outside, target)

    real_open, real_keep = os.open, ParentLines.keep

    def opening(path, flags, *a, **k):
        if os.fspath(path) == str(target):
            swap()
        return real_open(path, flags, *a, **k)

    def keeping(self, head, rest, path, size, kind):
        if path == "Data/d0":
            swap()
        return real_keep(self, head, rest, path, size, kind)

    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(ParentLines, "keep", keeping)
    r = backup_path(tmp_path / "set", [src], workers=1, cache=tmp_path / "cache")
    monkeypatch.undo()
    assert swapped
    paths = [e["path"] for e in _entries(tmp_path / "set")]
    assert "Data/d0/secret.txt" not in paths
    assert not any(p.name == "secret.txt" for p in (tmp_path / "set").rglob("*"))
    assert (WarningCode.UNREADABLE, str(target)) in {(w.code, w.path) for w in r.warnings}
