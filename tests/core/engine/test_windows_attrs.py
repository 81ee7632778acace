"""Windows' hidden and system attributes (issue #16): recorded by the scan in the entry's optional
``attrs``, set again by a restore on Windows, and invisible to an older Plugback reading the set.

Windows is simulated: ``winattrs.attributes`` (the scan's and the restore's read of
``st_file_attributes``) is faked per inode, ``winattrs.SETS_ATTRIBUTES`` is switched on and
``winattrs._set_attributes`` (SetFileAttributesW) is a fake that records its calls. What is only
checked statically (mypy --platform win32): the ctypes binding of SetFileAttributesW itself.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import sys
import types
from pathlib import Path

import pytest

import core.engine
from core.engine import manifest as mf
from core.engine import manifest_io as mio
from core.engine import reuse, winattrs
from core.engine.changes import ChangeHint
from core.engine.manifest import DIR, FILE, LINK, Entry, Manifest
from core.errors import ManifestDamaged
from tests.support.engine import backup_path, open_set, restore_path
from tests.support.trees import make_tree, read_tree

SHA = hashlib.sha256(b"x").hexdigest()
HIDDEN, SYSTEM, READONLY, ARCHIVE, NORMAL = 0x2, 0x4, 0x1, 0x20, 0x80
DIRECTORY = 0x10
VECTORS = Path(__file__).parent / "vectors"
OLD = "4b2ab36"   # main before the field existed: tests/core/engine/vectors/*-4b2ab36.py.txt


# --- the field: encode and decode --------------------------------------------------------------

@pytest.mark.parametrize("attrs,expected", [(0, None), (HIDDEN, HIDDEN), (HIDDEN | SYSTEM, HIDDEN | SYSTEM)])
def test_written_only_when_set(attrs, expected):
    d = Entry("D/a", FILE, 1, 2, 0o644, SHA, attrs=attrs).to_dict()
    assert d.get("attrs") == expected and ("attrs" in d) == bool(attrs)


@pytest.mark.parametrize("kind,value,expected", [
    (FILE, None, 0),
    (FILE, HIDDEN, HIDDEN),
    (FILE, SYSTEM, SYSTEM),
    (DIR, HIDDEN | SYSTEM, HIDDEN | SYSTEM),
    (FILE, HIDDEN | READONLY | ARCHIVE, HIDDEN),   # other bits: a later writer's, ignored (read-only is `mode`'s)
    (FILE, 0x2000, 0),                             # FILE_ATTRIBUTE_NOT_CONTENT_INDEXED: never set by a restore
    (FILE, 0xFFFFFFFF, HIDDEN | SYSTEM),
    (LINK, HIDDEN, 0),                             # not recorded on symlinks: ignored there
])
def test_decoded_value(kind, value, expected):
    d = {"path": "D/a", "type": kind, "mtime_ns": 1, "mode": 0o644, "attrs": value}
    d.update({"size": 1, "sha256": SHA} if kind == FILE else {"target": "x"} if kind == LINK else {})
    assert mf.parse_entry(d, "m").attrs == expected


@pytest.mark.parametrize("value", [True, False, "2", 2.0, -1, 1 << 32, [2], {"hidden": 1}])
def test_a_malformed_value_is_damage(value):
    # As for every optional integer of an entry (ino, parts...): a wrong type or range is damage.
    d = {"path": "D/a", "type": FILE, "mtime_ns": 1, "mode": 0o644, "size": 1, "sha256": SHA, "attrs": value}
    with pytest.raises(ManifestDamaged, match="'attrs' has an invalid value"):
        mf.parse_entry(d, "m", line=3)


def test_round_trip_through_the_manifest_bytes():
    entries = [Entry("D", DIR, mtime_ns=1, mode=0o755, attrs=HIDDEN),
               Entry("D/a", FILE, 1, 2, 0o644, SHA, attrs=HIDDEN | SYSTEM),
               Entry("D/b", FILE, 1, 3, 0o644, SHA)]
    m = Manifest("20261122T013000Z-ab12", "2026-11-22T01:30:00+00:00", "pc", "Docs",
                 [{"path": "C:\\Users\\ann\\D", "name": "D"}], None, entries)
    blob = mio.encode(m)
    assert [e.attrs for e in mio.decode(blob).entries] == [HIDDEN, HIDDEN | SYSTEM, 0]
    assert gzip.decompress(blob).count(b'"attrs"') == 2
    assert Entry.from_dict(entries[1].to_dict()) == entries[1]   # (the read-back's copy)


# --- a simulated Windows scan, backup and restore ----------------------------------------------

class FakeWindows:
    """``st_file_attributes`` by inode for the scan; SetFileAttributesW's calls, with what was on
    disk at the time of each (the restore must have put content, time and mode there first)."""

    def __init__(self, monkeypatch):
        self.by_ino: dict[int, int] = {}
        self.calls: list[tuple[str, int]] = []
        self.seen: dict[str, tuple] = {}
        monkeypatch.setattr(winattrs, "attributes", self.attributes)
        monkeypatch.setattr(winattrs, "_set_attributes", self.set_attributes)

    def mark(self, path, attrs: int) -> None:
        self.by_ino[os.lstat(path).st_ino] = attrs

    def attributes(self, st: os.stat_result) -> int:
        default = DIRECTORY if stat.S_ISDIR(st.st_mode) else ARCHIVE   # what a fresh file or folder has
        return self.by_ino.get(st.st_ino, default)

    def set_attributes(self, path: str, attrs: int) -> None:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:   # (builtins.open: the long-path simulation wraps it)
                content: object = f.read()
        else:
            content = sorted(os.listdir(path))
        self.seen[path] = (content, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
        self.calls.append((path, attrs))
        self.by_ino[st.st_ino] = attrs


TREE = {"shown.txt": b"plain", "secret.txt": b"hidden", "boot.ini": b"system",
        "Cache/x.bin": b"in a hidden folder", "Cache/y.bin": b"also", "Open/z.txt": b"z"}


def _source(tmp_path, win: FakeWindows) -> Path:
    src = make_tree(tmp_path / "Data", TREE)
    os.utime(src / "Cache", ns=(1_500_000_000_000_000_000,) * 2)
    os.chmod(src / "boot.ini", 0o444)
    os.symlink("shown.txt", src / "link")
    win.mark(src / "secret.txt", HIDDEN | ARCHIVE)
    win.mark(src / "boot.ini", HIDDEN | SYSTEM | READONLY | ARCHIVE)
    win.mark(src / "Cache", HIDDEN | DIRECTORY)
    win.mark(src / "link", HIDDEN | 0x400)   # a hidden symlink: not recorded
    return src


def _attrs(set_path) -> dict[str, int]:
    bset = open_set(set_path)
    return {e.path: e.attrs for e in bset.manifest(bset.newest_id()).entries if e.attrs}


def test_windows_scan_records_hidden_and_system_and_a_restore_sets_them_last(tmp_path, monkeypatch):
    win = FakeWindows(monkeypatch)
    src = _source(tmp_path, win)
    monkeypatch.setattr(winattrs, "SETS_ATTRIBUTES", True)
    backup_path(tmp_path / "set", [src])
    assert _attrs(tmp_path / "set") == {"Data/secret.txt": HIDDEN, "Data/boot.ini": HIDDEN | SYSTEM,
                                        "Data/Cache": HIDDEN}
    latest = tmp_path / "set" / "Latest" / "Data"
    assert not win.calls and read_tree(latest) == read_tree(src)   # Latest/ stays browsable: nothing hidden

    out = tmp_path / "out"
    r = restore_path(tmp_path / "set", out)
    assert r.files_restored == len(TREE) and not r.damaged
    dest = out / "Data"
    # The existing attributes are kept (archive; read-only, set from `mode` just before), and
    # only where a bit was recorded is there a call.
    assert sorted(win.calls) == sorted([(str(dest / "secret.txt"), ARCHIVE | HIDDEN),
                                        (str(dest / "boot.ini"), ARCHIVE | HIDDEN | SYSTEM),
                                        (str(dest / "Cache"), DIRECTORY | HIDDEN)])
    assert win.calls[-1][0] == str(dest / "Cache")   # a folder's after every file (its contents too)
    src_st = {n: os.stat(src / n) for n in ("secret.txt", "boot.ini", "Cache")}
    assert win.seen[str(dest / "secret.txt")] == (b"hidden", src_st["secret.txt"].st_mtime_ns, 0o644)
    assert win.seen[str(dest / "boot.ini")] == (b"system", src_st["boot.ini"].st_mtime_ns, 0o444)
    assert win.seen[str(dest / "Cache")] == (["x.bin", "y.bin"], src_st["Cache"].st_mtime_ns,
                                             stat.S_IMODE(src_st["Cache"].st_mode))
    assert os.stat(dest / "Cache").st_mtime_ns == src_st["Cache"].st_mtime_ns   # not changed after


def test_set_recorded_keeps_what_is_there_but_normal_and_sets_only_hidden_and_system(tmp_path, monkeypatch):
    calls = []
    (tmp_path / "a.txt").write_bytes(b"a")
    monkeypatch.setattr(winattrs, "SETS_ATTRIBUTES", True)
    monkeypatch.setattr(winattrs, "attributes", lambda st: NORMAL)
    monkeypatch.setattr(winattrs, "_set_attributes", lambda p, a: calls.append((p, a)))
    winattrs.set_recorded(str(tmp_path / "a.txt"), HIDDEN | READONLY | 0x2000)
    assert calls == [(str(tmp_path / "a.txt"), HIDDEN)]   # NORMAL is valid only alone
    monkeypatch.setattr(winattrs, "attributes", lambda st: SYSTEM | HIDDEN | ARCHIVE)
    winattrs.set_recorded(str(tmp_path / "a.txt"), HIDDEN)
    winattrs.set_recorded(str(tmp_path / "a.txt"), 0)
    assert len(calls) == 1   # there already, or nothing recorded: no call
    winattrs.set_recorded(str(tmp_path / "gone.txt"), HIDDEN)   # cannot be read: left as it is
    monkeypatch.setattr(winattrs, "_set_attributes", _refuse)
    monkeypatch.setattr(winattrs, "attributes", lambda st: ARCHIVE)
    winattrs.set_recorded(str(tmp_path / "a.txt"), HIDDEN)       # refused: ignored, as a folder's time
    assert len(calls) == 1


def _refuse(path, attrs):
    raise PermissionError(13, "Access is denied", path)


def test_long_paths_get_their_attributes_through_the_prefixed_form(tmp_path, monkeypatch):
    from tests.support.winfaults import MAX_PATH, windows_path_limit

    deep = "/".join(["f" * 60] * 4)
    src = make_tree(tmp_path / "Docs", {f"{deep}/h.txt": b"deep and hidden", "top.txt": b"short"})
    win = FakeWindows(monkeypatch)
    win.mark(src / deep / "h.txt", HIDDEN)
    win.mark(src / deep, HIDDEN | DIRECTORY)
    monkeypatch.setattr(winattrs, "SETS_ATTRIBUTES", True)
    out = tmp_path / "out"
    with windows_path_limit() as seen:
        backup_path(tmp_path / "set", [src])
        r = restore_path(tmp_path / "set", out)
    assert r.files_restored == 2 and seen.refused == []
    assert len(str(out / "Docs" / deep / "h.txt")) >= MAX_PATH
    prefix = "\\\\?\\"
    assert [(p[:4], a) for p, a in win.calls] == [(prefix, ARCHIVE | HIDDEN), (prefix, DIRECTORY | HIDDEN)]
    assert win.calls[0][0].replace("\\", "/").endswith(f"/out/Docs/{deep}/h.txt")
    assert win.calls[1][0].replace("\\", "/").endswith(f"/out/Docs/{deep}")


def test_restore_elsewhere_leaves_the_attributes_alone(tmp_path, monkeypatch):
    win = FakeWindows(monkeypatch)
    src = _source(tmp_path, win)
    backup_path(tmp_path / "set", [src])
    assert winattrs.SETS_ATTRIBUTES is (sys.platform == "win32")
    monkeypatch.setattr(winattrs, "SETS_ATTRIBUTES", False)   # Linux, macOS
    r = restore_path(tmp_path / "set", tmp_path / "out")
    assert r.files_restored == len(TREE) and not r.damaged and win.calls == []
    assert read_tree(tmp_path / "out" / "Data") == read_tree(src)


def test_an_attribute_change_alone_is_in_the_next_snapshot_without_a_copy(tmp_path, monkeypatch):
    # Windows changes neither mtime nor (as Python reports it) ctime when an attribute changes:
    # every scan reads the attributes afresh, so the new snapshot has them; the content stays.
    win = FakeWindows(monkeypatch)
    src = _source(tmp_path, win)
    backup_path(tmp_path / "set", [src])
    win.mark(src / "secret.txt", ARCHIVE)             # shown again
    win.mark(src / "shown.txt", HIDDEN | ARCHIVE)     # hidden now
    r = backup_path(tmp_path / "set", [src])
    assert r.files_copied == 0
    assert _attrs(tmp_path / "set") == {"Data/shown.txt": HIDDEN, "Data/boot.ini": HIDDEN | SYSTEM,
                                        "Data/Cache": HIDDEN}


def test_a_journal_scan_keeps_the_parents_attributes_and_reads_named_folders_again(tmp_path, monkeypatch):
    win = FakeWindows(monkeypatch)
    src = _source(tmp_path, win)
    first = backup_path(tmp_path / "set", [src], workers=1).snapshot_id
    win.mark(src / "Open" / "z.txt", SYSTEM | ARCHIVE)   # the agent's metadata event names Open/
    win.mark(src / "Cache" / "x.bin", HIDDEN)            # not named: the parent's record is kept
    r = backup_path(tmp_path / "set", [src], workers=1, changes=ChangeHint(first, frozenset({str(src / "Open")})))
    assert r.scan == "journal"
    assert _attrs(tmp_path / "set") == {"Data/secret.txt": HIDDEN, "Data/boot.ini": HIDDEN | SYSTEM,
                                        "Data/Cache": HIDDEN, "Data/Open/z.txt": SYSTEM}


def _v1_rules_key(excludes) -> str:
    """reuse.rules_key as it was before records had ``attrs``."""
    from core.engine.scan import DEFAULT_EXCLUDES

    text = json.dumps({"v": 1, "defaults": DEFAULT_EXCLUDES, "excludes": list(excludes)})
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_journal_scan_never_builds_on_records_made_before_attrs(tmp_path, monkeypatch):
    # A parent made by an older Plugback (or re-made by one, reusing records: the field dropped)
    # has no attrs; a journal scan would carry that absence on. Its rules key differs: full scan.
    win = FakeWindows(monkeypatch)
    src = _source(tmp_path, win)
    with monkeypatch.context() as older:
        older.setattr(reuse, "rules_key", _v1_rules_key)
        older.setattr(winattrs, "attributes", lambda st: 0)
        first = backup_path(tmp_path / "set", [src], workers=1).snapshot_id
    assert _attrs(tmp_path / "set") == {}
    r = backup_path(tmp_path / "set", [src], workers=1, changes=ChangeHint(first, frozenset({str(src / "Open")})))
    assert r.scan == "full" and r.files_copied == 0
    assert _attrs(tmp_path / "set") == {"Data/secret.txt": HIDDEN, "Data/boot.ini": HIDDEN | SYSTEM,
                                        "Data/Cache": HIDDEN}


def test_a_set_made_elsewhere_has_no_attrs_field(tmp_path):
    src = make_tree(tmp_path / "Data", {".hidden": b"dot-name", "a/b.txt": b"b"})
    backup_path(tmp_path / "set", [src])
    (blob,) = [p.read_bytes() for p in (tmp_path / "set" / "snapshots").iterdir()]
    assert b'"attrs"' not in gzip.decompress(blob)


# --- an older Plugback reading a set with the field -------------------------------------------

def _old_decoder(monkeypatch):
    """manifest.py and manifest_io.py as they were on main (4b2ab36) before ``attrs``, imported
    from the copies in vectors/ in place of today's."""
    mods = {}
    for name in ("manifest", "manifest_io"):
        copy = VECTORS / f"{name}-{OLD}.py.txt"
        module = types.ModuleType(f"core.engine.{name}")
        module.__file__ = str(copy)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setattr(core.engine, name, module)
        exec(compile(copy.read_text(), str(copy), "exec"), module.__dict__)   # noqa: S102 - our own old code
        mods[name] = module
    assert not hasattr(mods["manifest"].Entry("x", "f"), "attrs")   # really the old one
    return mods["manifest_io"]


