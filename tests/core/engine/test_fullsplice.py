"""Issue #11's no-change backup: a full scan against a proven parent keeps the lines of unchanged
entries as they are (core/engine/fullsplice.py). Whatever changed, the snapshot is the one a
backup without the cache folder (the validating path, every line decoded) makes."""

from __future__ import annotations

import os

import pytest

from core.engine import fullsplice, pieces, scan, sums_base
from core.engine.manifest import Entry
from core.engine.manifest_io import _ENCODER
from core.engine.scan import ScanEntry
from core.engine.splice import ParentLines
from tests.core.engine.test_splice import _entries, _expected_sums
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.trees import make_tree, read_tree

TREE = {f"d{i}/{name}": f"{i} {name}".encode() for i in range(6) for name in ("a.txt", "b.txt", "sub/c.txt")}
TREE.update({"é/x.txt": b"x", 'q"uote/y.txt': b"y", "back\\slash/z.txt": b"z", "e/f/g/h.txt": b"deep"})


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch):
    """Pieces of a few lines: runs of kept lines cross their boundaries."""
    monkeypatch.setattr(pieces, "PIECE_TEXT", 400)
    monkeypatch.setattr(sums_base, "STRIDE", 3)


@pytest.fixture
def kept(monkeypatch):
    """What the runs did: lines kept as they are, and parent lines decoded one by one."""
    out = {"kept": 0, "decoded": 0}
    real_flush, real_entry = ParentLines.flush, ParentLines.entry

    def flush(self):
        sp = real_flush(self)
        out["kept"] += sp.lines if sp is not None else 0
        return sp

    def entry(self):
        fresh = self._entry is None and self._pos < len(self._buf)
        e = real_entry(self)
        out["decoded"] += fresh
        return e

    monkeypatch.setattr(ParentLines, "flush", flush)
    monkeypatch.setattr(ParentLines, "entry", entry)
    return out


def _backup(tmp_path, src, **options):
    return backup_path(tmp_path / "set", [src], workers=1, cache=tmp_path / "cache", **options)


def _same_as_a_fresh_backup(tmp_path, src, unlock=None) -> None:
    """The newest snapshot is what a backup without the cache folder records, Latest.sha256 is
    right, and the set verifies and restores."""
    name = "check"
    check = backup_path(tmp_path / name, [src], workers=1, passphrase="pw" if unlock else None)
    if unlock is None:
        assert (tmp_path / "set" / "Latest.sha256").read_bytes() == _expected_sums(tmp_path / "set")
    ours = _entries(tmp_path / "set", unlock)
    assert [{k: v for k, v in e.items() if k not in ("mirror", "obj")} for e in ours] == \
        [{k: v for k, v in e.items() if k not in ("mirror", "obj")} for e in _entries(tmp_path / name, unlock)]
    assert check.files_scanned == len([e for e in ours if e["type"] == "f"])
    assert verify_path(tmp_path / "set", unlock=unlock).ok
    restore_path(tmp_path / "set", tmp_path / "restored", unlock=unlock)
    assert read_tree(tmp_path / "restored" / src.name) == read_tree(src)


def test_a_backup_with_nothing_changed_keeps_every_line_and_decodes_none(tmp_path, kept):
    src = make_tree(tmp_path / "Data", TREE)
    first = _backup(tmp_path, src)
    decoded = kept["decoded"]
    r = _backup(tmp_path, src)
    lines = len(_entries(tmp_path / "set"))
    assert r.scan == "full" and r.files_copied == 0 and r.files_scanned == first.files_scanned
    assert r.bytes_scanned == first.bytes_scanned
    assert kept["kept"] == lines and kept["decoded"] == decoded
    _same_as_a_fresh_backup(tmp_path, src)


def test_every_kind_of_change_is_seen_in_a_full_scan(tmp_path, kept):
    src = make_tree(tmp_path / "Data", TREE)
    _backup(tmp_path, src)
    (src / "d0" / "a.txt").write_bytes(b"other content")                  # content and size
    os.utime(src / "d1" / "a.txt", ns=(1, 2_000_000_000))                 # mtime only
    os.chmod(src / "d2" / "b.txt", 0o600)                                # mode only
    os.chmod(src / "d3" / "b.txt", os.stat(src / "d3" / "b.txt").st_mode)  # ctime only
    (src / "d4" / "sub" / "c.txt").unlink()                                # gone
    (src / "d5" / "sub" / "c.txt").unlink()
    (src / "d5" / "sub").rmdir()
    (src / "d5" / "sub").write_bytes(b"a file where a folder was")        # another type
    (src / "d0" / "new.txt").write_bytes(b"new")                          # new
    (src / "e" / "f" / "g" / "new").mkdir()
    os.symlink("a.txt", src / "d1" / "link")
    r = _backup(tmp_path, src)
    assert r.scan == "full" and r.files_copied >= 3 and kept["kept"] > 0
    _same_as_a_fresh_backup(tmp_path, src)


def test_a_new_file_in_a_kept_folder_gets_its_own_name_in_latest(tmp_path, monkeypatch):
    """A folder whose line is kept is one the pass is inside: a new file there is named below it.
    (On Linux a new file changes its folder's ctime; with ino and ctime not recorded, as on
    Windows, the folder's line stays the same once its mtime is put back.)"""
    real = scan._entry

    def windows_like(path, abspath, st, kind, target=None):
        se = real(path, abspath, st, kind, target)
        se.ino = se.ctime_ns = 0
        return se

    monkeypatch.setattr(scan, "_entry", windows_like)
    src = make_tree(tmp_path / "Data", TREE)
    _backup(tmp_path, src)
    folder = src / "e" / "f"
    mtime = os.stat(folder).st_mtime_ns
    (folder / "new.txt").write_bytes(b"new")
    os.utime(folder, ns=(mtime, mtime))
    r = _backup(tmp_path, src)
    assert r.files_copied == 1
    entry = {e["path"]: e for e in _entries(tmp_path / "set")}["Data/e/f/new.txt"]
    assert entry.get("mirror") is None
    assert (tmp_path / "set" / "Latest" / "Data" / "e" / "f" / "new.txt").read_bytes() == b"new"


def test_an_encrypted_set_keeps_unchanged_lines_too(tmp_path, kept):
    from core.agent.keys import Secret, make_unlocker

    unlock = make_unlocker(Secret.passphrase("pw"))
    src = make_tree(tmp_path / "Data", TREE)
    _backup(tmp_path, src, passphrase="pw")
    (src / "d1" / "a.txt").write_bytes(b"changed")
    r = _backup(tmp_path, src, unlock=unlock)
    assert r.files_copied == 1 and kept["kept"] > 0
    _same_as_a_fresh_backup(tmp_path, src, unlock)


def test_rehash_decodes_every_line(tmp_path, kept):
    src = make_tree(tmp_path / "Data", TREE)
    _backup(tmp_path, src)
    r = _backup(tmp_path, src, rehash=True)
    assert r.files_copied == r.files_scanned and kept["kept"] == 0


def _line(**fields) -> bytes:
    return (_ENCODER.encode(Entry(**fields).to_dict()) + "\n").encode("ascii")


def _keeps(line: bytes, se: ScanEntry) -> bool:
    lines = ParentLines(iter([(line, None)]), "m", False, True, lambda: None)
    want = fullsplice.expected(se)
    assert want is not None
    return bool(lines.keep(want[0], want[1], se.path, se.size, se.type))


SHA = "ab" * 32