def test_an_older_reader_reads_a_set_with_attrs_and_sees_the_same_entries(tmp_path, monkeypatch):
    win = FakeWindows(monkeypatch)
    src = _source(tmp_path, win)
    backup_path(tmp_path / "set", [src])
    (path,) = (tmp_path / "set" / "snapshots").iterdir()
    blob = path.read_bytes()
    assert gzip.decompress(blob).count(b'"attrs"') == 3
    new = mio.decode(blob, name=path.name)
    with monkeypatch.context() as m:
        old = _old_decoder(m).decode(blob, name=path.name)
    assert [e.path for e in old.entries] == [e.path for e in new.entries]
    for o, n in zip(old.entries, new.entries, strict=True):
        assert {**vars(o), "attrs": n.attrs, "stored": n.stored} == vars(n)   # (stored: issue #13, later)


def test_a_set_without_attrs_is_byte_for_byte_what_the_older_writer_wrote(tmp_path, monkeypatch):
    entries = [Entry("D", DIR, mtime_ns=1, mode=0o755), Entry("D/a", FILE, 1, 2, 0o644, SHA, ino=5, ctime_ns=6),
               Entry("D/l", LINK, mtime_ns=3, mode=0o777, target="a")]
    m = Manifest("20261122T013000Z-ab12", "2026-11-22T01:30:00+00:00", "pc", "Docs",
                 [{"path": "/home/u/D", "name": "D"}], None, entries)
    now = gzip.decompress(mio.encode(m))
    with monkeypatch.context() as mp:
        omio = _old_decoder(mp)
        oe = [omio.Entry(**{k: v for k, v in vars(e).items() if k not in ("attrs", "stored")}) for e in entries]
        before = gzip.decompress(omio.encode(omio.Manifest(m.snapshot_id, m.time, m.host, m.job, m.sources,
                                                           None, oe)))
    assert now == before and json.loads(now.split(b"\n")[2]) == entries[1].to_dict()