@pytest.mark.parametrize("change, kept_", [
    ({}, True),
    ({"size": 4}, False), ({"mtime_ns": 12}, False), ({"mtime_ns": 1}, False), ({"mode": 0o600}, False),
    ({"ino": 77}, False), ({"ino": 0, "ctime_ns": 0}, False), ({"ctime_ns": 1234}, False),
    ({"ctime_ns": 12}, False), ({"attrs": 2}, False),
])
def test_a_file_line_is_kept_only_when_every_scanned_field_is_equal(change, kept_):
    se = ScanEntry("S/a b/\"q\"é.txt", "/x", "f", 3, 123, 0o644, 7, 123, None, 0)
    parent = {"path": se.path, "type": "f", "size": 3, "mtime_ns": 123, "mode": 0o644, "sha256": SHA,
              "ino": 7, "ctime_ns": 123}
    scanned = ScanEntry(**{**se.__dict__, **change})
    if scanned.attrs:
        assert fullsplice.expected(scanned) is None
    else:
        assert _keeps(_line(**parent), scanned) is kept_
    # What the pass copies from the parent never stops a line from being kept; attrs it does not copy.
    for extra in ({"mirror": "S/m"}, {"parts": 2}, {"obj": "cd" * 32}, {"stored": 9}):
        assert _keeps(_line(**parent, **extra), se)
    assert not _keeps(_line(**parent, attrs=2), se)


def test_a_folder_line_is_kept_only_whole_and_without_a_mirror_name():
    se = ScanEntry("S/d", "/x", "d", 0, 5, 0o755, 7, 6, None, 0)
    parent = {"path": "S/d", "type": "d", "mtime_ns": 5, "mode": 0o755, "ino": 7, "ctime_ns": 6}
    assert _keeps(_line(**parent), se)
    assert not _keeps(_line(**parent, mirror="S/d~1"), se)
    assert not _keeps(_line(**{**parent, "ctime_ns": 66}), se)
    assert not _keeps(_line(**{**parent, "type": "f", "sha256": SHA}), se)


def test_a_symlink_line_is_kept_only_whole_with_its_target_and_without_a_mirror_name():
    se = ScanEntry("S/l", "/x", "l", 0, 5, 0o777, 7, 6, '../a "b"/é', 0)
    parent = {"path": "S/l", "type": "l", "mtime_ns": 5, "mode": 0o777, "target": '../a "b"/é', "ino": 7, "ctime_ns": 6}
    assert _keeps(_line(**parent), se)
    assert not _keeps(_line(**parent, mirror="S/l~1"), se)
    assert not _keeps(_line(**{**parent, "target": "../a"}), se)
    assert not _keeps(_line(**{**parent, "ctime_ns": 66}), se)
    assert not _keeps(_line(**{**parent, "mtime_ns": 55}), se)


def test_an_unchanged_symlink_is_not_placed_again_and_a_remade_one_is(tmp_path, monkeypatch):
    from core.engine.store import PlainStore

    src = make_tree(tmp_path / "src", {"a/x.txt": b"x"})
    os.symlink("a/x.txt", src / "same")
    os.symlink("a/x.txt", src / "moved")
    _backup(tmp_path, src)
    placed: list[str] = []
    real = PlainStore.place_link

    def place_link(self, e, prev):
        placed.append(e.path)
        return real(self, e, prev)

    monkeypatch.setattr(PlainStore, "place_link", place_link)
    _backup(tmp_path, src)
    assert placed == []   # both unchanged: Latest/ holds them as the parent left them
    os.unlink(src / "moved")
    os.symlink("elsewhere", src / "moved")   # another target
    _backup(tmp_path, src)
    assert placed == ["src/moved"] and os.readlink(tmp_path / "set" / "Latest" / "src" / "moved") == "elsewhere"
    os.unlink(src / "same")
    os.symlink("a/x.txt", src / "same")      # made again, the same target: another lstat, looked at again
    os.utime(src / "same", ns=(10**18, 10**18), follow_symlinks=False)   # (even if its inode number comes back)
    placed.clear()
    _backup(tmp_path, src)
    assert placed == ["src/same"]
    _same_as_a_fresh_backup(tmp_path, src)
